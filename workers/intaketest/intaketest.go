// Package intaketest starts a real intake for the tests of the APIs that
// submit through it (the desk API, Open311): a Postgres schema of its own
// (pgtest), an embedded JetStream (natstest), the built-in catalogue, and a
// desk of Lisbon registered with it. Everything is torn down when the test
// ends.
package intaketest

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// Desk is an intake and the desk registered with it.
type Desk struct {
	Intake  *workers.Intake
	Catalog workers.Catalogs
	Store   *postgres.Store
	JS      jetstream.JetStream
	Desk    events.Desk
	// Token is the desk's credential.
	Token string
}

// Start starts an intake and registers a desk. wrap, when set, wraps the
// real publisher, to watch or fail what intake publishes.
func Start(t testing.TB, wrap func(workers.Publisher) workers.Publisher) *Desk {
	t.Helper()
	store := pgtest.Store(t)
	js := natstest.JetStream(t)
	var pub workers.Publisher = natsbus.NewPublisher(js)
	if wrap != nil {
		pub = wrap(pub)
	}
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{})
	if err != nil {
		t.Fatalf("intaketest: built-in catalogue: %v", err)
	}
	in, err := workers.NewIntake(workers.IntakeConfig{Store: store, Publisher: pub, Catalog: catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("intaketest: new intake: %v", err)
	}
	desk, token, err := store.CreateDesk(t.Context(), "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatalf("intaketest: create desk: %v", err)
	}
	return &Desk{Intake: in, Catalog: catalog, Store: store, JS: js, Desk: desk, Token: token}
}

// FlakyPublisher fails while Down, and notes the ID of every message it is
// asked to publish. Set Next before use.
type FlakyPublisher struct {
	Next workers.Publisher
	Down atomic.Bool

	mu    sync.Mutex
	asked []string
}

// Publish notes out's ID, then fails while Down and publishes through Next
// otherwise.
func (f *FlakyPublisher) Publish(ctx context.Context, out natsbus.Outgoing) error {
	f.mu.Lock()
	f.asked = append(f.asked, out.ID)
	f.mu.Unlock()
	if f.Down.Load() {
		return errors.New("nats: no responders available for request")
	}
	return f.Next.Publish(ctx, out)
}

// Asked returns the IDs of the messages it was asked to publish, in order.
func (f *FlakyPublisher) Asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}
