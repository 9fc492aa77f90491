package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// newCredential makes an identity's seed and the user a server lists for it.
func newCredential(t *testing.T, g natsbus.Grant, leaf bool) (natsbus.Credential, natsbus.User) {
	t.Helper()
	seed, err := natsbus.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := seed.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return natsbus.Credential{Identity: g.Identity, Seed: seed}, natsbus.User{PublicKey: pub, Grant: g, Leaf: leaf}
}

func runServer(t *testing.T, cfg natsbus.ServerConfig) *natsbus.Server {
	t.Helper()
	cfg.StoreDir, cfg.Port = t.TempDir(), -1
	ns, err := natsbus.RunServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// TestLeaf_AnEdgeStoresItsDesksRequestsAtTheHubAndNothingElse runs a hub
// and a desk's edge, a leaf node with JetStream in a domain of its own,
// connected with the edge's credential: a request the edge publishes on its
// desk's subject is stored in the hub's events stream, acknowledged back
// across the link; another desk's subject, a status subject and the hub's
// JetStream API do not cross; the edge's own JetStream stays its own; and
// the hub refuses the edge's credential to a plain client.
func TestLeaf_AnEdgeStoresItsDesksRequestsAtTheHubAndNothingElse(t *testing.T) {
	t.Parallel()
	admin, adminUser := newCredential(t, mustGrant(t, natsbus.Admin), false)
	edgeCred, edgeUser := newCredential(t, natsbus.EdgeGrant("lisboa", "desk-1"), true)
	hub := runServer(t, natsbus.ServerConfig{Users: []natsbus.User{adminUser, edgeUser}, LeafPort: -1, Name: "hub"})
	_, hubJS := connect(t, hub.ClientURL(), admin)
	if err := natsbus.Provision(t.Context(), hubJS, natsbus.Topology{}); err != nil {
		t.Fatal(err)
	}

	// The edge's processes connect to it as the edge's identity, with every
	// right on the edge's own server.
	local, localUser := newCredential(t, natsbus.Grant{Identity: natsbus.EdgeIdentity("desk-1"), Publish: []string{">"}}, false)
	leafURL := fmt.Sprintf("nats-leaf://127.0.0.1:%d", hub.LeafPort())
	edge := runServer(t, natsbus.ServerConfig{Users: []natsbus.User{localUser}, Name: "edge-desk-1", Domain: "edge-desk-1",
		Hub: &natsbus.LeafRemote{URLs: []string{leafURL}, Seed: edgeCred.Seed}})
	waitFor(t, "the edge's link to the hub", func() bool { return hub.NumLeafNodes() == 1 })
	nc, js := connect(t, edge.ClientURL(), local)

	ctx := t.Context()
	ack, err := js.Publish(ctx, events.RequestSubject("lisboa", "desk-1"), []byte(`{"schema":"spotflow.request.v1"}`), jetstream.WithMsgID("req-1"))
	if err != nil || ack.Stream != events.EventsStream {
		t.Fatalf("publish a request from the edge: %+v, %v; want it stored in %s", ack, err, events.EventsStream)
	}
	again, err := js.Publish(ctx, events.RequestSubject("lisboa", "desk-1"), []byte(`{"schema":"spotflow.request.v1"}`), jetstream.WithMsgID("req-1"))
	if err != nil || !again.Duplicate {
		t.Errorf("the same request again: %+v, %v; want it recognised as a duplicate", again, err)
	}
	for _, subject := range []string{events.RequestSubject("lisboa", "desk-2"), events.StatusSubject("tax")} {
		short, cancel := contextWithin(t, 2*time.Second)
		_, err := js.Publish(short, subject, []byte(`{}`))
		cancel()
		if err == nil {
			t.Errorf("the edge stored a message on %s at the hub", subject)
		}
	}
	stream, err := hubJS.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("the hub's events stream holds %d messages (err %v), want the one request", info.State.Msgs, err)
	}

	// The edge's JetStream is its own: a stream made there is not the hub's.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUTBOX", Subjects: []string{"spotflow.outbox.desk-1"}}); err != nil {
		t.Fatalf("a stream at the edge: %v", err)
	}
	if _, err := hubJS.Stream(ctx, "OUTBOX"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the edge's stream is visible at the hub: %v", err)
	}
	// Nor may the hub's API be reached from the edge.
	hubAPI, err := jetstream.NewWithDomain(nc, "")
	if err == nil {
		short, cancel := contextWithin(t, 2*time.Second)
		_, err = hubAPI.Stream(short, events.EventsStream)
		cancel()
	}
	if err == nil {
		t.Error("the edge read the hub's events stream through JetStream's API")
	}

	// The edge's credential lets nobody in as a plain client.
	if c, err := nats.Connect(hub.ClientURL(), nats.Nkey(edgeUser.PublicKey, signer(t, edgeCred.Seed)), nats.MaxReconnects(0)); err == nil {
		c.Close()
		t.Error("the edge's credential connected to the hub as a client")
	}
}

func mustGrant(t *testing.T, role string) natsbus.Grant {
	t.Helper()
	g, err := natsbus.RoleGrant(role, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func connect(t *testing.T, url string, cred natsbus.Credential) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := natsbus.Connect(url, t.Name(), cred, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func contextWithin(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// signer signs a server's nonce with seed, as a client presenting it does.
func signer(t *testing.T, seed natsbus.Seed) nats.SignatureHandler {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return kp.Sign
}
