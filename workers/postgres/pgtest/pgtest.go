// Package pgtest gives each test its own schema in the real Postgres named by
// TEST_DATABASE_URL, migrated and dropped when the test ends. `make test`
// starts a local cluster and sets the variable. Without it a test skips,
// naming `make test`, except under CI=true, where it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
)

// URL returns TEST_DATABASE_URL, or ends the test: it skips, or under
// CI=true fails, when the variable is unset.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TEST_DATABASE_URL is not set; `make test` provisions a Postgres and sets it")
		}
		t.Skip("needs a real Postgres: run `make test`, or set TEST_DATABASE_URL")
	}
	return base
}

// Schema creates a fresh schema, applies every migration in it, and returns a
// connection URL whose search_path points at it. The schema is dropped when
// the test ends.
func Schema(t testing.TB) string {
	t.Helper()
	base := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := postgres.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := postgres.Connect(ctx, base)
		if err != nil {
			t.Errorf("pgtest: drop schema: %v", err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: parse TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	pool := Pool(t, u.String())
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u.String()
}

// Pool opens a pool to url, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Store returns a store over a fresh schema, with a fixed citizen key.
func Store(t testing.TB) *postgres.Store {
	t.Helper()
	return postgres.NewStore(Pool(t, Schema(t)), []byte("0123456789abcdef0123456789abcdef"))
}

// Opened ends the test when err, from opening a local cluster (localpg.Open,
// or a process that opens one), says PostgreSQL is not installed: it skips,
// or under CI=true fails. Any other error fails it, as what went wrong.
func Opened(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case errors.Is(err, localpg.ErrNoBinaries) && os.Getenv("CI") == "true":
		t.Fatalf("CI=true and PostgreSQL is not installed: %v", err)
	case errors.Is(err, localpg.ErrNoBinaries):
		t.Skipf("skipping: %v; `make test` installs PostgreSQL", err)
	case err != nil:
		t.Fatalf("%s: %v", what, err)
	}
}
