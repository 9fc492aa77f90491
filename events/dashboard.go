package events

import (
	"math"
	"slices"
	"time"
)

// Grain is the width of a roll-up bucket of the dashboard's tables.
type Grain string

// The roll-ups' grains: each status event is counted once at every grain.
const (
	GrainMinute Grain = "minute"
	GrainHour   Grain = "hour"
	GrainDay    Grain = "day"
)

// Grains lists every grain, finest first.
var Grains = []Grain{GrainMinute, GrainHour, GrainDay}

// Truncate returns the start of the bucket of this grain that holds t, in UTC.
func (g Grain) Truncate(t time.Time) time.Time {
	t = t.UTC()
	switch g {
	case GrainMinute:
		return t.Truncate(time.Minute)
	case GrainHour:
		return t.Truncate(time.Hour)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Range is a time range the dashboard can show: the last hour by the minute,
// the last day by the hour, the last week or month by the day. A range
// covers whole buckets of its grain, the current one included, so it starts
// at most one bucket earlier than its name says.
type Range string

// The ranges the dashboard offers.
const (
	RangeHour  Range = "1h"
	RangeDay   Range = "24h"
	RangeWeek  Range = "7d"
	RangeMonth Range = "30d"
)

// Ranges lists every range, shortest first.
var Ranges = []Range{RangeHour, RangeDay, RangeWeek, RangeMonth}

// Valid reports whether r is one of the ranges above.
func (r Range) Valid() bool { return slices.Contains(Ranges, r) }

// Label is the range's name for people.
func (r Range) Label() string {
	switch r {
	case RangeHour:
		return "last hour"
	case RangeDay:
		return "last 24 hours"
	case RangeWeek:
		return "last 7 days"
	case RangeMonth:
		return "last 30 days"
	}
	return string(r)
}

// Grain is the roll-up grain the range is read from.
func (r Range) Grain() Grain {
	switch r {
	case RangeHour:
		return GrainMinute
	case RangeDay:
		return GrainHour
	}
	return GrainDay
}

// Since is the start of the first bucket of the range that ends at now.
func (r Range) Since(now time.Time) time.Time {
	g := r.Grain()
	switch r {
	case RangeHour:
		return g.Truncate(now).Add(-59 * time.Minute)
	case RangeDay:
		return g.Truncate(now).Add(-23 * time.Hour)
	case RangeWeek:
		return g.Truncate(now).AddDate(0, 0, -6)
	}
	return g.Truncate(now).AddDate(0, 0, -29)
}

// DashboardFilter narrows what the dashboard shows. An empty Municipality
// means every municipality.
type DashboardFilter struct {
	Municipality string
	Range        Range
}

// Dimension is what a dashboard table is broken down by.
type Dimension string

// The dashboard's breakdowns. DimensionTotal has one row, keyed "".
const (
	DimensionTotal        Dimension = "total"
	DimensionMunicipality Dimension = "municipality"
	DimensionDesk         Dimension = "desk"
	DimensionService      Dimension = "service"
	DimensionAgency       Dimension = "agency"
)

// Tally is what happened to the requests of one row of a dashboard table
// within a range. For an agency, Submitted counts the work items dispatched
// to it and the outcomes are its work items'. A completion counts towards
// WithinSLA or Breached when its service has an expected completion time.
type Tally struct {
	Key       string `json:"key"`
	Submitted int64  `json:"submitted"`
	Completed int64  `json:"completed"`
	Rejected  int64  `json:"rejected"`
	Failed    int64  `json:"failed"`
	WithinSLA int64  `json:"within_sla"`
	Breached  int64  `json:"breached"`
	// LatencyMillis is the sum of the completions' times from submission,
	// in milliseconds.
	LatencyMillis int64 `json:"latency_ms"`
}

// SLAShare is the share of completions within the expected time, from 0 to
// 1, and false when no completion had one.
func (t Tally) SLAShare() (float64, bool) {
	n := t.WithinSLA + t.Breached
	if n == 0 {
		return 0, false
	}
	return float64(t.WithinSLA) / float64(n), true
}

// MeanLatency is the mean time from submission to completion.
func (t Tally) MeanLatency() time.Duration {
	if t.Completed == 0 {
		return 0
	}
	return time.Duration(t.LatencyMillis/t.Completed) * time.Millisecond
}

// MinuteCount is the number of requests submitted and completed in one
// minute.
type MinuteCount struct {
	At        time.Time `json:"at"`
	Submitted int64     `json:"submitted"`
	Completed int64     `json:"completed"`
}

// LatencyBuckets is the number of buckets of a latency histogram. Bucket 0
// holds times up to 10 ms; bucket i > 0 those above LatencyBucketUpper(i-1)
// and up to LatencyBucketUpper(i), a factor of √2 wider each time; the last
// one, everything above about 250 days.
const LatencyBuckets = 64

// LatencyBucket is the histogram bucket of a time from submission to
// completion.
func LatencyBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 10 {
		return 0
	}
	b := int(math.Ceil(2 * math.Log2(ms/10)))
	return min(max(b, 1), LatencyBuckets-1)
}

// LatencyBucketUpper is the upper bound of bucket i.
func LatencyBucketUpper(i int) time.Duration {
	return time.Duration(10 * math.Pow(2, float64(i)/2) * float64(time.Millisecond))
}

// Histogram counts completions by LatencyBucket.
type Histogram [LatencyBuckets]int64

// Count is the number of completions in h.
func (h *Histogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Add adds o's counts to h.
func (h *Histogram) Add(o *Histogram) {
	for i, c := range o {
		h[i] += c
	}
}

// Quantile estimates the q-quantile (0 < q ≤ 1) of the times counted,
// interpolating within the bucket that holds it: linearly in the first,
// geometrically in the others. It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range h {
		if c == 0 || seen+float64(c) < rank {
			seen += float64(c)
			continue
		}
		frac := (rank - seen) / float64(c)
		upper := float64(LatencyBucketUpper(i))
		if i == 0 {
			return time.Duration(frac * upper)
		}
		lower := float64(LatencyBucketUpper(i - 1))
		return time.Duration(lower * math.Pow(upper/lower, frac))
	}
	return LatencyBucketUpper(LatencyBuckets - 1)
}

