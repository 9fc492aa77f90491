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
	// What a desk waits for is measured from the client's send to the
	// commit that made the request readable as completed (spotflow's own
	// Postgres keeps commit timestamps): longer than the pipeline's part.
	if !strings.Contains(r.CompleteMeasured, "commit") || r.Complete["p50"] < r.ServerComplete["p50"] || r.ServerComplete["p50"] <= 0 {
		t.Errorf("submit→completed %v (%s); in the pipeline %v: want the desk's wait, measured to the commit, no shorter than the pipeline's",
			r.Complete, r.CompleteMeasured, r.ServerComplete)
	}
	// The system runs inside this test's process, which is not named
	// spotflow; its Postgres is seen.
	if r.CPU["postgres"] <= 0 {
		t.Errorf("CPU per request %v (%s): want Postgres's", r.CPU, r.CPUMeasured)
	}
	if !strings.Contains(stdout.String(), "completed") {
		t.Errorf("the printed report does not say what completed:\n%s", stdout.String())
	}
}
