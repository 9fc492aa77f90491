package workers

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// HealthStore is what reading the pipeline's health needs of the database.
type HealthStore interface {
	OldestWaiting(ctx context.Context) (map[string]time.Time, error)
	PendingDeadLetters(ctx context.Context) (map[string]int64, error)
}

// ReadHealth reads the pipeline's health at a glance from JetStream (its
// streams and consumers) and the projection (each agency's oldest waiting
// work item and dead letters), for the agencies given and any other that
// has work. What cannot be read is named in Problems; the rest is still
// returned.
func ReadHealth(ctx context.Context, js jetstream.JetStream, store HealthStore, agencies []string) events.Health {
	h := events.Health{At: time.Now()}
	byAgency := map[string]*events.AgencyHealth{}
	agency := func(code string) *events.AgencyHealth {
		if a, ok := byAgency[code]; ok {
			return a
		}
		a := &events.AgencyHealth{Agency: code}
		byAgency[code] = a
		return a
	}
	for _, code := range agencies {
		agency(code)
	}
	var err error
	if h.Streams, h.Consumers, err = natsbus.Health(ctx, js); err != nil {
		h.Problems = append(h.Problems, "NATS: "+err.Error())
	}
	for _, c := range h.Consumers {
		code, ok := strings.CutPrefix(c.Name, events.AgencyConsumer(""))
		if c.Stream == events.WorkStream && ok && code != events.SourcePractice {
			a := agency(code)
			a.Backlog, a.Redelivered = c.Lag(), c.Redelivered
		}
	}
	oldest, err := store.OldestWaiting(ctx)
	if err != nil {
		h.Problems = append(h.Problems, "Postgres: "+err.Error())
	}
	for code, at := range oldest {
		agency(code).Oldest = at
	}
	dead, err := store.PendingDeadLetters(ctx)
	if err != nil {
		h.Problems = append(h.Problems, "Postgres: "+err.Error())
	}
	for code, n := range dead {
		if code != "" {
			agency(code).PendingDeadLetters = n
		}
	}
	for _, a := range byAgency {
		h.Agencies = append(h.Agencies, *a)
	}
	slices.SortFunc(h.Agencies, func(a, b events.AgencyHealth) int { return strings.Compare(a.Agency, b.Agency) })
	return h
}
