package simagency_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/simagency"
)

func TestParseProfiles(t *testing.T) {
	t.Parallel()

	t.Run("a spec sets each agency and a default for the others", func(t *testing.T) {
		t.Parallel()
		got, err := simagency.ParseProfiles(" *:latency=20ms ; tax:latency=200ms, transient=0.1,reject=0.25;sns:reject=1 ;")
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		want := map[string]simagency.Profile{
			"*":   {Latency: 20 * time.Millisecond},
			"tax": {Latency: 200 * time.Millisecond, TransientRate: 0.1, RejectRate: 0.25},
			"sns": {RejectRate: 1},
		}
		if !maps.Equal(got, want) {
			t.Fatalf("profiles = %+v, want %+v", got, want)
		}
		for agency, p := range map[string]simagency.Profile{
			"tax": want["tax"], "sns": want["sns"], "imt": want["*"],
		} {
			if got := simagency.For(got, agency); got != p {
				t.Errorf("For(%s) = %+v, want %+v", agency, got, p)
			}
		}
	})

	t.Run("an agency named twice keeps the settings of both parts", func(t *testing.T) {
		t.Parallel()
		got, err := simagency.ParseProfiles("tax:latency=1s;tax:reject=0.5")
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if want := (simagency.Profile{Latency: time.Second, RejectRate: 0.5}); got["tax"] != want {
			t.Errorf("tax = %+v, want %+v", got["tax"], want)
		}
	})

	t.Run("refuse takes a duration or a count of work items", func(t *testing.T) {
		t.Parallel()
		got, err := simagency.ParseProfiles("tax:refuse=3;sns:refuse=5m;imt:refuse=0,latency=1ms;ss:refuse=0s")
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		want := map[string]simagency.Profile{
			"tax": {RefuseFirst: 3},
			"sns": {RefuseFor: 5 * time.Minute},
			"imt": {Latency: time.Millisecond},
			"ss":  {},
		}
		if !maps.Equal(got, want) {
			t.Fatalf("profiles = %+v, want %+v", got, want)
		}
	})

	t.Run("an empty spec leaves every agency with the zero profile", func(t *testing.T) {
		t.Parallel()
		got, err := simagency.ParseProfiles("")
		if err != nil || len(got) != 0 {
			t.Fatalf("ParseProfiles(\"\") = %v, %v; want an empty map", got, err)
		}
		if p := simagency.For(got, "tax"); p != (simagency.Profile{}) {
			t.Errorf("For(tax) = %+v, want the zero profile", p)
		}
	})

	bad := []struct {
		spec, mention string
	}{
		{"tax", "want agency:key=value"},
		{"tax:", "want key=value"},
		{"tax:latency", "want key=value"},
		{"tax:speed=1", `unknown key "speed"`},
		{"tax:latency=fast", `invalid duration "fast"`},
		{"tax:reject=1.5", `"1.5" is not a share`},
		{"tax:transient=-0.1", `"-0.1" is not a share`},
		{"tax:reject=half", `"half" is not a share`},
		{"tax:reject=NaN", `"NaN" is not a share`},
		{"tax:transient=+Inf", `"+Inf" is not a share`},
		{"*:latency=1ms;sns:reject=0.1,", "want key=value"},
		{"tax:refuse=-1", `refuse="-1": want a duration (5m) or a count`},
		{"tax:refuse=-5m", `refuse="-5m"`},
		{"tax:refuse=soon", `refuse="soon"`},
		{"tax:refuse=", `refuse=""`},
		{"tax:refuse=1.5", `refuse="1.5"`},
	}
	for _, tt := range bad {
		t.Run(fmt.Sprintf("%q is refused", tt.spec), func(t *testing.T) {
			t.Parallel()
			got, err := simagency.ParseProfiles(tt.spec)
			if err == nil {
				t.Fatalf("ParseProfiles(%q) = %v, want an error", tt.spec, got)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func workItem(id string) events.WorkItem {
	return events.WorkItem{Schema: events.SchemaWorkItem, ID: id + ".tax", RequestID: id, Agency: "tax", ServiceCode: "tax-id-certificate"}
}

func TestAgency_RejectsByWorkItemIDDeterministically(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// Two agencies with the same profile stand for a first delivery and a
	// redelivery after a restart that lost the agency's memory.
	a := simagency.New("tax", simagency.Profile{RejectRate: 0.3})
	b := simagency.New("tax", simagency.Profile{RejectRate: 0.3})
	const n = 2000
	rejected := 0
	for i := range n {
		item := workItem(fmt.Sprintf("req-%d", i))
		ra, err := a.Deliver(ctx, item)
		if err != nil {
			t.Fatalf("deliver %s: %v", item.ID, err)
		}
		rb, err := b.Deliver(ctx, item)
		if err != nil {
			t.Fatalf("deliver %s: %v", item.ID, err)
		}
		if ra != rb {
			t.Fatalf("work item %s: %+v from one agency, %+v from the other", item.ID, ra, rb)
		}
		switch ra.Status {
		case events.StatusRejected:
			rejected++
			if ra.Note == "" {
				t.Errorf("work item %s rejected without a note", item.ID)
			}
		case events.StatusCompleted:
		default:
			t.Fatalf("work item %s answered %q, want completed or rejected", item.ID, ra.Status)
		}
	}
	if share := float64(rejected) / n; share < 0.25 || share > 0.35 {
		t.Errorf("rejected %.3f of work items, want about 0.3", share)
	}
	if a.Applied() != n || a.Duplicates() != 0 {
		t.Errorf("applied %d with %d duplicates, want %d and 0", a.Applied(), a.Duplicates(), n)
	}

	for _, rate := range []float64{0, 1} {
		ag := simagency.New("tax", simagency.Profile{RejectRate: rate})
		want := events.StatusCompleted
		if rate == 1 {
			want = events.StatusRejected
		}
		for i := range 50 {
			r, err := ag.Deliver(ctx, workItem(fmt.Sprintf("req-%d", i)))
			if err != nil || r.Status != want {
				t.Fatalf("at reject rate %v: %+v, %v; want %s", rate, r, err, want)
			}
		}
	}
}

func TestAgency_AppliesARedeliveredWorkItemOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, rate := range []float64{0, 1} {
		a := simagency.New("tax", simagency.Profile{RejectRate: rate})
		item := workItem("req-1")
		first, err := a.Deliver(ctx, item)
		if err != nil {
			t.Fatalf("first delivery: %v", err)
		}
		again, err := a.Deliver(ctx, item)
		if err != nil {
			t.Fatalf("second delivery: %v", err)
		}
		if again.Status != first.Status || again.Note != "already received" {
			t.Errorf("reject rate %v: second delivery answered %+v after %+v; want the same status, noted as already received", rate, again, first)
		}
		if a.Applied() != 1 || a.Duplicates() != 1 {
			t.Errorf("reject rate %v: applied %d with %d duplicates, want 1 and 1", rate, a.Applied(), a.Duplicates())
		}
		if _, err := a.Deliver(ctx, workItem("req-2")); err != nil || a.Applied() != 2 || a.Duplicates() != 1 {
			t.Errorf("reject rate %v: another work item: err %v, applied %d, duplicates %d; want nil, 2, 1", rate, err, a.Applied(), a.Duplicates())
		}
	}
}

func TestAgency_FailsTransientlyAtRateOne(t *testing.T) {
	t.Parallel()
	a := simagency.New("tax", simagency.Profile{TransientRate: 1})
	for i := range 20 {
		_, err := a.Deliver(t.Context(), workItem(fmt.Sprintf("req-%d", i)))
		if !errors.Is(err, simagency.ErrUnavailable) {
			t.Fatalf("delivery %d: err = %v, want ErrUnavailable", i, err)
		}
		if events.IsPermanent(err) {
			t.Fatalf("delivery %d: the simulated outage is marked permanent", i)
		}
	}
	if a.Applied() != 0 {
		t.Errorf("an unavailable agency applied %d work items", a.Applied())
	}
}

func TestAgency_StopsWaitingWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	a := simagency.New("tax", simagency.Profile{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Deliver(ctx, workItem("req-1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("waited %v for an hour-long call after the context ended", waited)
	}
	if a.Applied() != 0 {
		t.Errorf("an abandoned call applied %d work items", a.Applied())
	}
}

func TestAgency_RefusesWhatIsNotOneOfItsWorkItems(t *testing.T) {
	t.Parallel()
	a := simagency.New("tax", simagency.Profile{})
	t.Cleanup(func() { // after the parallel subtests
		if a.Applied() != 0 {
			t.Errorf("applied %d refused work items", a.Applied())
		}
	})
	tests := []struct {
		name   string
		change func(*events.WorkItem)
	}{
		{"a work item for another agency is refused", func(w *events.WorkItem) { w.ID, w.Agency = "req-1.sns", "sns" }},
		{"a work item without an id is refused", func(w *events.WorkItem) { w.ID = "" }},
		{"a work item without a request ID is refused", func(w *events.WorkItem) { w.RequestID = "" }},
		{"a work item without an agency is refused", func(w *events.WorkItem) { w.Agency = "" }},
		{"a message of another schema is refused", func(w *events.WorkItem) { w.Schema = "spotflow.work_item.v0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			item := workItem("req-1")
			tt.change(&item)
			r, err := a.Deliver(t.Context(), item)
			if !events.IsPermanent(err) {
				t.Fatalf("Deliver = %+v, %v; want a permanent error", r, err)
			}
		})
	}
	t.Run("a refusal does not wait for the agency's latency", func(t *testing.T) {
		t.Parallel()
		slow := simagency.New("tax", simagency.Profile{Latency: time.Hour})
		item := workItem("req-1")
		item.Agency = "sns"
		// Waiting would end in the context's deadline instead.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := slow.Deliver(ctx, item); !events.IsPermanent(err) {
			t.Fatalf("err = %v, want a permanent error", err)
		}
	})
}

// TestAgency_RefusesTheFirstWorkItemsOnceEachAsPermanentFailures delivers
// work items to an agency that refuses its first two: each of the first
// two distinct ones is refused once, permanently, and applied when
// delivered again (as a replay would); the rest are applied at once.
func TestAgency_RefusesTheFirstWorkItemsOnceEachAsPermanentFailures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a := simagency.New("tax", simagency.Profile{RefuseFirst: 2})
	for _, step := range []struct {
		id     string
		refuse bool
	}{
		{"req-1", true},
		{"req-1", false}, // delivered again: applied
		{"req-2", true},
		{"req-3", false}, // the first two are refused already
		{"req-2", false},
		{"req-4", false},
		{"req-1", false}, // a duplicate now
	} {
		r, err := a.Deliver(ctx, workItem(step.id))
		switch {
		case step.refuse && !events.IsPermanent(err):
			t.Fatalf("work item %s: %+v, %v; want refused with a permanent error", step.id, r, err)
		case step.refuse && errors.Is(err, simagency.ErrUnavailable):
			t.Errorf("work item %s: the refusal %v is the simulated outage", step.id, err)
		case !step.refuse && (err != nil || r.Status != events.StatusCompleted):
			t.Fatalf("work item %s: %+v, %v; want it applied", step.id, r, err)
		}
	}
	if a.Applied() != 4 || a.Duplicates() != 1 {
		t.Errorf("applied %d with %d duplicates, want 4 and 1", a.Applied(), a.Duplicates())
	}
	none := simagency.New("tax", simagency.Profile{})
	if _, err := none.Deliver(ctx, workItem("req-1")); err != nil {
		t.Errorf("an agency that refuses nothing refused its first work item: %v", err)
	}
}

func TestAgency_RefusesEveryWorkItemWhileItsRefusalLasts(t *testing.T) {
	t.Parallel()
	t.Run("within the window every delivery is refused, again and again", func(t *testing.T) {
		t.Parallel()
		a := simagency.New("tax", simagency.Profile{RefuseFor: time.Hour})
		for i := range 3 {
			for _, id := range []string{"req-1", "req-2"} {
				if r, err := a.Deliver(t.Context(), workItem(id)); !events.IsPermanent(err) {
					t.Fatalf("delivery %d of %s: %+v, %v; want refused with a permanent error", i, id, r, err)
				}
			}
		}
		if a.Applied() != 0 {
			t.Errorf("applied %d work items while refusing", a.Applied())
		}
	})
	t.Run("with no window nothing is refused", func(t *testing.T) {
		t.Parallel()
		a := simagency.New("tax", simagency.Profile{RefuseFor: 0})
		if r, err := a.Deliver(t.Context(), workItem("req-1")); err != nil || r.Status != events.StatusCompleted {
			t.Fatalf("Deliver = %+v, %v; want it applied", r, err)
		}
	})
}
