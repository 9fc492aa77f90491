package natsbus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// bus is a server whose users are spotflow's admin, router and projector,
// and the agencies tax and sns, each with its credential.
type bus struct {
	ns    *natsbus.Server
	creds map[string]natsbus.Credential
}

func startBus(t *testing.T) *bus {
	t.Helper()
	b := &bus{creds: map[string]natsbus.Credential{}}
	var users []natsbus.User
	add := func(g natsbus.Grant) {
		seed, err := natsbus.NewSeed()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := seed.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, natsbus.User{PublicKey: pub, Grant: g})
		b.creds[g.Identity] = natsbus.Credential{Identity: g.Identity, Seed: seed}
	}
	for _, role := range []string{natsbus.Admin, natsbus.Router, natsbus.Projector} {
		g, err := natsbus.RoleGrant(role, nil)
		if err != nil {
			t.Fatal(err)
		}
		add(g)
	}
	add(natsbus.AgencyGrant("tax"))
	add(natsbus.AgencyGrant("sns"))
	ns, err := natsbus.RunServer(natsbus.ServerConfig{StoreDir: t.TempDir(), Port: -1, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	b.ns = ns
	if err := natsbus.Provision(t.Context(), b.js(t, natsbus.Admin), natsbus.Topology{Agencies: []string{"tax", "sns"}}); err != nil {
		t.Fatal(err)
	}
	return b
}

// js connects as identity.
func (b *bus) js(t *testing.T, identity string) jetstream.JetStream {
	t.Helper()
	nc, js, err := natsbus.Connect(b.ns.ClientURL(), t.Name(), b.creds[identity], quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

// watched connects as identity and returns the connection with the
// server's asynchronous errors (permission violations among them).
func (b *bus) watched(t *testing.T, identity string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	opts, err := b.creds[identity].Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.ns.ClientURL(), append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		errs <- err
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func TestRunServer_RefusesAnonymousConnections(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	if nc, err := nats.Connect(b.ns.ClientURL(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("an anonymous connection was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous connection: %v, want an authorization violation", err)
	}
	forged := natsbus.Credential{Identity: natsbus.AgencyIdentity("tax")}
	var err error
	if forged.Seed, err = natsbus.NewSeed(); err != nil {
		t.Fatal(err)
	}
	opts, err := forged.Options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(b.ns.ClientURL(), append(opts, nats.Timeout(5*time.Second))...); err == nil {
		nc.Close()
		t.Fatal("a connection with an unknown nkey was accepted")
	}
}

func TestAgencyGrant_AllowsItsOwnQueueAndStatusAndDeniesEverythingElse(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	router := natsbus.NewPublisher(b.js(t, natsbus.Router))
	for _, agency := range []string{"tax", "sns"} {
		if err := router.Publish(t.Context(), natsbus.Outgoing{Subject: events.WorkSubject(agency), ID: "w-" + agency,
			Value: map[string]string{"id": "r1." + agency, "citizen": "national id 12345678"}}); err != nil {
			t.Fatal(err)
		}
	}

	// What tax may do: pull its own work item, say it is in progress,
	// acknowledge it, and report on its own subject.
	tax := b.js(t, natsbus.AgencyIdentity("tax"))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cons, err := tax.Consumer(ctx, events.WorkStream, events.AgencyConsumer("tax"))
	if err != nil {
		t.Fatalf("tax reads its own consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("tax pulls: %v", err)
	}
	var got int
	for msg := range batch.Messages() {
		got++
		if err := msg.InProgress(); err != nil {
			t.Errorf("tax marks its work item in progress: %v", err)
		}
		if err := msg.DoubleAck(ctx); err != nil {
			t.Errorf("tax acknowledges its work item: %v", err)
		}
	}
	if got != 1 {
		t.Fatalf("tax pulled %d work items, want its one", got)
	}
	if _, err := tax.Publish(ctx, events.StatusSubject("tax"), []byte(`{"schema":"spotflow.status.v1"}`)); err != nil {
		t.Errorf("tax reports on its own subject: %v", err)
	}

	// What it may not: each attempt is refused by the server.
	nc, errs := b.watched(t, natsbus.AgencyIdentity("tax"))
	attempts := []struct {
		what, subject string
		try           func() error
	}{
		{"publish", "$JS.API.CONSUMER.MSG.NEXT.SPOTFLOW_WORK.agency-sns", func() error {
			return nc.Publish("$JS.API.CONSUMER.MSG.NEXT.SPOTFLOW_WORK.agency-sns", []byte(`{"batch":1}`))
		}},
		{"publish", "$JS.API.CONSUMER.INFO.SPOTFLOW_WORK.agency-sns", func() error {
			return nc.Publish("$JS.API.CONSUMER.INFO.SPOTFLOW_WORK.agency-sns", nil)
		}},
		{"subscription", "spotflow.requests.>", func() error { _, err := nc.SubscribeSync("spotflow.requests.>"); return err }},
		{"subscription", "spotflow.work.sns", func() error { _, err := nc.SubscribeSync("spotflow.work.sns"); return err }},
		{"subscription", "_INBOX.>", func() error { _, err := nc.SubscribeSync("_INBOX.>"); return err }},
		{"subscription", "_INBOX_agency-sns.>", func() error { _, err := nc.SubscribeSync("_INBOX_agency-sns.>"); return err }},
		{"publish", "spotflow.status.sns", func() error { return nc.Publish("spotflow.status.sns", []byte(`{}`)) }},
		{"publish", "spotflow.status.dispatcher", func() error { return nc.Publish("spotflow.status.dispatcher", []byte(`{}`)) }},
		{"publish", "spotflow.requests.lisboa.desk-1", func() error { return nc.Publish("spotflow.requests.lisboa.desk-1", []byte(`{}`)) }},
		{"publish", "$JS.API.STREAM.DELETE.SPOTFLOW_WORK", func() error { return nc.Publish("$JS.API.STREAM.DELETE.SPOTFLOW_WORK", nil) }},
		{"publish", "$JS.API.CONSUMER.DELETE.SPOTFLOW_WORK.agency-tax", func() error {
			return nc.Publish("$JS.API.CONSUMER.DELETE.SPOTFLOW_WORK.agency-tax", nil)
		}},
		{"publish", "$JS.API.STREAM.MSG.GET.SPOTFLOW_WORK", func() error {
			return nc.Publish("$JS.API.STREAM.MSG.GET.SPOTFLOW_WORK", []byte(`{"seq":2}`))
		}},
	}
	for _, a := range attempts {
		if err := a.try(); err != nil {
			t.Fatalf("%s %s: %v", a.what, a.subject, err)
		}
		natstest.Refused(t, errs, a.what, a.subject)
	}

	// Nothing changed: sns's work item still waits for sns, whose status
	// subject holds nothing, and the streams are all there.
	admin := b.js(t, natsbus.Admin)
	snsCons, err := admin.Consumer(ctx, events.WorkStream, events.AgencyConsumer("sns"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := snsCons.Info(ctx)
	if err != nil || info.NumPending != 1 || info.Delivered.Consumer != 0 {
		t.Errorf("sns's consumer: %+v (err %v), want its work item undelivered", info, err)
	}
	events, err := admin.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.GetLastMsgForSubject(ctx, "spotflow.status.sns"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the events stream holds a status of sns (err %v)", err)
	}
}

func TestServer_SetUsersRevokesAnIdentityWithoutARestart(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	nc, _ := b.watched(t, natsbus.AgencyIdentity("sns"))
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	nc.SetReconnectHandler(nil)

	// Every user but sns stays.
	var users []natsbus.User
	for name, cred := range b.creds {
		if name == natsbus.AgencyIdentity("sns") {
			continue
		}
		pub, err := cred.Seed.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		g := natsbus.AgencyGrant(strings.TrimPrefix(name, "agency-"))
		if !strings.HasPrefix(name, "agency-") {
			if g, err = natsbus.RoleGrant(name, nil); err != nil {
				t.Fatal(err)
			}
		}
		users = append(users, natsbus.User{PublicKey: pub, Grant: g})
	}
	if err := b.ns.SetUsers(users); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		if nc.IsConnected() {
			t.Fatal("sns is still connected 10s after its credential was revoked")
		}
	}
	opts, err := b.creds[natsbus.AgencyIdentity("sns")].Options()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := nats.Connect(b.ns.ClientURL(), append(opts, nats.Timeout(5*time.Second))...); err == nil {
		again.Close()
		t.Error("sns connected again after its credential was revoked")
	}
	// tax, still listed, works as before.
	if _, err := b.js(t, natsbus.AgencyIdentity("tax")).Consumer(t.Context(), events.WorkStream, events.AgencyConsumer("tax")); err != nil {
		t.Errorf("tax after sns's revocation: %v", err)
	}
}

func TestAuthorizationConfig_LetsAServerOfOnesOwnInTheUsersAndNoOneElse(t *testing.T) {
	t.Parallel()
	seed, err := natsbus.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := seed.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	tax := natsbus.Credential{Identity: natsbus.AgencyIdentity("tax"), Seed: seed}
	conf := filepath.Join(t.TempDir(), "server.conf")
	body := "listen: 127.0.0.1:-1\n" + natsbus.AuthorizationConfig([]natsbus.User{{PublicKey: pub, Grant: natsbus.AgencyGrant("tax")}})
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server does not read the block:\n%s\n%v", body, err)
	}
	opts.NoSigs, opts.Port = true, -1
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if nc, err := nats.Connect(ns.ClientURL(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("the server of one's own let an anonymous connection in")
	}
	copts, err := tax.Options()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	nc, err := nats.Connect(ns.ClientURL(), append(copts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatalf("tax connects with its credential: %v", err)
	}
	defer nc.Close()
	// What its grant allows, JetStream's API among it, passes as written.
	for _, allowed := range []string{"spotflow.status.tax", "$JS.API.CONSUMER.INFO.SPOTFLOW_WORK.agency-tax"} {
		if err := nc.Publish(allowed, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("an allowed publish was refused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := nc.Publish("spotflow.status.sns", nil); err != nil {
		t.Fatal(err)
	}
	natstest.Refused(t, errs, "publish", "spotflow.status.sns")
}
