package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events/natsbus"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// buildBinary builds spotflow once per test into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spotflow")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs `spotflow run` as a process and returns it with the HTTP
// address it printed.
func startProcess(t *testing.T, bin, dataDir, dbURL string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "run", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--database-url", dbURL, "--agencies", "*:latency=300ms", "--citizen-key", strings.Repeat("ef", 32), "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "HTTP      http://"); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a
	case <-time.After(60 * time.Second):
		t.Fatal("spotflow run printed no HTTP address within 60s")
	}
	return nil, ""
}

// TestRun_StopsGracefullyOnSIGTERMAndLosesNothing submits requests to slow
// agencies, sends SIGTERM while they are in flight, expects exit status 0
// within the shutdown deadline, and then finds every request completed once
// the process is started again on the same data directory.
func TestRun_StopsGracefullyOnSIGTERMAndLosesNothing(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dbURL := pgtest.Schema(t)
	dataDir := t.TempDir()
	cmd, addr := startProcess(t, bin, dataDir, dbURL)

	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	ctx := t.Context()
	desk, token, err := store.CreateDesk(ctx, "braga", "Desk")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var ids []string
	for n := range 40 {
		a := post(t, client, "http://"+addr, token, submission{key: fmt.Sprint(n), body: validBody(n)})
		if a.status != http.StatusAccepted {
			t.Fatalf("submission %d: %d %s", n, a.status, a.code)
		}
		ids = append(ids, a.id)
	}

	t.Logf("submitted %d requests; sending SIGTERM", len(ids))
	stopAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("spotflow run exited with %v after SIGTERM; want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("spotflow run did not exit within 30s of SIGTERM")
	}

	t.Logf("exited %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	// Nothing was left delivered but unacknowledged: a restart owes no
	// message to the ack wait.
	checkNothingPending(t, bin, dataDir, dbURL)

	startProcess(t, bin, dataDir, dbURL)
	workertest.WaitWithin(t, 60*time.Second, "every request to complete after the restart", func() error {
		done := 0
		for _, id := range ids {
			if v, err := store.RequestForDesk(ctx, desk.ID, id); err == nil && v.Status == events.StatusCompleted {
				done++
			}
		}
		if done == len(ids) {
			return nil
		}
		return fmt.Errorf("%d of %d completed", done, len(ids))
	})
}

// checkNothingPending starts `spotflow nats` alone on dataDir's JetStream
// store and fails the test if any consumer holds delivered messages that
// were never acknowledged.
func checkNothingPending(t *testing.T, bin, dataDir, dbURL string) {
	t.Helper()
	cmd := exec.Command(bin, "nats", "--data-dir", dataDir, "--database-url", dbURL, "--nats-listen", "127.0.0.1:0", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	fields := strings.Fields(line)
	if err != nil || len(fields) < 2 {
		t.Fatalf("spotflow nats printed %q (err %v)", line, err)
	}
	cfg := Config{DataDir: dataDir}
	admin, err := cfg.credential(natsbus.Admin)
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := natsbus.Connect(fields[1], t.Name(), admin, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := t.Context()
	for _, stream := range []string{events.EventsStream, events.WorkStream} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		for name := range s.ConsumerNames(ctx).Name() {
			c, err := s.Consumer(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumAckPending != 0 {
				t.Errorf("consumer %s holds %d unacknowledged messages after a graceful stop", name, info.NumAckPending)
			}
		}
	}
}
