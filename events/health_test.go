package events_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
)

func TestStreamHealth_UsedIsTheFullerOfBytesAndMessages(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		s    events.StreamHealth
		want float64
	}{
		{"by bytes alone", events.StreamHealth{Bytes: 300, MaxBytes: 1000, MaxMsgs: -1, Messages: 999}, 0.3},
		{"by messages alone", events.StreamHealth{Messages: 50, MaxMsgs: 200, MaxBytes: -1, Bytes: 1 << 40}, 0.25},
		{"the messages when fuller", events.StreamHealth{Bytes: 100, MaxBytes: 1000, Messages: 90, MaxMsgs: 100}, 0.9},
		{"the bytes when fuller", events.StreamHealth{Bytes: 950, MaxBytes: 1000, Messages: 10, MaxMsgs: 100}, 0.95},
		{"no limits: nothing", events.StreamHealth{Bytes: 1 << 40, MaxBytes: -1, Messages: 1 << 30, MaxMsgs: -1}, 0},
		{"zero limits: nothing", events.StreamHealth{Bytes: 10, Messages: 10}, 0},
		{"over its limit", events.StreamHealth{Bytes: 1500, MaxBytes: 1000, MaxMsgs: -1}, 1.5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.s.Used(); got != tt.want {
				t.Errorf("Used() of %+v = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestHealth_AlertsAtTheThresholdsAndNotBelow(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return at.Add(-d) }
	for _, tt := range []struct {
		name string
		h    events.Health
		want []string // name subject severity
	}{
		{"a healthy pipeline raises nothing", events.Health{
			Streams:   []events.StreamHealth{{Name: "SPOTFLOW_WORK", Bytes: 10, MaxBytes: 1000, MaxMsgs: -1}},
			Consumers: []events.ConsumerHealth{{Name: "router", LastAcked: ago(time.Second)}},
			Agencies:  []events.AgencyHealth{{Agency: "imt"}},
		}, nil},
		{"a backlog whose oldest waited the alert's age", events.Health{
			Agencies: []events.AgencyHealth{{Agency: "imt", Backlog: 3, Oldest: ago(events.BacklogAlertAge)}},
		}, []string{"SpotflowAgencyBacklogNotDraining imt ticket"}},
		{"a backlog a minute younger", events.Health{
			Agencies: []events.AgencyHealth{{Agency: "imt", Backlog: 3, Oldest: ago(events.BacklogAlertAge - time.Minute)}},
		}, nil},
		{"an old work item with nothing in the queue", events.Health{
			Agencies: []events.AgencyHealth{{Agency: "imt", Oldest: ago(time.Hour)}},
		}, nil},
		{"a backlog with no oldest work item known", events.Health{
			Agencies: []events.AgencyHealth{{Agency: "imt", Backlog: 3}},
		}, nil},
		{"a dead letter waiting", events.Health{
			Agencies: []events.AgencyHealth{{Agency: "tax", PendingDeadLetters: 1}},
		}, []string{"SpotflowWorkItemsDeadLettered tax ticket"}},
		{"a consumer behind that acknowledged nothing for the alert's age", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "projector", Pending: 1, LastAcked: ago(events.StalledAlertAge)}},
		}, []string{"SpotflowConsumerStalled projector page"}},
		{"a consumer with messages unacknowledged only", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "projector", AckPending: 1, LastAcked: ago(time.Hour)}},
		}, []string{"SpotflowConsumerStalled projector page"}},
		{"a consumer behind that acknowledged a minute sooner", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "projector", Pending: 1, LastAcked: ago(events.StalledAlertAge - time.Minute)}},
		}, nil},
		{"a consumer that delivered long ago and never acknowledged anything", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "agency-tax", AckPending: 2, LastDelivered: ago(events.StalledAlertAge)}},
		}, []string{"SpotflowConsumerStalled agency-tax page"}},
		{"a consumer that just delivered its first messages", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "agency-tax", AckPending: 2, LastDelivered: ago(time.Second)}},
		}, nil},
		{"a consumer behind that never delivered anything", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "agency-tax", Pending: 2}},
		}, nil},
		{"an idle consumer with nothing to do", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "projector", LastAcked: ago(time.Hour)}},
		}, nil},
		{"redeliveries at the alert's count", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "dispatcher-imt", Redelivered: events.RedeliveredAlert}},
		}, []string{"SpotflowRedeliveriesHigh dispatcher-imt ticket"}},
		{"redeliveries one short", events.Health{
			Consumers: []events.ConsumerHealth{{Name: "dispatcher-imt", Redelivered: events.RedeliveredAlert - 1}},
		}, nil},
		{"a stream at the alert's share", events.Health{
			Streams: []events.StreamHealth{{Name: "SPOTFLOW_EVENTS", Messages: 80, MaxMsgs: 100, MaxBytes: -1}},
		}, []string{"SpotflowStreamStorageHigh SPOTFLOW_EVENTS page"}},
		{"a stream just under it", events.Health{
			Streams: []events.StreamHealth{{Name: "SPOTFLOW_EVENTS", Messages: 79, MaxMsgs: 100, MaxBytes: -1}},
		}, nil},
		{"what could not be read", events.Health{Problems: []string{"NATS: connection refused"}},
			[]string{"SpotflowDependencyOutage  page"}},
		{"everything at once, agencies first, then consumers, streams and problems", events.Health{
			Problems:  []string{"Postgres: timeout"},
			Streams:   []events.StreamHealth{{Name: "SPOTFLOW_WORK", Bytes: 900, MaxBytes: 1000}},
			Consumers: []events.ConsumerHealth{{Name: "router", Pending: 5, Redelivered: 500, LastAcked: ago(time.Hour)}},
			Agencies: []events.AgencyHealth{
				{Agency: "imt", Backlog: 1, Oldest: ago(time.Hour), PendingDeadLetters: 2},
				{Agency: "tax", PendingDeadLetters: 1},
			},
		}, []string{
			"SpotflowAgencyBacklogNotDraining imt ticket", "SpotflowWorkItemsDeadLettered imt ticket",
			"SpotflowWorkItemsDeadLettered tax ticket",
			"SpotflowConsumerStalled router page", "SpotflowRedeliveriesHigh router ticket",
			"SpotflowStreamStorageHigh SPOTFLOW_WORK page",
			"SpotflowDependencyOutage  page",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.h.At = at
			var got []string
			for _, a := range tt.h.Alerts() {
				got = append(got, fmt.Sprintf("%s %s %s", a.Name, a.Subject, a.Severity))
				if a.Detail == "" {
					t.Errorf("alert %s of %s says nothing of what broke it", a.Name, a.Subject)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Alerts() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHealth_AlertsSayWhatBrokeTheRule(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	h := events.Health{
		At:        at,
		Agencies:  []events.AgencyHealth{{Agency: "imt", Backlog: 12, Oldest: at.Add(-95 * time.Minute)}},
		Consumers: []events.ConsumerHealth{{Name: "router", Pending: 4, AckPending: 3, LastAcked: at.Add(-10 * time.Minute)}},
		Streams:   []events.StreamHealth{{Name: "SPOTFLOW_WORK", Bytes: 850, MaxBytes: 1000}},
	}
	var got, agencies, figures []string
	for _, a := range h.Alerts() {
		got, agencies = append(got, a.Detail), append(agencies, a.Agency)
		figures = append(figures, fmt.Sprintf("%d %s %.2f", a.Count, a.Age, a.Share))
	}
	// The figures a page says in its own language.
	if want := []string{"12 1h35m0s 0.00", "7 10m0s 0.00", "0 0s 0.85"}; !slices.Equal(figures, want) {
		t.Errorf("figures %q, want %q", figures, want)
	}
	want := []string{"12 waiting, the oldest for 1h35m0s", "7 behind, nothing acknowledged for 10m0s", "85% of its limit used"}
	if !slices.Equal(got, want) {
		t.Errorf("details %q, want %q", got, want)
	}
	// Only an alert about an agency's work names the agency, whose stuck
	// work the console links to.
	if want := []string{"imt", "", ""}; !slices.Equal(agencies, want) {
		t.Errorf("agencies %q, want %q", agencies, want)
	}
}