// Latency summarises the times from submission to completion of one service,
// or of every service when Service is empty.
type Latency struct {
	Service   string        `json:"service"`
	Completed int64         `json:"completed"`
	P50       time.Duration `json:"p50"`
	P95       time.Duration `json:"p95"`
	P99       time.Duration `json:"p99"`
}

// LatencyOf summarises h.
func LatencyOf(service string, h *Histogram) Latency {
	return Latency{Service: service, Completed: h.Count(), P50: h.Quantile(0.5), P95: h.Quantile(0.95), P99: h.Quantile(0.99)}
}

// QueueBacklog is the state of one agency's work queue: messages not yet
// delivered, delivered but not acknowledged, and redelivered.
type QueueBacklog struct {
	Agency      string `json:"agency"`
	Pending     uint64 `json:"pending"`
	AckPending  uint64 `json:"ack_pending"`
	Redelivered uint64 `json:"redelivered"`
}

// DashboardData is what the Postgres roll-ups tell the dashboard for a
// filter: aggregates only, never a request or a person.
type DashboardData struct {
	Filter DashboardFilter `json:"filter"`
	// Since is where the range starts.
	Since time.Time `json:"since"`
	// Minutes are the last hour's submissions and completions, one entry
	// per minute, oldest first, whatever the range.
	Minutes []MinuteCount `json:"minutes"`
	// Tallies by dimension; DimensionTotal has exactly one.
	Tallies map[Dimension][]Tally `json:"tallies"`
	// Latencies by service, keyed "" for every service together.
	Latencies map[string]*Histogram `json:"-"`
	// PendingDeadLetters are dead letters never replayed, by agency, at any
	// time and of every municipality.
	PendingDeadLetters map[string]int64 `json:"pending_dead_letters"`
	// Municipalities are those with at least one desk, sorted.
	Municipalities []string `json:"municipalities"`
	// DeskNames by desk ID.
	DeskNames map[string]string `json:"-"`
}
