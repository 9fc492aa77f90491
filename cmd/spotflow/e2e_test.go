package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// startMain runs the all-in-one on ":0" ports, a temporary data directory
// and a fresh schema, and returns it once ready.
func startMain(t *testing.T, agencies string, settings ...func(*Config)) (*Main, string) {
	t.Helper()
	dbURL := pgtest.Schema(t)
	m := &Main{
		Config: Config{
			DataDir:     t.TempDir(),
			HTTPAddr:    "127.0.0.1:0",
			NATSListen:  "127.0.0.1:0",
			DatabaseURL: dbURL,
			Agencies:    agencies,
			CitizenKey:  strings.Repeat("ab", 32),
		},
		Roles: allRoles,
		Embed: true,
	}
	for _, set := range settings {
		set(&m.Config)
	}
	runMain(t, m)
	return m, dbURL
}

// connectAs connects to m's NATS server as one of spotflow's own
// identities, with the seed m's process uses.
func connectAs(t *testing.T, m *Main, identity string) jetstream.JetStream {
	t.Helper()
	cred, err := m.Config.credential(identity)
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := natsbus.Connect(m.NATSURL(), t.Name(), cred, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

// runMain runs m until the test ends, when it must return nil, and waits
// until it is ready.
func runMain(t *testing.T, m *Main) {
	t.Helper()
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	ended := workertest.Run(t, fmt.Sprintf("%v: Run", m.Roles), m.Run)
	select {
	case <-m.Ready():
	case <-ended:
		t.Fatalf("%v: Run ended before it was ready", m.Roles)
	case <-time.After(60 * time.Second):
		t.Fatalf("%v: not ready after 60s", m.Roles)
	}
}

// submission is one POST /v1/requests the test makes, with what it expects.
type submission struct {
	desk       int
	key        string
	body       string
	wantStatus int
	wantCode   string
	wantField  string
	// replayOf is the index of the submission whose key this one reuses.
	replayOf int
}

type answer struct {
	status int
	id     string
	code   string
	field  string
}

func post(t *testing.T, client *http.Client, base, token string, s submission) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/requests", strings.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", s.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", s.key, err)
		return answer{}
	}
	defer resp.Body.Close()
	var out struct {
		ID    string `json:"id"`
		Error struct {
			Code  string `json:"code"`
			Field string `json:"field"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Errorf("POST %s: decode answer: %v", s.key, err)
	}
	return answer{status: resp.StatusCode, id: out.ID, code: out.Error.Code, field: out.Error.Field}
}

// validBody returns a valid body for the n-th request, cycling through
// services, change of address (four agencies) among them.
func validBody(n int) string {
	nid := fmt.Sprintf("%08d", 10000000+n)
	switch n % 5 {
	case 0:
		return fmt.Sprintf(`{"service_code":"change-of-address","citizen":{"national_id":%q,"name":"Maria Silva"},"attributes":{"street":"Rua Augusta %d","postal_code":"1100-053","locality":"Lisboa"}}`, nid, n)
	case 1:
		return fmt.Sprintf(`{"service_code":"driving-licence-renewal","citizen":{"national_id":%q,"name":"João Sousa"},"attributes":{"licence_number":"L-%d","categories":["B"]}}`, nid, n)
	case 2:
		return fmt.Sprintf(`{"service_code":"health-appointment","citizen":{"national_id":%q,"name":"Ana Costa"},"attributes":{"health_number":"%d","kind":"remote"},"visit_id":"visit-%d"}`, nid, n, n/10)
	case 3:
		return fmt.Sprintf(`{"service_code":"criminal-record-certificate","citizen":{"national_id":%q,"name":"Rui Lopes"},"attributes":{"purpose":"employment","copies":%d}}`, nid, 1+n%3)
	default:
		return fmt.Sprintf(`{"service_code":"tax-id-certificate","citizen":{"national_id":%q,"name":"Inês Ferreira"},"attributes":{"tax_number":"2%08d","year":2025}}`, nid, n)
	}
}

// invalidBodies are bodies of different kinds of wrong, with the answer
// each must get.
var invalidBodies = []struct {
	body        string
	status      int
	code, field string
}{
	{`{"service_code":"change-of-address",`, 400, "malformed_json", "body"},
	{`{"service_code":"birth-certificate","citizen":{"national_id":"12345678","name":"A"},"attributes":{"format":"paper"},"priority":"high"}`, 400, "unknown_field", "priority"},
	{`{"service_code":"no-such-service","citizen":{"national_id":"12345678","name":"A"},"attributes":{}}`, 422, "unknown_service", "service_code"},
	{`{"service_code":"change-of-address","citizen":{"national_id":"12345678","name":"A"},"attributes":{"street":"Rua 1","locality":"Porto"}}`, 422, "required", "attributes.postal_code"},
	{`{"service_code":"tax-id-certificate","citizen":{"national_id":"12345678","name":"A"},"attributes":{"tax_number":"1","year":"2025"}}`, 422, "invalid_type", "attributes.year"},
	{`{"service_code":"birth-certificate","citizen":{"name":"A"},"attributes":{"format":"paper"}}`, 422, "required", "citizen.national_id"},
	{`{"service_code":"birth-certificate","citizen":{"national_id":"12345678","name":"A"},"attributes":{"format":"fax"}}`, 422, "invalid_value", "attributes.format"},
	{`{"service_code":42,"citizen":{"national_id":"12345678","name":"A"},"attributes":{}}`, 422, "invalid_type", "service_code"},
	{`[1,2,3]`, 400, "malformed_json", "body"},
	{`{"service_code":"birth-certificate","citizen":{"national_id":"12345678","name":"A","age":40},"attributes":{"format":"paper"}}`, 400, "unknown_field", "citizen.age"},
}

// TestPipeline_CarriesEveryDistinctRequestToOneTerminalState drives the real
// HTTP server and every role with 1,000 submissions from 10 desks: 850
// distinct valid requests, 50 invalid bodies, then 100 replays of earlier
// keys (50 with the same body, 50 with a changed one). Exactly the distinct
// valid requests must reach a terminal status, each with a complete timeline
// and no event twice, and nothing extra may be published.
func TestPipeline_CarriesEveryDistinctRequestToOneTerminalState(t *testing.T) {
	const desks, distinct, invalid, replays = 10, 850, 50, 100
	m, dbURL := startMain(t, "*:latency=1ms,reject=0.1,transient=0.1")
	base := "http://" + m.HTTPAddr()
	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()

	tokens := make([]string, desks)
	deskIDs := make([]string, desks)
	for i := range tokens {
		d, tok, err := store.CreateDesk(ctx, fmt.Sprintf("municipality-%d", i%3), fmt.Sprintf("Desk %d", i))
		if err != nil {
			t.Fatal(err)
		}
		tokens[i], deskIDs[i] = tok, d.ID
	}

	var first []submission
	for n := range distinct {
		first = append(first, submission{desk: n % desks, key: fmt.Sprintf("key-%d", n), body: validBody(n), wantStatus: 202})
	}
	for n := range invalid {
		bad := invalidBodies[n%len(invalidBodies)]
		first = append(first, submission{desk: n % desks, key: fmt.Sprintf("bad-%d", n), body: bad.body,
			wantStatus: bad.status, wantCode: bad.code, wantField: bad.field})
	}
	var second []submission
	for r := range replays {
		n := r * 7 % distinct
		s := submission{desk: n % desks, key: fmt.Sprintf("key-%d", n), body: validBody(n), wantStatus: 202, replayOf: n}
		if r%2 == 1 {
			s.body = validBody(n + distinct) // same key, another body
			s.wantStatus, s.wantCode, s.wantField = 409, "idempotency_conflict", "Idempotency-Key"
		}
		second = append(second, s)
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	submitAll := func(subs []submission) []answer {
		answers := make([]answer, len(subs))
		var wg sync.WaitGroup
		next := make(chan int)
		for range 16 {
			wg.Go(func() {
				for i := range next {
					answers[i] = post(t, client, base, tokens[subs[i].desk], subs[i])
				}
			})
		}
		for i := range subs {
			next <- i
		}
		close(next)
		wg.Wait()
		return answers
	}
	firstAnswers := submitAll(first)
	secondAnswers := submitAll(second)

	ids := make(map[string]int) // request id → desk
	for i, a := range firstAnswers {
		s := first[i]
		if a.status != s.wantStatus || a.code != s.wantCode || a.field != s.wantField {
			t.Errorf("%s: got %d %q field %q; want %d %q field %q", s.key, a.status, a.code, a.field, s.wantStatus, s.wantCode, s.wantField)
			continue
		}
		if a.status == 202 {
			if _, dup := ids[a.id]; dup || a.id == "" {
				t.Errorf("%s: id %q is empty or not unique", s.key, a.id)
			}
			ids[a.id] = s.desk
		}
	}
	for i, a := range secondAnswers {
		s := second[i]
		if a.status != s.wantStatus || a.code != s.wantCode || a.field != s.wantField {
			t.Errorf("replay %s: got %d %q field %q; want %d %q field %q", s.key, a.status, a.code, a.field, s.wantStatus, s.wantCode, s.wantField)
		}
		if a.status == 202 && a.id != firstAnswers[s.replayOf].id {
			t.Errorf("replay %s: got request %s; want the original %s", s.key, a.id, firstAnswers[s.replayOf].id)
		}
	}
	if len(ids) != distinct {
		t.Fatalf("%d distinct requests accepted; want %d", len(ids), distinct)
	}

	// Every accepted request reaches a terminal status in Postgres.
	workertest.WaitWithin(t, 90*time.Second, "every request to reach a terminal status", func() error {
		var terminal, total int
		err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status IN ('completed','rejected')), count(*) FROM requests`).Scan(&terminal, &total)
		if err != nil {
			return err
		}
		if terminal == distinct {
			return nil
		}
		return fmt.Errorf("%d of %d terminal, %d projected", terminal, distinct, total)
	})

	var total int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&total); err != nil || total != distinct {
		t.Errorf("requests table holds %d rows (err %v); want exactly %d", total, err, distinct)
	}

	// Each request: its own desk reads it; its timeline is complete, in
	// order, and has no event twice; its status agrees with its work items.
	rejected := 0
	for id, desk := range ids {
		v, err := store.RequestForDesk(ctx, deskIDs[desk], id)
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		checkTimeline(t, v)
		if v.Status == events.StatusRejected {
			rejected++
		}
		other := deskIDs[(desk+1)%desks]
		if _, err := store.RequestForDesk(ctx, other, id); err != events.ErrNotFound {
			t.Errorf("desk %s read desk %s's request %s: err %v", other, deskIDs[desk], id, err)
		}
	}
	if rejected == 0 || rejected == distinct {
		t.Errorf("%d of %d requests rejected; with a 10%% rejection rate, want some but not all", rejected, distinct)
	}

	// Nothing extra was published: one message per distinct request.
	stream, err := m.JetStream().Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.RequestSubjects))
	if err != nil {
		t.Fatal(err)
	}
	var published uint64
	for _, n := range info.State.Subjects {
		published += n
	}
	if published != distinct {
		t.Errorf("%d requests published; want %d", published, distinct)
	}

	// Every work item reached its agency once.
	var workItems int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM work_items`).Scan(&workItems); err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, a := range m.Agencies() {
		applied += a.Applied()
	}
	if applied != workItems {
		t.Errorf("agencies applied %d work items; want %d", applied, workItems)
	}
}

// checkTimeline asserts that v's timeline holds submitted and routed once,
// a dispatched and a terminal event per work item, and the request's own
// terminal event, in causal order, with nothing twice.
func checkTimeline(t *testing.T, v *events.RequestView) {
	t.Helper()
	seen := make(map[string]int)
	for _, e := range v.Timeline {
		seen[e.Agency+"/"+string(e.Status)]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s: event %s appears %d times", v.ID, k, n)
		}
	}
	want := []string{"/submitted", "/routed", "/" + string(v.Status)}
	anyRejected := false
	for _, w := range v.WorkItems {
		if !w.Status.Terminal() || w.Status == events.StatusFailed {
			t.Errorf("%s: work item %s is %s; want completed or rejected", v.ID, w.Agency, w.Status)
		}
		anyRejected = anyRejected || w.Status == events.StatusRejected
		want = append(want, w.Agency+"/dispatched", w.Agency+"/"+string(w.Status))
	}
	for _, k := range want {
		if seen[k] != 1 {
			t.Errorf("%s: timeline lacks %s (has %v)", v.ID, k, seen)
		}
	}
	if anyRejected != (v.Status == events.StatusRejected) {
		t.Errorf("%s: status %s disagrees with work items %v", v.ID, v.Status, v.WorkItems)
	}
	if len(v.Timeline) > 0 && v.Timeline[0].Status != events.StatusSubmitted {
		t.Errorf("%s: timeline starts with %s; want submitted", v.ID, v.Timeline[0].Status)
	}
	for i := 1; i < len(v.Timeline); i++ {
		if v.Timeline[i].At.Before(v.Timeline[i-1].At) {
			t.Errorf("%s: timeline out of order at %d", v.ID, i)
		}
	}
}

// TestDeskCreate_PrintsIDAndToken runs `spotflow desk create` as a user
// would and uses the printed token against the store.
func TestDeskCreate_PrintsIDAndToken(t *testing.T) {
	dbURL := pgtest.Schema(t)
	var stdout, stderr bytes.Buffer
	args := []string{"desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão",
		"--database-url", dbURL, "--data-dir", t.TempDir(), "--log-level", "warn"}
	if err := dispatch(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("desk create: %v\n%s", err, stderr.String())
	}
	var out struct {
		DeskID string `json:"desk_id"`
		Token  string `json:"token"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.DeskID == "" || out.Token == "" {
		t.Fatalf("desk create printed %q (err %v); want {desk_id, token}", stdout.String(), err)
	}
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	d, err := store.DeskByToken(t.Context(), out.Token)
	if err != nil || d.ID != out.DeskID || d.Municipality != "lisboa" {
		t.Errorf("token belongs to %+v (err %v); want desk %s of lisboa", d, err, out.DeskID)
	}
}

// TestHelp_EveryCommandHasHelp checks that --help works on every command.
func TestHelp_EveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{c.name, "--help"}
			if c.name == "desk" {
				args = []string{"desk", "create", "--help"}
			}
			if c.name == "postgres" {
				args = []string{"postgres", "start", "--help"}
			}
			err := dispatch(t.Context(), args, &stdout, &stderr)
			if err != nil && !strings.Contains(err.Error(), "help requested") {
				t.Errorf("%v --help: %v", args, err)
			}
			if !strings.Contains(stderr.String(), "Usage: spotflow "+c.name) {
				t.Errorf("%v --help printed %q; want a usage line", args, stderr.String())
			}
		})
	}
}
