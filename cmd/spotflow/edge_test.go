package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/deskapp"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// outage is how long the edge tests cut the desk's link to the hub.
const outage = 60 * time.Second

// edgeWorld is a hub (spotflow run accepting leaf nodes) and one desk
// whose edge reaches it through a cable the test can pull.
type edgeWorld struct {
	t       *testing.T
	hub     *Main
	store   *postgres.Store
	desk    events.Desk
	token   string
	bundle  string
	cable   *cable
	dataDir string
	client  *http.Client
}

func startEdgeWorld(t *testing.T, beforeIssue ...func(*edgeWorld)) *edgeWorld {
	t.Helper()
	hub, dbURL := startMain(t, "*:latency=2ms", func(c *Config) { c.LeafListen = "127.0.0.1:0" })
	w := &edgeWorld{t: t, hub: hub, store: postgres.NewStore(pgtest.Pool(t, dbURL), nil), dataDir: t.TempDir(),
		client: &http.Client{Timeout: 10 * time.Second}}
	ctx := t.Context()
	var err error
	if w.desk, w.token, err = w.store.CreateDesk(ctx, "aldeia", "Espaço Cidadão da Aldeia"); err != nil {
		t.Fatal(err)
	}
	for _, f := range beforeIssue {
		f(w)
	}
	w.bundle = filepath.Join(t.TempDir(), "edge.json")
	if err := issueEdge(ctx, w.store, w.desk.ID, w.bundle, events.By{Actor: "operator:test"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	w.cable = startCable(t, strings.TrimPrefix(hub.LeafURL(), "nats-leaf://"))
	return w
}

// runningEdge is one run of the edge process's code, in this process.
type runningEdge struct {
	base string
	stop func()
}

// startEdge runs spotflow edge run on the world's bundle and data
// directory, reaching the hub through the cable, until stopped; flags are
// added to its command line.
func (w *edgeWorld) startEdge(flags ...string) *runningEdge {
	w.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- edgeCommand(ctx, append([]string{"run", "--bundle", w.bundle, "--hub", "nats-leaf://" + w.cable.addr(),
			"--hub-api", "http://" + w.hub.HTTPAddr(), "--http", addr, "--data-dir", w.dataDir, "--log-level", "warn"}, flags...),
			io.Discard, testLog{w.t})
	}()
	e := &runningEdge{base: "http://" + addr}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				w.t.Errorf("the edge returned %v", err)
			}
		case <-time.After(30 * time.Second):
			w.t.Error("the edge did not stop within 30s")
		}
	}
	w.t.Cleanup(e.stop)
	workertest.WaitWithin(w.t, 30*time.Second, "the edge to be ready", func() error {
		select {
		case err := <-done:
			w.t.Fatalf("the edge stopped at start: %v", err)
		default:
		}
		resp, err := w.client.Get(e.base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	return e
}

// testLog sends what is written to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// submit posts submission n to the edge, and wants it stored at the desk.
func (w *edgeWorld) submit(e *runningEdge, key string, n int) string {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/requests", strings.NewReader(validBody(n)))
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		w.t.Fatalf("submit %s to the edge: %v", key, err)
	}
	defer resp.Body.Close()
	var body struct {
		ID       string `json:"id"`
		StoredAt string `json:"stored_at"`
	}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &body)
	if resp.StatusCode != http.StatusAccepted || body.ID == "" || body.StoredAt != "desk" {
		w.t.Fatalf("submit %s to the edge: %d %s, want 202 stored at the desk", key, resp.StatusCode, data)
	}
	return body.ID
}

// view reads request id at the edge.
func (w *edgeWorld) view(e *runningEdge, id string) events.RequestView {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.base+"/v1/requests/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := w.client.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v events.RequestView
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		w.t.Fatalf("read %s at the edge: %s", id, resp.Status)
	}
	return v
}

