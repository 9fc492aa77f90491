package events_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spotflow/spotflow/events"
)

func TestStatus_RankFollowsTheLifecycle(t *testing.T) {
	t.Parallel()
	lifecycle := []events.Status{
		events.StatusSubmitted, events.StatusRouted, events.StatusDispatched,
		events.StatusAccepted, events.StatusInProgress, events.StatusFailed,
	}
	for i := 1; i < len(lifecycle); i++ {
		if lo, hi := lifecycle[i-1], lifecycle[i]; lo.Rank() >= hi.Rank() {
			t.Errorf("%s ranks %d, not below %s at %d", lo, lo.Rank(), hi, hi.Rank())
		}
	}
	for _, terminal := range []events.Status{events.StatusCompleted, events.StatusRejected} {
		for _, s := range lifecycle {
			if s.Rank() >= terminal.Rank() {
				t.Errorf("%s ranks %d, not below terminal %s at %d", s, s.Rank(), terminal, terminal.Rank())
			}
		}
	}
	if events.StatusCompleted.Rank() != events.StatusRejected.Rank() {
		t.Errorf("completed ranks %d and rejected %d; terminal statuses share the top rank",
			events.StatusCompleted.Rank(), events.StatusRejected.Rank())
	}
}

func TestStatus_StatusesListsEveryStatusInLifecycleOrder(t *testing.T) {
	t.Parallel()
	if len(events.Statuses) != 8 {
		t.Fatalf("Statuses has %d entries, want 8", len(events.Statuses))
	}
	seen := map[events.Status]bool{}
	for i, s := range events.Statuses {
		if !s.Valid() {
			t.Errorf("Statuses[%d] = %q is not valid", i, s)
		}
		if seen[s] {
			t.Errorf("Statuses lists %q twice", s)
		}
		seen[s] = true
	}
	if events.Statuses[0] != events.StatusSubmitted {
		t.Errorf("Statuses starts with %q, want submitted", events.Statuses[0])
	}
}

func TestStatus_UnknownStatusesRankZeroAndAreInvalid(t *testing.T) {
	t.Parallel()
	for _, s := range []events.Status{"", "open", "closed", "Completed", "cancelled"} {
		if s.Rank() != 0 || s.Valid() {
			t.Errorf("%q: Rank() = %d, Valid() = %v; want 0, false", s, s.Rank(), s.Valid())
		}
	}
}

func TestStatus_TerminalAndOpen311(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   events.Status
		terminal bool
		open311  string
	}{
		{events.StatusSubmitted, false, "open"},
		{events.StatusRouted, false, "open"},
		{events.StatusDispatched, false, "open"},
		{events.StatusAccepted, false, "open"},
		{events.StatusInProgress, false, "open"},
		{events.StatusCompleted, true, "closed"},
		{events.StatusRejected, true, "closed"},
		// failed waits for an operator's replay: terminal for the pipeline,
		// but still open to the citizen.
		{events.StatusFailed, true, "open"},
	}
	for _, tt := range tests {
		if got := tt.status.Terminal(); got != tt.terminal {
			t.Errorf("%s.Terminal() = %v, want %v", tt.status, got, tt.terminal)
		}
		if got := tt.status.Open311(); got != tt.open311 {
			t.Errorf("%s.Open311() = %q, want %q", tt.status, got, tt.open311)
		}
	}
}

func TestStatus_Aggregate(t *testing.T) {
	t.Parallel()
	const (
		sub  = events.StatusSubmitted
		rout = events.StatusRouted
		disp = events.StatusDispatched
		acc  = events.StatusAccepted
		prog = events.StatusInProgress
		done = events.StatusCompleted
		rej  = events.StatusRejected
		fail = events.StatusFailed
	)
	tests := []struct {
		name  string
		items []events.Status
		want  events.Status
	}{
		{"no work items yet is submitted", nil, sub},
		{"an empty list is submitted", []events.Status{}, sub},
		{"one routed item is routed", []events.Status{rout}, rout},
		{"all completed is completed", []events.Status{done, done, done}, done},
		{"one completed item is completed", []events.Status{done}, done},
		{"any rejected is rejected", []events.Status{done, rej, done}, rej},
		{"rejected wins over items still under way", []events.Status{rout, acc, rej}, rej},
		{"rejected wins over failed", []events.Status{fail, rej}, rej},
		{"failed with the rest completed is failed", []events.Status{done, fail, done}, fail},
		{"failed alone is failed", []events.Status{fail}, fail},
		{"failed waits while another item is under way", []events.Status{fail, prog}, prog},
		{"least advanced item under way wins", []events.Status{prog, acc, disp}, disp},
		{"completed items do not count while others are under way", []events.Status{done, rout}, rout},
		{"completed and failed items leave the one under way", []events.Status{done, fail, acc}, acc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := events.Aggregate(tt.items); got != tt.want {
				t.Errorf("Aggregate(%v) = %s, want %s", tt.items, got, tt.want)
			}
		})
	}
}

func TestStatus_AggregateIgnoresTheOrderOfWorkItems(t *testing.T) {
	t.Parallel()
	items := []events.Status{events.StatusFailed, events.StatusAccepted, events.StatusCompleted, events.StatusRouted}
	want := events.Aggregate(items)
	for _, p := range permutations(items) {
		if got := events.Aggregate(p); got != want {
			t.Errorf("Aggregate(%v) = %s, but Aggregate(%v) = %s", p, got, items, want)
		}
	}
}

func TestStatus_AggregateNeverExceedsTheLeastAdvancedOpenItem(t *testing.T) {
	t.Parallel()
	// For every pair of statuses, the aggregate of a request is never ahead
	// of a work item that is still under way.
	for _, a := range events.Statuses {
		for _, b := range events.Statuses {
			t.Run(fmt.Sprintf("%s and %s", a, b), func(t *testing.T) {
				agg := events.Aggregate([]events.Status{a, b})
				if agg == events.StatusRejected {
					if a != events.StatusRejected && b != events.StatusRejected {
						t.Errorf("Aggregate = rejected without a rejected item")
					}
					return
				}
				for _, s := range []events.Status{a, b} {
					if !s.Terminal() && agg.Rank() > s.Rank() {
						t.Errorf("Aggregate = %s, ahead of %s still under way", agg, s)
					}
				}
			})
		}
	}
}

func permutations(s []events.Status) [][]events.Status {
	if len(s) <= 1 {
		return [][]events.Status{slices.Clone(s)}
	}
	var out [][]events.Status
	for i := range s {
		rest := slices.Concat(s[:i:i], s[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]events.Status{s[i]}, p...))
		}
	}
	return out
}
