package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestChaos_ReducedFaultSuitePasses runs the reduced fault suite: every
// role in a process of its own against a real nats-server and Postgres,
// every fault once, and fails with the ledger if anything was lost,
// applied twice or dead-lettered that should not have been, or a backlog
// took longer than a minute to drain. It provisions its own Postgres through
// the binary, so it needs no TEST_DATABASE_URL.
func TestChaos_ReducedFaultSuitePasses(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("the reduced fault suite takes about a minute; skipped with -short")
	}
	t.Parallel()
	runReduced(t, Config{Spotflow: buildSpotflowForTest(t), Reduced: true, Log: testWriter{t}})
}

// TestChaos_ReducedClusterSuitePasses runs the reduced form of make
// cluster: three nats-server nodes with deploy/nats/cluster.conf, TLS and
// streams of three replicas, two intakes, the stream leader killed twice,
// quorum lost, one round of lame-duck restarts; and the same ledger, with
// every node holding the same streams at the end.
func TestChaos_ReducedClusterSuitePasses(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("the reduced cluster suite takes about a minute and a half; skipped with -short")
	}
	t.Parallel()
	runReduced(t, Config{Spotflow: buildSpotflowForTest(t), Reduced: true, Cluster: true, Requests: 150,
		NATSConf: filepath.Join("..", "..", "deploy", "nats", "cluster.conf"), Log: testWriter{t}})
}

func buildSpotflowForTest(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spotflow")
	build := exec.Command("go", "build", "-o", bin, "github.com/spotflow/spotflow/cmd/spotflow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build spotflow: %v", err)
	}
	return bin
}

func runReduced(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel) // Run stops every process it started before it returns
	report, err := Run(ctx, cfg)
	t.Log(report.Table())
	if err != nil {
		t.Fatalf("the suite could not run: %v", err)
	}
	if !report.Pass() {
		t.Fatalf("the reduced fault suite failed:\n%s", report.Table())
	}
}

// testWriter sends progress lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-min(len(b), 1)]))
	return len(b), nil
}
