package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadgen_ReportsWhatItSubmittedOnceItFinished runs `spotflow loadgen`
// as a user would against a running system and reads its JSON report.
func TestLoadgen_ReportsWhatItSubmittedOnceItFinished(t *testing.T) {
	t.Parallel()
	m, dbURL := startMain(t, "*:latency=1ms")
	out := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	args := []string{"loadgen", "--url", "http://" + m.HTTPAddr(), "--database-url", dbURL, "--data-dir", t.TempDir(),
		"--desks", "3", "--rate", "40", "--duration", "1s", "--drain", "60s", "--json", out, "--log-level", "warn"}
	if err := dispatch(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("loadgen: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r loadReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report %s: %v", data, err)
	}
	if r.Desks != 3 || r.Submitted == 0 || r.Accepted != r.Submitted || r.Completed != r.Accepted || r.Errors != 0 {
		t.Errorf("report: %d desks, %d submitted, %d accepted, %d completed, %d errors; want 3 desks and every submission accepted and finished",
			r.Desks, r.Submitted, r.Accepted, r.Completed, r.Errors)
	}
	if r.Accept["p50"] <= 0 || r.Complete["p99"] < r.Complete["p50"] {
		t.Errorf("latencies accepted %v, completed %v; want percentiles of every request", r.Accept, r.Complete)
	}
	if !strings.Contains(stdout.String(), "completed") {
		t.Errorf("the printed report does not say what completed:\n%s", stdout.String())
	}
}