// waitForEnds waits until every request of ids has ended in Postgres, and
// checks that each ended exactly once, with every work item applied once
// by its agency, and that the hub stored the desk's requests in the order
// the edge accepted them.
func (w *edgeWorld) waitForEnds(ids []string, within time.Duration) {
	w.t.Helper()
	ctx := w.t.Context()
	workertest.WaitWithin(w.t, within, fmt.Sprintf("the %d requests to end at the hub", len(ids)), func() error {
		var ended int
		err := w.store.Pool().QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1) AND status IN ('completed', 'rejected')`, ids).Scan(&ended)
		if err != nil {
			return err
		}
		if ended != len(ids) {
			return fmt.Errorf("%d of %d ended", ended, len(ids))
		}
		return nil
	})
	var requests, ends, items int
	if err := w.store.Pool().QueryRow(ctx, `
		SELECT count(DISTINCT r.id),
		       count(*) FILTER (WHERE t.agency = '' AND t.status IN ('completed', 'rejected', 'failed')),
		       (SELECT count(*) FROM work_items WHERE request_id = ANY($1))
		FROM requests r JOIN timeline t ON t.request_id = r.id WHERE r.desk_id = $2`, ids, w.desk.ID).Scan(&requests, &ends, &items); err != nil {
		w.t.Fatal(err)
	}
	if requests != len(ids) || ends != len(ids) {
		w.t.Errorf("the desk has %d requests with %d ends at the hub, want %d each: nothing lost, nothing twice", requests, ends, len(ids))
	}
	applied, dups := 0, 0
	for _, a := range w.hub.Agencies() {
		applied += a.Applied()
		dups += a.Duplicates()
	}
	if applied != items {
		w.t.Errorf("the agencies applied %d work items, want the requests' %d, each once (%d repeated deliveries recognised)", applied, items, dups)
	}
	// The hub's events stream holds the desk's requests in the order the
	// edge accepted them.
	cred, err := w.hub.Config.credential(natsbus.Admin)
	if err != nil {
		w.t.Fatal(err)
	}
	nc, js, err := natsbus.Connect(w.hub.NATSURL(), w.t.Name(), cred, slog.New(slog.DiscardHandler))
	if err != nil {
		w.t.Fatal(err)
	}
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, events.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.RequestSubject(w.desk.Municipality, w.desk.ID)}})
	if err != nil {
		w.t.Fatal(err)
	}
	var stored []string
	for len(stored) < len(ids) {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			w.t.Fatalf("read the hub's events stream after %d requests: %v", len(stored), err)
		}
		var r events.Request
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			w.t.Fatal(err)
		}
		if !slices.Contains(stored, r.ID) {
			stored = append(stored, r.ID)
		}
	}
	if !slices.Equal(stored, ids) {
		w.t.Errorf("the hub stored the desk's requests in another order than the edge accepted them")
	}
}

// TestEdge_ADeskKeepsSubmittingWhileItsLinkIsDownAndEverythingArrivesOnceInOrder
// cuts a desk's link to the hub for a minute while the desk submits 500
// requests to its edge: each is answered 202, stored at the desk, and
// readable there as held; a retried submission is the same request. Once
// the link is back, all 500 reach a terminal state at the hub exactly
// once, in the order they were accepted, and the edge reads them from the
// hub.
func TestEdge_ADeskKeepsSubmittingWhileItsLinkIsDownAndEverythingArrivesOnceInOrder(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("cuts a link for a minute; skipped with -short")
	}
	t.Parallel()
	w := startEdgeWorld(t)
	e := w.startEdge("--desk-app=false")
	// Online first: a request goes straight through.
	first := w.submit(e, "online-0", 0)
	w.waitForEnds([]string{first}, 30*time.Second)

	w.cable.pull(true)
	cut := time.Now()
	ids := []string{first}
	for n := 1; n <= 500; n++ {
		ids = append(ids, w.submit(e, fmt.Sprintf("offline-%d", n), n))
		// Spread over most of the outage, as a busy desk's day is.
		time.Sleep(time.Until(cut.Add(outage * 3 / 4 * time.Duration(n) / 500)))
	}
	if again := w.submit(e, "offline-7", 7); again != ids[7] {
		t.Errorf("a retried submission got %s, want the same request %s", again, ids[7])
	}
	if v := w.view(e, ids[250]); !v.HeldAtDesk || v.Status != events.StatusSubmitted {
		t.Errorf("a request during the outage reads %+v, want submitted and held at the desk", v)
	}
	var atHub int
	if err := w.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM requests WHERE desk_id = $1`, w.desk.ID).Scan(&atHub); err != nil || atHub != 1 {
		t.Errorf("the hub holds %d of the desk's requests during the outage (err %v), want only the one made online", atHub, err)
	}
	time.Sleep(time.Until(cut.Add(outage)))
	w.cable.pull(false)
	t.Logf("link cut for %v while the desk submitted 500 requests", time.Since(cut).Round(time.Second))

	w.waitForEnds(ids, 2*time.Minute)
	if v := w.view(e, ids[250]); v.HeldAtDesk || !v.Status.Terminal() {
		t.Errorf("a forwarded request reads %+v at the edge, want the hub's terminal status", v)
	}
}

