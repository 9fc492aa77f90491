// Package adaptertest holds the conformance suite every workers.Adapter must
// pass. An adapter's own tests call Run with a function that connects the
// adapter to a real agency (a simulated back office, a reference server)
// made to behave as each case asks; the suite then checks the contract of
// workers.Adapter against it:
//
//   - a successful delivery answers accepted, in_progress, completed or
//     rejected, and nothing else;
//   - a work item delivered more than once, one call after another or
//     several at the same time, is applied once and answered the same each
//     time, as the agency's own record shows;
//   - a call whose context is cancelled, before it starts or while the
//     agency is slow, returns promptly with an error that is not permanent
//     and wraps the context's error;
//   - a refusal is an error marked with events.Permanent, while an agency
//     that is unavailable or cannot be reached gives an error that is not;
//   - distinct work items delivered concurrently are each applied once
//     (run the suite under the race detector).
package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
)

// AgencyCode is the agency every work item the suite delivers is addressed
// to. The agency behind an adapter under test must simulate it.
const AgencyCode = "tax"

// Behaviour is how the agency behind an adapter under test must act.
type Behaviour int

const (
	// Answers: the agency takes every work item, applies it once however
	// often it is delivered, and answers with the status it reached
	// (rejecting some work items is fine). It answers quickly.
	Answers Behaviour = iota
	// Refuses: the agency definitively refuses every work item, applying
	// none; for example, it serves an agency other than AgencyCode.
	Refuses
	// Unavailable: the agency is reachable but fails every delivery as
	// temporarily unavailable (an HTTP 503, a simulated outage).
	Unavailable
	// Unreachable: nothing answers where the agency should be (connection
	// refused). An adapter that cannot be out of reach, such as one in the
	// same process as its agency, names it among the behaviours it cannot
	// show, and the suite leaves that case out.
	Unreachable
	// Hangs: the agency takes far longer to answer than the suite waits: at
	// least a minute; an hour is usual.
	Hangs
)

// String names the behaviour, for messages.
func (b Behaviour) String() string {
	switch b {
	case Answers:
		return "answers"
	case Refuses:
		return "refuses"
	case Unavailable:
		return "unavailable"
	case Unreachable:
		return "unreachable"
	case Hangs:
		return "hangs"
	}
	return fmt.Sprintf("Behaviour(%d)", int(b))
}

// Agency is an adapter under test together with a view of the agency
// behind it.
type Agency struct {
	// Adapter is the adapter under test, connected to the agency.
	Adapter workers.Adapter
	// Applied returns how many times the agency has applied the work item
	// id, as the agency's own record (its journal, its database, its state)
	// shows it. The suite calls it from the case's goroutine only, so it may
	// fail the test with t.Fatal. An agency that cannot be reached may
	// return 0.
	Applied func(id string) int
}

// NewAgency makes a fresh agency that behaves as b, and an adapter
// connected to it, for one case of the suite. It is called once per case,
// from the case's goroutine, with the case's t: it registers with
// t.Cleanup whatever it starts. It is never asked for a behaviour that the
// adapter's Run named as one it cannot show.
type NewAgency func(t *testing.T, b Behaviour) Agency

// within is how long the suite waits for a call whose context has ended
// to return: generous, so that a loaded machine does not fail the suite,
// and far shorter than a hanging agency takes.
const within = 10 * time.Second

// suiteCase is one case of the suite.
type suiteCase struct {
	name string
	test func(t *testing.T, newAgency NewAgency)
}

// Run runs the conformance suite against the adapters newAgency makes,
// one subtest per case, the cases in parallel. cannot names the behaviours
// the adapter cannot be made to show by its nature (Unreachable, for an
// agency in the same process); the cases that need them are left out.
func Run(t *testing.T, newAgency NewAgency, cannot ...Behaviour) {
	cases := []suiteCase{
		{"every answer is a status an agency may report", answersAreAgencyStatuses},
		{"a work item delivered twice is applied once and answered the same", redeliveryIsAppliedOnce},
		{"a work item delivered by several callers at once is applied once", concurrentRedeliveryIsAppliedOnce},
		{"distinct work items delivered concurrently are each applied once", concurrentItemsAreEachAppliedOnce},
		{"a context cancelled before the call ends it at once with a transient error", cancelledBeforeTheCall},
		{"a context cancelled while the agency is slow ends the call promptly with a transient error", cancelledDuringTheCall},
		{"a deadline that passes while the agency is slow ends the call promptly with a transient error", deadlineDuringTheCall},
		{"a refusal is a permanent error and applies nothing", refusalIsPermanent},
		{"an agency that is unavailable fails transiently", unavailableIsTransient},
	}
	if !slices.Contains(cannot, Unreachable) {
		cases = append(cases, suiteCase{"an agency that cannot be reached fails transiently", unreachableIsTransient})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t, newAgency)
		})
	}
}

