package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestRun_OnTheLocalClusterConnectsAsAnOwnerThatIsNotASuperuser runs the
// all-in-one the way `spotflow run` does without DATABASE_URL: on the local
// cluster of its data directory, which it provisions and starts. A request
// goes through to completed; every connection to the cluster is spotflow's
// role, which is not a superuser; and the cluster takes no connection
// without the role's password.
func TestRun_OnTheLocalClusterConnectsAsAnOwnerThatIsNotASuperuser(t *testing.T) {
	t.Parallel()
	// The server runs as the postgres user when the tests run as root, and
	// t.TempDir makes directories only their owner may enter.
	dataDir := t.TempDir()
	for _, dir := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := &Main{
		Config: Config{
			DataDir: dataDir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
			Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32),
		},
		Roles: allRoles,
		Embed: true,
	}
	runLocal(t, m)
	// The cluster is running: Open finds it and leaves it to m, which
	// stops it when the test ends.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cluster, err := localpg.Open(ctx, localpg.Config{DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, cluster.URL())
	store := postgres.NewStore(pool, nil)

	desk, id := submitCertificate(t, m, store, "local-1")
	workertest.WaitWithin(t, 30*time.Second, "the request to be completed", func() error {
		if status, timeline := timelineOf(t, store, desk, id); status != events.StatusCompleted {
			return fmt.Errorf("status %q, timeline %v", status, timeline)
		}
		return nil
	})

	var super bool
	if err := pool.QueryRow(t.Context(), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if super {
		t.Error("spotflow's role is a superuser, want it not to be")
	}
	var users []string
	err = pool.QueryRow(t.Context(), `SELECT array_agg(DISTINCT usename ORDER BY usename) FROM pg_stat_activity
		WHERE backend_type = 'client backend'`).Scan(&users)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(users, ",") != "spotflow" {
		t.Errorf("client connections as %v, want only spotflow", users)
	}

	u, err := url.Parse(cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("passfile")
	u.RawQuery = q.Encode()
	if conn, err := pgx.Connect(t.Context(), u.String()); err == nil {
		_ = conn.Close(t.Context())
		t.Errorf("connected to %s without the password, want it refused", u)
	}
}

// runLocal runs m, which provisions and starts the local cluster of its data
// directory, until the test ends, and waits until it is ready. Without
// PostgreSQL's binaries the test skips, except under CI=true, where it
// fails.
func runLocal(t *testing.T, m *Main) {
	t.Helper()
	m.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if err != nil && !errors.Is(err, localpg.ErrNoBinaries) {
				t.Errorf("Run: %v, want nil once its context ended", err)
			}
		case <-time.After(workertest.StopWithin):
			t.Errorf("Run did not return within %v of its context ending", workertest.StopWithin)
		}
	})
	select {
	case <-m.Ready():
	case <-done:
		pgtest.Opened(t, "Run ended before it was ready", err)
		t.Fatal("Run ended before it was ready")
	case <-time.After(2 * time.Minute):
		t.Fatal("not ready after 2 minutes")
	}
}
