package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/httpadapter"
)

func TestAgencies_TakeOnlySignedDeliveriesGivenASecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "agencies.whsec")
	if err := dispatch(t.Context(), []string{"agency", "secret", "--out", secretFile}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out, in := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"agencies", "--data-dir", dir, "--http", "127.0.0.1:0", "--agencies", "*:latency=0s",
			"--signing-secret-file", secretFile, "--log-level", "warn"}, in, os.Stderr)
		in.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("spotflow agencies: %v", err)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	endpoint := strings.TrimSpace(strings.TrimPrefix(line, "simulated agencies on "))
	base := strings.TrimSuffix(endpoint, "/agencies/{agency}/work-items")

	raw, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := httpadapter.ParseSigningSecret(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	item := events.WorkItem{Schema: events.SchemaWorkItem, ID: events.WorkItemID("r1", "tax"), RequestID: "r1", Agency: "tax",
		ServiceCode: "tax-id-certificate", SubmittedAt: time.Now()}
	signed, err := httpadapter.New(httpadapter.Config{Endpoint: endpoint, SigningSecret: key})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := signed.Deliver(t.Context(), item); err != nil || !r.Status.Valid() {
		t.Errorf("a signed delivery: %+v, %v", r, err)
	}
	unsigned, err := httpadapter.New(httpadapter.Config{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unsigned.Deliver(t.Context(), item); !events.IsPermanent(err) || !strings.Contains(err.Error(), "401") {
		t.Errorf("an unsigned delivery: %v, want a refusal with 401", err)
	}
	resp, err := http.Get(base + "/control/tax")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /control/tax: %d, want 200: the fault controls are not deliveries", resp.StatusCode)
	}
}