// agency calls newAgency and checks what it returned.
func agency(t *testing.T, newAgency NewAgency, b Behaviour) Agency {
	t.Helper()
	a := newAgency(t, b)
	if a.Adapter == nil || a.Applied == nil {
		t.Fatalf("the agency made to behave as %q lacks its adapter or its Applied function", b)
	}
	return a
}

// workItem returns the n-th work item of a case, addressed to AgencyCode,
// complete as the router would queue it.
func workItem(n int) events.WorkItem {
	requestID := fmt.Sprintf("r%d", n)
	return events.WorkItem{
		Schema:       events.SchemaWorkItem,
		ID:           events.WorkItemID(requestID, AgencyCode),
		RequestID:    requestID,
		Agency:       AgencyCode,
		ServiceCode:  "change-of-address",
		DeskID:       "desk-1",
		Municipality: "lisboa",
		Citizen:      events.Citizen{NationalID: "12345678", Name: "Maria Silva"},
		SubmittedAt:  time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	}
}

// agencyStatus reports whether s is a status an agency may answer with.
func agencyStatus(s events.Status) bool {
	switch s {
	case events.StatusAccepted, events.StatusInProgress, events.StatusCompleted, events.StatusRejected:
		return true
	}
	return false
}

func answersAreAgencyStatuses(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Answers)
	for n := range 20 {
		item := workItem(n)
		r, err := a.Adapter.Deliver(t.Context(), item)
		if err != nil {
			t.Fatalf("deliver %s: %v", item.ID, err)
		}
		if !agencyStatus(r.Status) {
			t.Fatalf("deliver %s: answered status %q, want accepted, in_progress, completed or rejected", item.ID, r.Status)
		}
		if got := a.Applied(item.ID); got != 1 {
			t.Fatalf("work item %s answered %s is applied %d times, want once", item.ID, r.Status, got)
		}
	}
}

func redeliveryIsAppliedOnce(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Answers)
	for n := range 10 {
		item := workItem(n)
		first, err := a.Adapter.Deliver(t.Context(), item)
		if err != nil {
			t.Fatalf("first delivery of %s: %v", item.ID, err)
		}
		again, err := a.Adapter.Deliver(t.Context(), item)
		if err != nil {
			t.Fatalf("second delivery of %s: %v", item.ID, err)
		}
		if again.Status != first.Status {
			t.Fatalf("work item %s answered %s, then %s when delivered again", item.ID, first.Status, again.Status)
		}
		if got := a.Applied(item.ID); got != 1 {
			t.Fatalf("work item %s delivered twice is applied %d times, want once", item.ID, got)
		}
	}
}

func concurrentRedeliveryIsAppliedOnce(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Answers)
	const callers = 8
	for n := range 5 {
		item := workItem(n)
		var wg sync.WaitGroup
		receipts := make([]workers.Receipt, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Go(func() { receipts[i], errs[i] = a.Adapter.Deliver(t.Context(), item) })
		}
		wg.Wait()
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("delivery %d of %s: %v", i, item.ID, errs[i])
			}
			if receipts[i].Status != receipts[0].Status {
				t.Fatalf("work item %s delivered at once by %d callers answered both %s and %s",
					item.ID, callers, receipts[0].Status, receipts[i].Status)
			}
		}
		if got := a.Applied(item.ID); got != 1 {
			t.Fatalf("work item %s delivered at once by %d callers is applied %d times, want once", item.ID, callers, got)
		}
	}
}

