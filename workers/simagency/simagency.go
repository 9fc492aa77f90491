// Package simagency is a simulated agency back office: an adapter whose
// latency, rejection rate and transient-failure rate are set per agency. It
// serves `spotflow run`, demonstrations and tests. Like a real back office it
// applies each work item once however often it is delivered, refuses what is
// not a work item for it, and keeps a log of what it applied so tests can
// count duplicates. It imports the domain (events) and workers (for the
// Adapter it implements), no other adapter.
package simagency

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
)

// Profile is how a simulated agency behaves.
type Profile struct {
	// Latency of every call.
	Latency time.Duration
	// RejectRate is the share of work items the agency rejects, decided by
	// the work item's ID so that a redelivery gets the same answer.
	RejectRate float64
	// TransientRate is the share of calls that fail as if the agency were
	// briefly unreachable.
	TransientRate float64
	// RefuseFor and RefuseFirst simulate a back office that refuses work
	// for a while, as a permanent failure (so each refused work item is
	// dead-lettered at once, for an operator to replay): every work item
	// delivered within RefuseFor of the agency's start, and the first
	// RefuseFirst distinct work items delivered.
	RefuseFor   time.Duration
	RefuseFirst int
}

// ErrUnavailable is the transient failure a simulated agency returns.
var ErrUnavailable = errors.New("simulated agency temporarily unavailable")

// Agency is one simulated back office. It is safe for concurrent use.
type Agency struct {
	code    string
	profile Profile

	started time.Time

	mu         sync.Mutex
	applied    map[string]events.Status
	duplicates int
	refused    map[string]bool
}

var _ workers.Adapter = (*Agency)(nil)

// New returns a simulated agency.
func New(code string, p Profile) *Agency {
	return &Agency{code: code, profile: p, started: time.Now(), applied: make(map[string]events.Status), refused: make(map[string]bool)}
}

// Deliver simulates the agency receiving item. Like the agency server, it
// refuses at once, with an error marked events.Permanent, a work item for
// another agency or one without its schema, id, request ID or agency.
func (a *Agency) Deliver(ctx context.Context, item events.WorkItem) (workers.Receipt, error) {
	switch {
	case item.Schema != events.SchemaWorkItem || item.ID == "" || item.RequestID == "" || item.Agency == "":
		return workers.Receipt{}, events.Permanent(fmt.Errorf("simulated %s: not a %s with id, request_id and agency", a.code, events.SchemaWorkItem))
	case item.Agency != a.code:
		return workers.Receipt{}, events.Permanent(fmt.Errorf("simulated %s: work item %s is for %s", a.code, item.ID, item.Agency))
	}
	if a.profile.Latency > 0 {
		t := time.NewTimer(a.profile.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return workers.Receipt{}, ctx.Err()
		case <-t.C:
		}
	}
	if a.profile.TransientRate > 0 && rand.Float64() < a.profile.TransientRate {
		return workers.Receipt{}, ErrUnavailable
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuses(item.ID) {
		return workers.Receipt{}, events.Permanent(fmt.Errorf("simulated %s: the back office refuses work for now", a.code))
	}
	if status, ok := a.applied[item.ID]; ok {
		a.duplicates++
		return workers.Receipt{Status: status, Note: "already received"}, nil
	}
	status, note := events.StatusCompleted, ""
	if share(item.ID) < a.profile.RejectRate {
		status, note = events.StatusRejected, "rejected by the simulated "+a.code
	}
	a.applied[item.ID] = status
	return workers.Receipt{Status: status, Note: note}, nil
}

// refuses reports whether the agency refuses work item id now: within
// RefuseFor of its start, or among the first RefuseFirst work items it was
// given (each refused once). The caller holds a.mu.
func (a *Agency) refuses(id string) bool {
	if time.Since(a.started) < a.profile.RefuseFor {
		return true
	}
	if a.refused[id] || len(a.refused) >= a.profile.RefuseFirst {
		return false
	}
	a.refused[id] = true
	return true
}

// Applied returns how many distinct work items the agency applied.
func (a *Agency) Applied() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.applied)
}

// Duplicates returns how many deliveries repeated a work item already applied.
func (a *Agency) Duplicates() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.duplicates
}

// share maps id to [0, 1) deterministically.
func share(id string) float64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return float64(h.Sum64()>>11) / (1 << 53)
}

// ParseProfiles reads per-agency profiles written as
// "agency:key=value,key=value;agency:...", where "*" sets the default for
// agencies not named and keys are latency (a Go duration), reject and
// transient (shares from 0 to 1) and refuse (a duration after starting, or
// a count of first work items, refused as permanent failures). For example:
// "*:latency=20ms;tax:latency=200ms,transient=0.1".
func ParseProfiles(spec string) (map[string]Profile, error) {
	out := make(map[string]Profile)
	for part := range strings.SplitSeq(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		agency, settings, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("parse agency profiles: %q: want agency:key=value", part)
		}
		p := out[agency]
		for kv := range strings.SplitSeq(settings, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return nil, fmt.Errorf("parse agency profiles: %q: want key=value", kv)
			}
			var err error
			switch k {
			case "latency":
				p.Latency, err = time.ParseDuration(v)
			case "reject":
				p.RejectRate, err = parseShare(v)
			case "transient":
				p.TransientRate, err = parseShare(v)
			case "refuse":
				p.RefuseFor, p.RefuseFirst, err = parseRefuse(v)
			default:
				err = fmt.Errorf("unknown key %q", k)
			}
			if err != nil {
				return nil, fmt.Errorf("parse agency profiles: %s: %w", agency, err)
			}
		}
		out[agency] = p
	}
	return out, nil
}

// parseRefuse reads refuse=: a Go duration (refuse for that long after
// starting) or a count (refuse the first that many work items).
func parseRefuse(v string) (time.Duration, int, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return 0, n, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, 0, nil
	}
	return 0, 0, fmt.Errorf("refuse=%q: want a duration (5m) or a count of work items (3)", v)
}

func parseShare(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0 && f <= 1) { // written so that NaN is refused too
		return 0, fmt.Errorf("%q is not a share between 0 and 1", v)
	}
	return f, nil
}

// For returns the profile of agency from profiles, falling back to "*".
func For(profiles map[string]Profile, agency string) Profile {
	if p, ok := profiles[agency]; ok {
		return p
	}
	return profiles["*"]
}
