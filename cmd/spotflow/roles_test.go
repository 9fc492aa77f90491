package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestRoles_RunApartShareTheWork runs intake (with the embedded NATS server)
// and then two routers, two dispatchers and two projectors as separate Mains,
// each with its own connections, the way separate processes would, and
// checks that requests flow through them to completion.
func TestRoles_RunApartShareTheWork(t *testing.T) {
	dbURL := pgtest.Schema(t)
	key := strings.Repeat("cd", 32)
	identities := t.TempDir() // the seeds the front's NATS server creates and the others use
	start := func(roles []string, natsURL, httpAddr string, embed bool) *Main {
		m := &Main{
			Config: Config{
				DataDir: t.TempDir(), HTTPAddr: httpAddr, NATSURL: natsURL, NATSListen: "127.0.0.1:0",
				DatabaseURL: dbURL, Agencies: "*:latency=2ms", CitizenKey: key, NATSIdentities: identities,
			},
			Roles: roles,
			Embed: embed,
		}
		runMain(t, m)
		return m
	}
	front := start([]string{roleIntake}, "", "127.0.0.1:0", true)
	for _, role := range []string{roleRouter, roleRouter, roleDispatcher, roleDispatcher, roleProjector, roleProjector} {
		start([]string{role}, front.NATSURL(), "", false)
	}

	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()
	desk, token, err := store.CreateDesk(ctx, "porto", "Desk")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var ids []string
	for n := range 60 {
		a := post(t, client, "http://"+front.HTTPAddr(), token, submission{key: fmt.Sprint(n), body: validBody(n)})
		if a.status != http.StatusAccepted {
			t.Fatalf("submission %d: %d %s", n, a.status, a.code)
		}
		ids = append(ids, a.id)
	}
	// A practice request, as intake publishes one from the desk
	// application's training mode: the router, dispatcher and projector,
	// each with only its own permissions, carry it through the practice
	// queue.
	practice := eventstest.Request(events.NewID(time.Now()), "driving-licence-renewal", map[string]any{"licence_number": "L-1", "categories": []string{"B"}})
	practice.DeskID, practice.Municipality, practice.SubmittedAt = desk.ID, desk.Municipality, time.Now().UTC()
	practice.Practice = &events.Practice{Outcome: events.OutcomeReject, Reason: "Practice: photo too dark"}
	if err := natsbus.NewPublisher(connectAs(t, front, natsbus.Intake)).Publish(ctx, natsbus.Outgoing{
		Subject: events.RequestSubject(desk.Municipality, desk.ID), ID: practice.ID, Value: practice}); err != nil {
		t.Fatal(err)
	}
	workertest.WaitWithin(t, 60*time.Second, "every request to complete", func() error {
		done := 0
		for _, id := range ids {
			if v, err := store.RequestForDesk(ctx, desk.ID, id); err == nil && v.Status == events.StatusCompleted {
				done++
			}
		}
		if v, err := store.RequestForDesk(ctx, desk.ID, practice.ID); err != nil || v.Status != events.StatusRejected || !v.Training {
			return fmt.Errorf("the practice request: %+v (err %v)", v, err)
		}
		if done == len(ids) {
			return nil
		}
		return fmt.Errorf("%d of %d completed", done, len(ids))
	})
}