func concurrentItemsAreEachAppliedOnce(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Answers)
	const callers, each = 8, 8
	errs := make(chan error, callers*each)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for k := range each {
				item := workItem(c*each + k)
				r, err := a.Adapter.Deliver(t.Context(), item)
				switch {
				case err != nil:
					errs <- fmt.Errorf("deliver %s: %w", item.ID, err)
				case !agencyStatus(r.Status):
					errs <- fmt.Errorf("deliver %s: answered status %q", item.ID, r.Status)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for n := range callers * each {
		if got := a.Applied(workItem(n).ID); got != 1 {
			t.Errorf("work item %s is applied %d times, want once", workItem(n).ID, got)
		}
	}
}

// deliverWithin delivers item with ctx and returns what Deliver returned,
// failing the test if it takes longer than within.
func deliverWithin(t *testing.T, a workers.Adapter, ctx context.Context, item events.WorkItem) (workers.Receipt, error) {
	t.Helper()
	type result struct {
		r   workers.Receipt
		err error
	}
	done := make(chan result, 1) // buffered: a call that never returns leaks no blocked send
	go func() {
		r, err := a.Deliver(ctx, item)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-time.After(within):
		t.Fatalf("deliver %s: still waiting %v after its context ended (%v)", item.ID, within, context.Cause(ctx))
		return workers.Receipt{}, nil
	}
}

// checkEndedByContext checks the outcome of a call ended by its context.
func checkEndedByContext(t *testing.T, ctx context.Context, item events.WorkItem, r workers.Receipt, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("deliver %s: answered %+v although its context ended before the agency answered", item.ID, r)
	case events.IsPermanent(err):
		t.Fatalf("deliver %s: the context ending gave a permanent error, which would dead-letter the work item: %v", item.ID, err)
	case !errors.Is(err, ctx.Err()):
		t.Fatalf("deliver %s: error %v does not wrap the context's %v", item.ID, err, ctx.Err())
	}
}

func cancelledBeforeTheCall(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Hangs)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	item := workItem(1)
	r, err := deliverWithin(t, a.Adapter, ctx, item)
	checkEndedByContext(t, ctx, item, r, err)
}

func cancelledDuringTheCall(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Hangs)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Cancel once the call is under way: the agency takes far longer.
	stop := time.AfterFunc(50*time.Millisecond, cancel)
	defer stop.Stop()
	item := workItem(1)
	r, err := deliverWithin(t, a.Adapter, ctx, item)
	checkEndedByContext(t, ctx, item, r, err)
}

func deadlineDuringTheCall(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Hangs)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	item := workItem(1)
	r, err := deliverWithin(t, a.Adapter, ctx, item)
	checkEndedByContext(t, ctx, item, r, err)
}

func refusalIsPermanent(t *testing.T, newAgency NewAgency) {
	a := agency(t, newAgency, Refuses)
	item := workItem(1)
	for attempt := range 2 {
		r, err := a.Adapter.Deliver(t.Context(), item)
		if err == nil || !events.IsPermanent(err) {
			t.Fatalf("delivery %d of %s to an agency that refuses it: %+v, %v; want an error marked permanent", attempt+1, item.ID, r, err)
		}
	}
	if got := a.Applied(item.ID); got != 0 {
		t.Fatalf("refused work item %s is applied %d times, want never", item.ID, got)
	}
}

// checkTransient delivers a few work items to a and checks that each fails
// with an error that is not permanent.
func checkTransient(t *testing.T, a Agency) {
	t.Helper()
	for n := range 3 {
		item := workItem(n)
		r, err := a.Adapter.Deliver(t.Context(), item)
		if err == nil {
			t.Fatalf("deliver %s: answered %+v, want an error", item.ID, r)
		}
		if events.IsPermanent(err) {
			t.Fatalf("deliver %s: a passing failure gave a permanent error, which would dead-letter the work item: %v", item.ID, err)
		}
	}
}

func unavailableIsTransient(t *testing.T, newAgency NewAgency) {
	checkTransient(t, agency(t, newAgency, Unavailable))
}

func unreachableIsTransient(t *testing.T, newAgency NewAgency) {
	checkTransient(t, agency(t, newAgency, Unreachable))
}
