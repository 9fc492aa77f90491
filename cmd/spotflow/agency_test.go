package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// justiceOverNATS runs the system with justice consuming its own queue over
// NATS, and returns it with its database and a runner of spotflow's
// commands on it.
func justiceOverNATS(t *testing.T) (*Main, string, func(args ...string) string) {
	t.Helper()
	dbURL := pgtest.Schema(t)
	m := &Main{
		Config: Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DatabaseURL: dbURL,
			Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32), Delivery: `{"justice": {"delivery": "nats"}}`,
		},
		Roles: allRoles,
		Embed: true,
	}
	runMain(t, m)
	return m, dbURL, commandsOn(t, dbURL)
}

// commandsOn returns a runner of spotflow's commands on the database dbURL,
// as the operator ana, that ends the test when a command fails.
func commandsOn(t *testing.T, dbURL string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append(args, "--database-url", dbURL, "--data-dir", t.TempDir(), "--operator", "ana", "--log-level", "warn")
		if err := dispatch(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("spotflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
}

// submitCertificate submits a criminal-record certificate from a new desk
// and returns the desk and the request's ID.
func submitCertificate(t *testing.T, m *Main, store *postgres.Store, key string) (events.Desk, string) {
	t.Helper()
	return submitCertificateTo(t, http.DefaultClient, "http://"+m.HTTPAddr(), store, key)
}

// submitCertificateTo is submitCertificate with client to the desk API at
// base.
func submitCertificateTo(t *testing.T, client *http.Client, base string, store *postgres.Store, key string) (events.Desk, string) {
	t.Helper()
	desk, token, err := store.CreateDesk(t.Context(), "lisboa", "Desk "+key)
	if err != nil {
		t.Fatal(err)
	}
	a := post(t, client, base, token, submission{key: key,
		body: `{"service_code":"criminal-record-certificate","citizen":{"national_id":"31337000","name":"Rui Lopes"},"attributes":{"purpose":"employment"}}`})
	if a.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", a.status, a.code)
	}
	return desk, a.id
}

// timelineOf reads the request's status and timeline as its desk does.
func timelineOf(t *testing.T, store *postgres.Store, desk events.Desk, id string) (events.Status, []string) {
	t.Helper()
	v, err := store.RequestForDesk(t.Context(), desk.ID, id)
	if err != nil {
		return "", nil
	}
	var out []string
	for _, e := range v.Timeline {
		out = append(out, strings.TrimPrefix(e.Agency+" "+string(e.Status), " "))
	}
	return v.Status, out
}

// TestAgency_ConsumesItsOwnQueueWithItsCredentialAndNothingElse runs the
// system with justice consuming its own queue over NATS, issues justice a
// credential with `spotflow agency issue`, and plays justice with a stock
// NATS client: it takes its work item and reports on it, is refused
// everything else, cannot rewrite the outcome, and is cut off when its
// credential is revoked.
func TestAgency_ConsumesItsOwnQueueWithItsCredentialAndNothingElse(t *testing.T) {
	t.Parallel()
	m, dbURL, cli := justiceOverNATS(t)
	seedFile := filepath.Join(t.TempDir(), "justice.nk")
	var issued map[string]string
	if err := json.Unmarshal([]byte(cli("agency", "issue", "--agency", "justice", "--out", seedFile)), &issued); err != nil {
		t.Fatal(err)
	}
	if issued["consumer"] != "agency-justice" || issued["publish"] != "spotflow.status.justice" || issued["inbox_prefix"] != "_INBOX_agency-justice" {
		t.Errorf("agency issue printed %v", issued)
	}

	// justice connects with nothing but its seed file and a stock client.
	seed, err := natsbus.ReadSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := natsbus.Credential{Identity: "agency-justice", Seed: seed}.Options()
	if err != nil {
		t.Fatal(err)
	}
	asyncErrs := make(chan error, 64)
	closed := make(chan struct{})
	opts = append(opts, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err }))
	var nc *nats.Conn
	workertest.WaitFor(t, "the server to let justice in", func() error {
		nc, err = nats.Connect(m.NATSURL(), opts...)
		return err
	})
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// A desk submits a criminal-record certificate; justice takes it.
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	desk, id := submitCertificate(t, m, store, "cert-1")
	cons, err := js.Consumer(t.Context(), events.WorkStream, events.AgencyConsumer("justice"))
	if err != nil {
		t.Fatalf("justice reads its consumer: %v", err)
	}
	var item events.WorkItem
	workertest.WaitFor(t, "justice to pull its work item", func() error {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			if err := json.Unmarshal(msg.Data(), &item); err != nil {
				return err
			}
			if err := msg.InProgress(); err != nil {
				return err
			}
			report := func(status events.Status, note string) {
				ev := events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(item.RequestID, "justice", status),
					RequestID: item.RequestID, Agency: "justice", Status: status, At: time.Now().UTC(), Note: note, Round: item.Round}
				data, _ := json.Marshal(ev)
				if _, err := js.Publish(t.Context(), events.StatusSubject("justice"), data, jetstream.WithMsgID(ev.ID)); err != nil {
					t.Fatalf("justice reports %s: %v", status, err)
				}
			}
			report(events.StatusAccepted, "")
			report(events.StatusInProgress, "")
			report(events.StatusCompleted, "Certificado emitido")
			if err := msg.DoubleAck(t.Context()); err != nil {
				return err
			}
		}
		if item.ID == "" {
			return fmt.Errorf("no work item yet")
		}
		return nil
	})
	if item.ID != id+".justice" || item.Citizen.NationalID != "31337000" {
		t.Errorf("justice pulled %s for %s", item.ID, item.Citizen.NationalID)
	}
	timeline := func() (events.Status, []string) { return timelineOf(t, store, desk, id) }
	want := []string{"submitted", "routed", "justice accepted", "justice in_progress", "justice completed", "completed"}
	workertest.WaitFor(t, "the request to complete", func() error {
		if status, got := timeline(); status != events.StatusCompleted || !slices.Equal(got, want) {
			return fmt.Errorf("%s %v", status, got)
		}
		return nil
	})

	// Everything else is refused by the server.
	for _, try := range []struct{ what, subject string }{
		{"publish", "$JS.API.CONSUMER.MSG.NEXT.SPOTFLOW_WORK.agency-tax"},
		{"publish", "spotflow.status.tax"},
		{"publish", "spotflow.status.router"},
		{"publish", "spotflow.requests.lisboa." + desk.ID},
		{"subscription", "spotflow.requests.>"},
		{"subscription", "_INBOX.>"},
	} {
		var err error
		if try.what == "publish" {
			err = nc.Publish(try.subject, []byte(`{"batch":1}`))
		} else {
			_, err = nc.SubscribeSync(try.subject)
		}
		if err != nil {
			t.Fatal(err)
		}
		natstest.Refused(t, asyncErrs, try.what, try.subject)
	}

	// A forged end on its own subject changes nothing.
	forged := events.StatusEvent{Schema: events.SchemaStatus, ID: events.RoundEventID(id, "justice", events.StatusRejected, 99),
		RequestID: id, Agency: "justice", Status: events.StatusRejected, At: time.Now().UTC(), Round: 99}
	data, _ := json.Marshal(forged)
	if _, err := js.Publish(t.Context(), events.StatusSubject("justice"), data); err != nil {
		t.Fatal(err)
	}
	rival := forged
	rival.ID, rival.Round = events.EventID(id, "justice", events.StatusRejected), 0
	data, _ = json.Marshal(rival)
	if _, err := js.Publish(t.Context(), events.StatusSubject("justice"), data); err != nil {
		t.Fatal(err)
	}
	workertest.WaitFor(t, "the rival end to be refused", func() error {
		dead, err := store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Agency: "justice"})
		if err != nil || len(dead) == 0 || dead[0].Reason != events.ReasonRefused {
			return fmt.Errorf("dead letters %+v (err %v)", dead, err)
		}
		return nil
	})
	if status, got := timeline(); status != events.StatusCompleted || !slices.Equal(got, want) {
		t.Errorf("after the forgeries the request is %s with timeline %v, want completed with %v", status, got, want)
	}

	// Revoked, justice is cut off within seconds, without a restart.
	if out := cli("agency", "revoke", "--agency", "justice"); !strings.Contains(out, "revoked 1 credential(s) of justice") {
		t.Errorf("agency revoke printed %q", out)
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("justice's connection is still open 20s after its credential was revoked")
	}
	if again, err := nats.Connect(m.NATSURL(), opts[:2]...); err == nil {
		again.Close()
		t.Error("justice connected again with its revoked credential")
	}
}