// TestEdge_RestartedDuringAnOutageLosesNothing stops the edge process in
// the middle of an outage and starts it again on the same store: what it
// had accepted before and after the restart reaches the hub once, in order.
func TestEdge_RestartedDuringAnOutageLosesNothing(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("cuts a link for a minute; skipped with -short")
	}
	t.Parallel()
	w := startEdgeWorld(t)
	e := w.startEdge("--desk-app=false")
	w.cable.pull(true)
	cut := time.Now()
	var ids []string
	for n := range 100 {
		ids = append(ids, w.submit(e, fmt.Sprintf("before-%d", n), n))
	}
	e.stop()
	e = w.startEdge("--desk-app=false")
	for n := 100; n < 200; n++ {
		ids = append(ids, w.submit(e, fmt.Sprintf("after-%d", n), n))
	}
	if again := w.submit(e, "before-3", 3); again != ids[3] {
		t.Errorf("a submission retried after the restart got %s, want %s", again, ids[3])
	}
	time.Sleep(time.Until(cut.Add(outage)))
	w.cable.pull(false)
	w.waitForEnds(ids, 2*time.Minute)
}

// TestEdge_AMediatorServesACitizenAtTheDeskWhileTheLinkIsDown signs a
// mediator in to the edge's desk application with the password they set
// at the hub, while the desk's link is cut: they serve a citizen through a
// visit to its confirmation, and find the request on the desk's home page.
// Once the link is back, the request reaches the hub and ends there.
func TestEdge_AMediatorServesACitizenAtTheDeskWhileTheLinkIsDown(t *testing.T) {
	t.Parallel()
	const password = "cavalo bateria agrafo certo"
	w := startEdgeWorld(t, func(w *edgeWorld) {
		ctx := t.Context()
		setup, err := w.store.CreateMediator(ctx, events.Mediator{Username: "rui.aldeia", DeskID: w.desk.ID, Name: "Rui Matos", Language: "pt"},
			events.By{Actor: "operator:test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.store.SetMediatorPassword(ctx, setup.Code, deskapp.NewHasher(deskapp.Argon2{Memory: 1024, Time: 1, Threads: 1}).Hash(password)); err != nil {
			t.Fatal(err)
		}
	})
	// The edge's own Postgres runs as the postgres user when the tests run
	// as root: it must reach the data directory.
	for _, dir := range []string{w.dataDir, filepath.Dir(w.dataDir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := w.startEdge()
	w.cable.pull(true)

	m := newFormClient(t, e.base)
	home := m.post("/desk/sign-in", m.get("/desk/sign-in"), url.Values{"username": {"rui.aldeia"}, "password": {password}, "next": {"/desk/"}})
	consent := m.post("/desk/visit", home, url.Values{"national_id": {"12345678"}, "name": {"Maria Silva"}, "language": {"pt"}})
	version := regexp.MustCompile(`name="version" value="([^"]+)"`).FindStringSubmatch(consent.body)
	if version == nil {
		t.Fatalf("the consent page offline: %.1500s", consent.body)
	}
	services := m.post("/desk/visit/consent", consent, url.Values{"consent": {"yes"}, "version": {version[1]}, "language": {"pt"}})
	form := m.post("/desk/visit/services", services, url.Values{"service": {"criminal-record-certificate"}})
	check := m.post("/desk/visit/services/1", form, url.Values{"attr.purpose": {"employment"}, "attr.copies": {"1"}, "document": {"citizen-card"}})
	done := m.post("/desk/visit/services/1/submit", check, url.Values{})
	ref := regexp.MustCompile(`class="ref">([0-9a-f-]{36})<`).FindStringSubmatch(done.body)
	if ref == nil {
		t.Fatalf("the confirmation offline shows no reference: %d %.2000s", done.status, done.body)
	}
	if home := m.get("/desk/"); !strings.Contains(home.body, "/desk/requests/"+ref[1]) {
		t.Errorf("the desk's home page offline does not list the request %s", ref[1])
	}
	var atHub int
	if err := w.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM requests WHERE desk_id = $1`, w.desk.ID).Scan(&atHub); err != nil || atHub != 0 {
		t.Errorf("the hub holds %d of the desk's requests while the link is down (err %v)", atHub, err)
	}
	w.cable.pull(false)
	w.waitForEnds([]string{ref[1]}, time.Minute)
}

// formClient fills the desk application's forms as a browser without
// script does: cookies kept, every form's CSRF token sent back, from the
// same origin.
type formClient struct {
	t      *testing.T
	base   string
	client *http.Client
}

type page struct {
	status int
	body   string
}

func newFormClient(t *testing.T, base string) *formClient {
	jar, _ := cookiejar.New(nil)
	return &formClient{t: t, base: base, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func (c *formClient) do(req *http.Request) page {
	c.t.Helper()
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		c.t.Fatalf("%s %s: %d %.1500s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return page{resp.StatusCode, string(b)}
}

func (c *formClient) get(path string) page {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

// post sends form to path with the CSRF token of the page it came from.
func (c *formClient) post(path string, from page, form url.Values) page {
	c.t.Helper()
	if m := regexp.MustCompile(`name="csrf" value="([^"]*)"`).FindStringSubmatch(from.body); m != nil {
		form.Set("csrf", html.UnescapeString(m[1]))
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	return c.do(req)
}
