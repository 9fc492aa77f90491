package events

import (
	"fmt"
	"time"
)

// Health is the state of the pipeline at a glance, as the operator's
// console shows it: each stream's storage, each consumer's lag, each
// agency's backlog, and the alerts that state raises.
type Health struct {
	At        time.Time
	Streams   []StreamHealth
	Consumers []ConsumerHealth
	Agencies  []AgencyHealth
	// Problems are what could not be read (NATS or Postgres down); the
	// rest is shown as far as it was read.
	Problems []string
}

// StreamHealth is one JetStream stream's storage against its limits.
type StreamHealth struct {
	Name              string
	Messages, Bytes   uint64
	MaxMsgs, MaxBytes int64 // -1: no limit
	Replicas          int
}

// Used is the share of its limit the stream fills, by bytes or by messages,
// whichever is higher; 0 when it has no limit.
func (s StreamHealth) Used() float64 {
	used := 0.0
	if s.MaxBytes > 0 {
		used = float64(s.Bytes) / float64(s.MaxBytes)
	}
	if s.MaxMsgs > 0 {
		used = max(used, float64(s.Messages)/float64(s.MaxMsgs))
	}
	return used
}

// ConsumerHealth is one durable consumer's lag: messages not yet
// delivered, delivered and not acknowledged, redelivered; and when it last
// delivered and acknowledged (zero: never).
type ConsumerHealth struct {
	Stream, Name                     string
	Pending, AckPending, Redelivered uint64
	LastDelivered, LastAcked         time.Time
}

// Lag is what the consumer has yet to finish.
func (c ConsumerHealth) Lag() uint64 { return c.Pending + c.AckPending }

// AgencyHealth is one agency's share: work items waiting in its queue
// (Backlog), redeliveries, the oldest work item routed to it and not yet
// accepted (Oldest, zero when none), dead letters waiting for replay.
type AgencyHealth struct {
	Agency             string
	Backlog            uint64
	Redelivered        uint64
	Oldest             time.Time
	PendingDeadLetters int64
}

// Alert is a rule of deploy/prometheus/alerts.yml that the state read now
// breaks, by the rule's name, with what broke it: Detail says it in
// English (for logs), Count, Age and Share are its figures (for pages that
// say it in their language).
type Alert struct {
	Name     string
	Severity string // "page" or "ticket"
	Subject  string // the agency, stream or consumer
	Detail   string
	// Agency is set when the alert is about an agency's work.
	Agency string
	// Count is the messages or work items in question, Age how long the
	// oldest waited or nothing moved, Share how full a stream is.
	Count int64
	Age   time.Duration
	Share float64
}

// The thresholds HealthAlerts applies, those of deploy/prometheus/alerts.yml
// read as states rather than rates.
const (
	// BacklogAlertAge: an agency's oldest waiting work item this old.
	BacklogAlertAge = 30 * time.Minute
	// StalledAlertAge: a pipeline consumer with lag that acknowledged
	// nothing for this long.
	StalledAlertAge = 5 * time.Minute
	// RedeliveredAlert: this many messages of one consumer redelivered and
	// not yet acknowledged.
	RedeliveredAlert = 100
	// StorageAlertShare: a stream this full of its limit.
	StorageAlertShare = 0.8
)

// Alerts are the alerts h raises, in a stable order: agencies first,
// then consumers, then streams.
func (h Health) Alerts() []Alert {
	var out []Alert
	for _, a := range h.Agencies {
		if a.Backlog > 0 && !a.Oldest.IsZero() && h.At.Sub(a.Oldest) >= BacklogAlertAge {
			age := h.At.Sub(a.Oldest).Round(time.Minute)
			out = append(out, Alert{Name: "SpotflowAgencyBacklogNotDraining", Severity: "ticket", Subject: a.Agency, Agency: a.Agency,
				Detail: fmt.Sprintf("%d waiting, the oldest for %s", a.Backlog, age), Count: int64(a.Backlog), Age: age})
		}
		if a.PendingDeadLetters > 0 {
			out = append(out, Alert{Name: "SpotflowWorkItemsDeadLettered", Severity: "ticket", Subject: a.Agency, Agency: a.Agency,
				Detail: fmt.Sprintf("%d dead letters waiting for replay", a.PendingDeadLetters), Count: a.PendingDeadLetters})
		}
	}
	for _, c := range h.Consumers {
		// A consumer that never acknowledged anything is judged from its
		// last delivery; one that never delivered either, not at all.
		moved := c.LastAcked
		if moved.IsZero() {
			moved = c.LastDelivered
		}
		if c.Lag() > 0 && !moved.IsZero() && h.At.Sub(moved) >= StalledAlertAge {
			age := h.At.Sub(moved).Round(time.Minute)
			out = append(out, Alert{Name: "SpotflowConsumerStalled", Severity: "page", Subject: c.Name,
				Detail: fmt.Sprintf("%d behind, nothing acknowledged for %s", c.Lag(), age), Count: int64(c.Lag()), Age: age})
		}
		if c.Redelivered >= RedeliveredAlert {
			out = append(out, Alert{Name: "SpotflowRedeliveriesHigh", Severity: "ticket", Subject: c.Name,
				Detail: fmt.Sprintf("%d messages redelivered and not yet acknowledged", c.Redelivered), Count: int64(c.Redelivered)})
		}
	}
	for _, s := range h.Streams {
		if s.Used() >= StorageAlertShare {
			out = append(out, Alert{Name: "SpotflowStreamStorageHigh", Severity: "page", Subject: s.Name,
				Detail: fmt.Sprintf("%.0f%% of its limit used", 100*s.Used()), Share: s.Used()})
		}
	}
	for _, p := range h.Problems {
		out = append(out, Alert{Name: "SpotflowDependencyOutage", Severity: "page", Detail: p})
	}
	return out
}
