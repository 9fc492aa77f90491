package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// jsLine is one line the JavaScript HTTP agency prints.
type jsLine struct {
	Listening      int    `json:"listening"`
	Refused        string `json:"refused"`
	Delivered      string `json:"delivered"`
	CitizenPresent bool   `json:"citizen_present"`
	Reported       string `json:"reported"`
	WorkItem       string `json:"work_item"`
	Probe          string `json:"probe"`
	Answer         int    `json:"answer"`
	Error          string `json:"error"`
}

// TestAgency_OverHTTPInJavaScriptChecksDeliveriesAndReportsLaterOverHTTPS
// runs spotflow over TLS delivering justice's work items over HTTP to an
// agency written in JavaScript (testdata/agency-js/http-agency.mjs) that
// checks each delivery's credential and signature with a Standard Webhooks
// library, answers "accepted", and reports "in_progress" and "completed"
// later over HTTPS with a token from `spotflow agency issue --token`.
func TestAgency_OverHTTPInJavaScriptChecksDeliveriesAndReportsLaterOverHTTPS(t *testing.T) {
	t.Parallel()
	node := jsAgency(t, "standardwebhooks/package.json")
	ca, cert, key := certificates(t)
	secrets := t.TempDir()
	secretFile, credentialFile := filepath.Join(secrets, "justice.whsec"), filepath.Join(secrets, "justice.credential")
	secret := httpadapter.NewSigningSecret()
	credential := "Bearer " + strings.TrimPrefix(httpadapter.NewSigningSecret(), "whsec_")
	for file, value := range map[string]string{secretFile: secret, credentialFile: credential} {
		if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	agency := exec.CommandContext(t.Context(), node, "http-agency.mjs")
	agency.Dir = jsAgencyDir
	agency.Env = append(os.Environ(), "SIGNING_SECRET="+secret, "CREDENTIAL="+credential, "AGENCY=justice", "NODE_EXTRA_CA_CERTS="+ca)
	agency.Stderr = os.Stderr
	stdin, err := agency.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := agency.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agency.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agency.Process.Kill(); _ = agency.Wait() })
	lines := make(chan jsLine, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l jsLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l.Error = "unreadable line: " + sc.Text()
			}
			lines <- l
		}
	}()
	next := func(what string) jsLine {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the agency stopped before %s", what)
			}
			if l.Error != "" {
				t.Fatalf("the agency, before %s: %s", what, l.Error)
			}
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("the agency printed nothing for a minute, waiting for %s", what)
		}
		return jsLine{}
	}
	port := next("listening").Listening
	agencyURL := fmt.Sprintf("http://127.0.0.1:%d/work-items", port)

	// What the agency refuses: a delivery without its credential, and one
	// whose body was changed after it was signed.
	k, _ := httpadapter.ParseSigningSecret(secret)
	forged := func(header string, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, agencyURL, strings.NewReader(body))
		k.Sign(req.Header, "r1.justice", time.Now(), []byte(`{"id":"r1.justice"}`))
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the agency answered %d to a forged delivery, want 401", resp.StatusCode)
		}
	}
	forged("Bearer not-the-credential", `{"id":"r1.justice"}`)
	if l := next("a delivery without the credential"); l.Refused != "credential" {
		t.Errorf("the agency said %+v of a delivery without the credential", l)
	}
	forged(credential, `{"id":"r1.justice","note":"added"}`)
	if l := next("a delivery changed after it was signed"); !strings.HasPrefix(l.Refused, "signature") {
		t.Errorf("the agency said %+v of a delivery changed after it was signed", l)
	}

	dbURL := pgtest.Schema(t)
	delivery, _ := json.Marshal(map[string]delivery{"justice": {
		Mode: deliverHTTP, URL: agencyURL, CredentialFile: credentialFile, SigningSecretFile: secretFile,
	}})
	m := &Main{
		Config: Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DatabaseURL: dbURL,
			Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32), Delivery: string(delivery),
			TLSCert: cert, TLSKey: key,
		},
		Roles: allRoles,
		Embed: true,
	}
	runMain(t, m)
	base := "https://" + m.HTTPAddr()
	tokenFile := filepath.Join(t.TempDir(), "justice.token")
	commandsOn(t, dbURL)("agency", "issue", "--agency", "justice", "--token", "--out", tokenFile)
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	told, _ := json.Marshal(map[string]string{"spotflow": base, "token": strings.TrimSpace(string(token))})
	if _, err := io.WriteString(stdin, string(told)+"\n"); err != nil {
		t.Fatal(err)
	}

	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	desk, id := submitCertificateTo(t, client, base, store, "cert-http-js")
	item := events.WorkItemID(id, "justice")

	if l := next("the delivery"); l.Delivered != item || !l.CitizenPresent {
		t.Errorf("the agency said %+v, want the delivery of %s with its citizen", l, item)
	}
	for _, status := range []string{"in_progress", "completed"} {
		if l := next("the report of " + status); l.Reported != status || l.WorkItem != item || l.Answer != http.StatusAccepted {
			t.Errorf("the agency said %+v, want its report of %s on %s answered 202", l, status, item)
		}
	}
	for _, want := range []struct {
		probe  string
		answer int
	}{{"another agency's work item", http.StatusNotFound}, {"a token that is not the agency's", http.StatusUnauthorized}} {
		if l := next(want.probe); l.Probe != want.probe || l.Answer != want.answer {
			t.Errorf("the agency said %+v, want %q answered %d", l, want.probe, want.answer)
		}
	}
	want := []string{"submitted", "routed", "justice dispatched", "justice accepted", "justice in_progress", "justice completed", "completed"}
	workertest.WaitFor(t, "the request to complete", func() error {
		if status, got := timelineOf(t, store, desk, id); status != events.StatusCompleted || !slices.Equal(got, want) {
			return fmt.Errorf("%s %v", status, got)
		}
		return nil
	})
}