// TestAgency_InJavaScriptTakesItsWorkAndIsRefusedTheRest runs an agency
// written in JavaScript on the official NATS client (testdata/agency-js,
// pinned by its package-lock.json) with a credential from `spotflow agency
// issue`.
func TestAgency_InJavaScriptTakesItsWorkAndIsRefusedTheRest(t *testing.T) {
	t.Parallel()
	node := jsAgency(t, "@nats-io/transport-node/package.json")
	m, dbURL, cli := justiceOverNATS(t)
	seedFile := filepath.Join(t.TempDir(), "justice.nk")
	cli("agency", "issue", "--agency", "justice", "--out", seedFile)
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	desk, id := submitCertificate(t, m, store, "cert-js")

	var out []byte
	workertest.WaitWithin(t, 60*time.Second, "the JavaScript agency to handle its work item", func() error {
		cmd := exec.CommandContext(t.Context(), node, "agency.mjs")
		cmd.Dir = jsAgencyDir
		cmd.Env = append(os.Environ(), "NATS_URL="+m.NATSURL(), "AGENCY=justice", "SEED_FILE="+seedFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err != nil {
			// The server may not let the new credential in yet.
			return fmt.Errorf("node agency.mjs: %v: %s", err, lastLines(stderr.String(), 5))
		}
		return nil
	})
	var report struct {
		WorkItem       string   `json:"work_item"`
		CitizenPresent bool     `json:"citizen_present"`
		Refusals       []string `json:"refusals"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("the agency printed %s: %v", out, err)
	}
	if report.WorkItem != id+".justice" || !report.CitizenPresent {
		t.Errorf("the agency handled %q (citizen present: %v), want %s.justice with its citizen", report.WorkItem, report.CitizenPresent, id)
	}
	for _, subject := range []string{"$JS.API.CONSUMER.MSG.NEXT.SPOTFLOW_WORK.agency-tax", "spotflow.status.tax", "spotflow.requests.lisboa.desk-forged", "spotflow.requests.>", "_INBOX.>"} {
		if !slices.ContainsFunc(report.Refusals, func(r string) bool {
			r = strings.ToLower(r)
			return strings.Contains(r, "permissions violation") && strings.Contains(r, strings.ToLower(subject))
		}) {
			t.Errorf("the server did not refuse %s; refusals: %q", subject, report.Refusals)
		}
	}
	want := []string{"submitted", "routed", "justice accepted", "justice in_progress", "justice completed", "completed"}
	workertest.WaitFor(t, "the request to complete", func() error {
		if status, got := timelineOf(t, store, desk, id); status != events.StatusCompleted || !slices.Equal(got, want) {
			return fmt.Errorf("%s %v", status, got)
		}
		return nil
	})
}

// jsAgencyDir holds the JavaScript agencies and their npm packages.
const jsAgencyDir = "testdata/agency-js"

// jsAgency makes sure the JavaScript agencies' package file is installed
// and returns the node program that runs them.
func jsAgency(t *testing.T, file string) string {
	t.Helper()
	nodeModule(t, jsAgencyDir, file)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the JavaScript agency (make test installs it with npm): %v", err)
	}
	return node
}
