package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// emptySchema creates a schema with no tables, dropped when the test ends,
// and returns a pool whose search_path points at it.
func emptySchema(t *testing.T) *pgxpool.Pool {
	t.Helper()
	base := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	admin := pgtest.Pool(t, base)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "test_empty_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return pgtest.Pool(t, u.String())
}

func migrationVersions(t *testing.T) []int {
	t.Helper()
	names, err := fs.Glob(schemas.Migrations, "migrations/*.up.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("list embedded migrations: %v (%d found)", err, len(names))
	}
	versions := make([]int, len(names))
	for i, name := range names {
		num, _, _ := strings.Cut(path.Base(name), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("migration %s: name must start with its number", name)
		}
		versions[i] = v
	}
	slices.Sort(versions)
	return versions
}

func tables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
		SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrate_AppliesEveryMigrationThenNothing(t *testing.T) {
	t.Parallel()
	pool := emptySchema(t)
	ctx := withTimeout(t)

	applied, err := postgres.Migrate(ctx, pool)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if want := migrationVersions(t); !slices.Equal(applied, want) {
		t.Errorf("first Migrate applied %v, want %v", applied, want)
	}
	before := tables(t, pool)

	again, err := postgres.Migrate(ctx, pool)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", again)
	}
	if after := tables(t, pool); !slices.Equal(before, after) {
		t.Errorf("second Migrate changed the tables from %v to %v", before, after)
	}
	var recorded int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != len(applied) {
		t.Errorf("schema_migrations records %d migrations, want %d", recorded, len(applied))
	}
}

func TestMigrate_CreatesTheDocumentedTables(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	got := tables(t, s.Pool())
	for _, want := range []string{
		"desks", "intake_keys", "requests", "work_items", "timeline", "throughput_minute", "schema_migrations",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("migrated schema lacks table %s (has %v)", want, got)
		}
	}
	// The columns dashboards and BI tools read.
	columns := map[string][]string{
		"requests":          {"id", "desk_id", "municipality", "service_code", "visit_id", "status", "submitted_at", "updated_at"},
		"timeline":          {"event_id", "request_id", "agency", "status", "at", "actor", "note"},
		"throughput_minute": {"minute", "desk_id", "municipality", "service_code", "agency", "status", "events"},
		"work_items":        {"request_id", "agency", "status", "updated_at"},
	}
	for table, want := range columns {
		rows, err := s.Pool().Query(t.Context(), `
			SELECT column_name::text FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range want {
			if !slices.Contains(have, c) {
				t.Errorf("table %s lacks column %s (has %v)", table, c, have)
			}
		}
	}
}

func TestMigrate_ConcurrentCallsApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	pool := emptySchema(t)
	ctx := withTimeout(t)
	const n = 4
	results := make([][]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = postgres.Migrate(ctx, pool)
		})
	}
	close(start)
	wg.Wait()
	var total []int
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Migrate %d: %v", i, errs[i])
		}
		total = append(total, results[i]...)
	}
	slices.Sort(total)
	if want := migrationVersions(t); !slices.Equal(total, want) {
		t.Errorf("concurrent Migrate calls applied %v between them, want each of %v once", total, want)
	}
}
