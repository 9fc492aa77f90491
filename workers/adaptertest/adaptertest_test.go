package adaptertest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/adaptertest"
)

// A flaw is a rule of workers.Adapter that a memAgency breaks.
const (
	appliesEveryDelivery  = "applies every delivery"
	answersAgainOtherwise = "answers a redelivery with another status"
	answersDispatched     = "answers with a status agencies may not report"
	appliesRefusals       = "applies the work items it refuses"
	refusesTransiently    = "refuses with a transient error"
	outagesArePermanent   = "fails permanently during an outage"
	cancelIsPermanent     = "fails permanently when its context ends"
	cancelLosesTheCause   = "fails without the context's error when its context ends"
)

// memAgency is an agency in memory that keeps the contract of
// workers.Adapter unless it has a flaw.
type memAgency struct {
	behaviour adaptertest.Behaviour
	flaw      string

	mu      sync.Mutex
	applied map[string]int
	status  map[string]events.Status
}

func newMemAgency(b adaptertest.Behaviour, flaw string) *memAgency {
	return &memAgency{behaviour: b, flaw: flaw, applied: make(map[string]int), status: make(map[string]events.Status)}
}

func (m *memAgency) Deliver(ctx context.Context, item events.WorkItem) (workers.Receipt, error) {
	switch m.behaviour {
	case adaptertest.Refuses:
		if m.flaw == appliesRefusals {
			m.apply(item.ID)
		}
		if m.flaw == refusesTransiently {
			return workers.Receipt{}, errors.New("refused")
		}
		return workers.Receipt{}, events.Permanent(errors.New("refused"))
	case adaptertest.Unavailable, adaptertest.Unreachable:
		if m.flaw == outagesArePermanent {
			return workers.Receipt{}, events.Permanent(errors.New("unavailable"))
		}
		return workers.Receipt{}, errors.New("unavailable")
	case adaptertest.Hangs:
		<-ctx.Done()
		switch m.flaw {
		case cancelIsPermanent:
			return workers.Receipt{}, events.Permanent(ctx.Err())
		case cancelLosesTheCause:
			return workers.Receipt{}, errors.New("gave up")
		}
		return workers.Receipt{}, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.status[item.ID]; ok && m.flaw != appliesEveryDelivery {
		if m.flaw == answersAgainOtherwise {
			s = events.StatusAccepted
		}
		return workers.Receipt{Status: s, Note: "already received"}, nil
	}
	s := events.StatusCompleted
	if m.flaw == answersDispatched {
		s = events.StatusDispatched
	}
	m.status[item.ID] = s
	m.applied[item.ID]++
	return workers.Receipt{Status: s}, nil
}

func (m *memAgency) apply(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied[id]++
}

func (m *memAgency) Applied(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied[id]
}

var _ workers.Adapter = (*memAgency)(nil)

// runWithFlaw runs the suite against memory agencies with flaw.
func runWithFlaw(t *testing.T, flaw string) {
	adaptertest.Run(t, func(t *testing.T, b adaptertest.Behaviour) adaptertest.Agency {
		m := newMemAgency(b, flaw)
		return adaptertest.Agency{Adapter: m, Applied: m.Applied}
	})
}

func TestRun_PassesAnAgencyThatKeepsTheContract(t *testing.T) {
	t.Parallel()
	runWithFlaw(t, "")
}

// flawEnv names, in a process that TestRun_FailsAnAgencyThatBreaksTheContract
// starts, the flaw of the agencies it runs the suite against.
const flawEnv = "SPOTFLOW_ADAPTERTEST_FLAW"

// TestRun_FailsAnAgencyThatBreaksTheContract runs the suite against memory
// agencies with one flaw each, every one in a process of its own running this
// test (the suite must fail there), and checks which cases failed.
func TestRun_FailsAnAgencyThatBreaksTheContract(t *testing.T) {
	if flaw := os.Getenv(flawEnv); flaw != "" {
		// In the process started below: run the suite, which fails.
		runWithFlaw(t, flaw)
		return
	}
	t.Parallel()
	const (
		statuses       = "every answer is a status an agency may report"
		twice          = "a work item delivered twice is applied once and answered the same"
		atOnce         = "a work item delivered by several callers at once is applied once"
		distinct       = "distinct work items delivered concurrently are each applied once"
		cancelBefore   = "a context cancelled before the call ends it at once with a transient error"
		cancelDuring   = "a context cancelled while the agency is slow ends the call promptly with a transient error"
		deadline       = "a deadline that passes while the agency is slow ends the call promptly with a transient error"
		refusal        = "a refusal is a permanent error and applies nothing"
		unavailable    = "an agency that is unavailable fails transiently"
		unreachable    = "an agency that cannot be reached fails transiently"
		failedSubtests = `(?m)^\s*--- FAIL: TestRun_FailsAnAgencyThatBreaksTheContract/(\S+)`
	)
	tests := []struct {
		flaw    string
		failing []string
	}{
		{appliesEveryDelivery, []string{twice, atOnce}},
		{answersAgainOtherwise, []string{twice, atOnce}},
		{answersDispatched, []string{statuses, distinct}},
		{appliesRefusals, []string{refusal}},
		{refusesTransiently, []string{refusal}},
		{outagesArePermanent, []string{unavailable, unreachable}},
		{cancelIsPermanent, []string{cancelBefore, cancelDuring, deadline}},
		{cancelLosesTheCause, []string{cancelBefore, cancelDuring, deadline}},
	}
	failed := regexp.MustCompile(failedSubtests)
	for _, tt := range tests {
		t.Run("an agency that "+tt.flaw+" fails the cases it breaks", func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRun_FailsAnAgencyThatBreaksTheContract$", "-test.v")
			cmd.Env = append(os.Environ(), flawEnv+"="+tt.flaw)
			out, err := cmd.CombinedOutput()
			if _, exited := errors.AsType[*exec.ExitError](err); !exited {
				t.Fatalf("the suite passed or did not run: %v\n%s", err, out)
			}
			var got []string
			for _, m := range failed.FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			want := make([]string, len(tt.failing))
			for i, name := range tt.failing {
				want[i] = strings.ReplaceAll(name, " ", "_") // as go test names subtests
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("failed cases %q, want %q\n%s", got, want, out)
			}
		})
	}
}
