package postgres_test

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// benchRequests is how many requests' worth of roll-ups the dashboard
// benchmark loads; `make bench-dashboard` asks for ten million.
var benchRequests = flag.Int("dashboard.requests", 100_000, "requests whose roll-ups BenchmarkDashboard loads")

// The load's shape: a month of requests ending now, from 700 desks in 308
// municipalities, for 60 services handled by 20 agencies, some services far
// busier than others; 90% completed, 7% rejected, 3% failed, after times
// spread log-uniformly from a minute to twenty days, against SLAs from one to
// ten days.
const (
	benchDays           = 30
	benchDesks          = 700
	benchMunicipalities = 308
	benchServices       = 60
	benchAgencies       = 20
)

// histogramSQL builds a latency histogram, as dashboard_latency stores it,
// from rows of (bucket, n).
var histogramSQL = func() string {
	cells := make([]string, events.LatencyBuckets)
	for i := range cells {
		cells[i] = fmt.Sprintf("coalesce(sum(b.n) FILTER (WHERE b.bucket = %d), 0)", i)
	}
	return "ARRAY[" + strings.Join(cells, ", ") + "]::int[]"
}()

// loadDashboard fills the roll-ups with what projecting n requests would
// have left after pruning, straight from SQL: an unlogged table of the
// requests' events is rolled up at each grain over the span that grain
// keeps. It also records desks and dead letters.
func loadDashboard(b *testing.B, s *postgres.Store, n int, now time.Time) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Minute)
	defer cancel()
	steps := []struct{ what, sql string }{
		{"settings", `SET LOCAL work_mem = '256MB'`},
		// A bulk load: the roll-ups skip the write-ahead log and get their
		// primary keys back, built in one sort, once filled. Queries read
		// them as they read logged tables.
		{"unlogged", `ALTER TABLE dashboard_counts SET UNLOGGED;
			ALTER TABLE dashboard_latency SET UNLOGGED;
			ALTER TABLE dashboard_counts DROP CONSTRAINT dashboard_counts_pkey;
			ALTER TABLE dashboard_latency DROP CONSTRAINT dashboard_latency_pkey`},
		{"desks", fmt.Sprintf(`
			INSERT INTO desks (id, municipality, name)
			SELECT 'desk-' || d, 'm' || (d %% %d), 'Desk ' || d
			FROM generate_series(0, %d) d`, benchMunicipalities, benchDesks-1)},
		{"requests", fmt.Sprintf(`
			CREATE UNLOGGED TABLE bench_requests AS
			SELECT (random() * %[1]d)::int %% %[1]d AS desk,
			       floor(%[2]d * random() ^ 2)::int AS service,
			       $1::timestamptz - random() * interval '%[3]d days' AS submitted_at,
			       exp(ln(60000) + random() * ln(20 * 86400000 / 60000.0))::bigint AS latency_ms,
			       CASE WHEN random() < 0.9 THEN 'completed' WHEN random() < 0.7 THEN 'rejected' ELSE 'failed' END AS outcome
			FROM generate_series(1, $2)`, benchDesks, benchServices, benchDays)},
		{"events", fmt.Sprintf(`
			CREATE UNLOGGED TABLE bench_events AS
			SELECT submitted_at AS at, desk, service, 1 AS submitted, 0 AS completed, 0 AS rejected, 0 AS failed,
			       0 AS within_sla, 0 AS breached, 0::bigint AS latency_ms
			FROM bench_requests
			UNION ALL
			SELECT submitted_at + latency_ms * interval '1 ms', desk, service, 0,
			       (outcome = 'completed')::int, (outcome = 'rejected')::int, (outcome = 'failed')::int,
			       (outcome = 'completed' AND latency_ms <= (1 + service %% 10) * 86400000)::int,
			       (outcome = 'completed' AND latency_ms > (1 + service %% 10) * 86400000)::int,
			       CASE WHEN outcome = 'completed' THEN latency_ms ELSE 0 END
			FROM bench_requests WHERE submitted_at + latency_ms * interval '1 ms' <= $1`)},
	}
	for _, g := range []struct {
		grain string
		since time.Time
	}{
		{"minute", now.Add(-postgres.MinuteRollupsKept)},
		{"hour", now.Add(-postgres.HourRollupsKept)},
		{"day", now.AddDate(0, 0, -benchDays-1)},
	} {
		since := g.since.UTC().Format(time.RFC3339)
		steps = append(steps, struct{ what, sql string }{g.grain + " counts", fmt.Sprintf(`
			INSERT INTO dashboard_counts (grain, at, scope, dim, key,
			       submitted, completed, rejected, failed, within_sla, breached, latency_s)
			SELECT '%[1]s', b.at, k.scope, k.dim, k.key, sum(submitted), sum(completed), sum(rejected), sum(failed),
			       sum(within_sla), sum(breached), sum(latency_ms) / 1000.0
			FROM (SELECT date_trunc('%[1]s', at) AS at, desk, service, sum(submitted) AS submitted,
			             sum(completed) AS completed, sum(rejected) AS rejected, sum(failed) AS failed,
			             sum(within_sla) AS within_sla, sum(breached) AS breached, sum(latency_ms) AS latency_ms
			      FROM bench_events WHERE at >= '%[2]s' GROUP BY 1, 2, 3) b
			CROSS JOIN LATERAL (VALUES
			    ('m' || b.desk %% %[3]d, 'total', ''), ('', 'total', ''), ('', 'municipality', 'm' || b.desk %% %[3]d),
			    ('m' || b.desk %% %[3]d, 'desk', 'desk-' || b.desk), ('', 'desk', 'desk-' || b.desk),
			    ('m' || b.desk %% %[3]d, 'service', 's' || b.service), ('', 'service', 's' || b.service),
			    ('m' || b.desk %% %[3]d, 'agency', 'a' || b.service %% %[4]d), ('', 'agency', 'a' || b.service %% %[4]d)
			) AS k(scope, dim, key)
			GROUP BY 1, 2, 3, 4, 5
			ORDER BY 2`, g.grain, since, benchMunicipalities, benchAgencies)})
		steps = append(steps, struct{ what, sql string }{g.grain + " latency", fmt.Sprintf(`
			INSERT INTO dashboard_latency (grain, at, scope, service, counts)
			SELECT '%[1]s', b.at, k.scope, k.service, %[4]s
			FROM (SELECT date_trunc('%[1]s', at) AS at, 'm' || desk %% %[3]d AS municipality, 's' || service AS service,
			             CASE WHEN latency_ms <= 10 THEN 0
			                  ELSE least(63, greatest(1, ceil(2 * log(2, latency_ms / 10.0))))::int END AS bucket,
			             count(*) AS n
			      FROM bench_events WHERE completed = 1 AND at >= '%[2]s' GROUP BY 1, 2, 3, 4) b
			CROSS JOIN LATERAL (VALUES (b.municipality, b.service), (b.municipality, ''), ('', b.service), ('', '')) AS k(scope, service)
			GROUP BY 1, 2, 3, 4
			ORDER BY 2`, g.grain, since, benchMunicipalities, histogramSQL)})
	}
	steps = append(steps, struct{ what, sql string }{"dead letters", fmt.Sprintf(`
		INSERT INTO dead_letters (stream, stream_seq, subject, agency, reason, last_error, attempts, payload, replayed_at)
		SELECT 'SPOTFLOW_WORK', i, 'spotflow.work.a' || i %% %d, 'a' || i %% %d, 'permanent', 'refused', 1, '\x00',
		       CASE WHEN i %% 2 = 0 THEN $1::timestamptz END
		FROM generate_series(1, greatest($2 / 500, 1)) i`, benchAgencies, benchAgencies)},
		struct{ what, sql string }{"primary keys", `
			ALTER TABLE dashboard_counts ADD PRIMARY KEY (grain, scope, dim, at, key);
			ALTER TABLE dashboard_latency ADD PRIMARY KEY (grain, scope, at, service)`},
		struct{ what, sql string }{"drop staging", `DROP TABLE bench_events, bench_requests`},
		struct{ what, sql string }{"analyze", `VACUUM ANALYZE dashboard_counts, dashboard_latency, dead_letters, desks`},
	)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, step := range steps {
		start := time.Now()
		var args []any
		switch step.what {
		case "requests", "dead letters":
			args = []any{now, n}
		case "events":
			args = []any{now}
		}
		db := postgres.DBTX(tx)
		if step.what == "analyze" {
			// VACUUM runs outside a transaction, as autovacuum would.
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			db = s.Pool()
		}
		tag, err := db.Exec(ctx, step.sql, args...)
		if err != nil {
			b.Fatalf("load %s: %v", step.what, err)
		}
		b.Logf("load %-16s %10d rows in %v", step.what, tag.RowsAffected(), time.Since(start).Round(time.Millisecond))
	}
	var counts, latency int64
	if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM dashboard_counts), (SELECT count(*) FROM dashboard_latency)`).Scan(&counts, &latency); err != nil {
		b.Fatal(err)
	}
	b.Logf("roll-ups of %d requests: %d dashboard_counts rows, %d dashboard_latency rows", n, counts, latency)
}

// BenchmarkDashboard times every query the dashboard makes, for every range,
// for all municipalities and for one, over the roll-ups of
// -dashboard.requests requests (`make bench-dashboard`: ten million). One op
// is one query; the whole page's reading is "page".
func BenchmarkDashboard(b *testing.B) {
	s := postgres.NewStore(pgtest.Pool(b, pgtest.Schema(b)), nil)
	now := time.Now().UTC()
	loadDashboard(b, s, *benchRequests, now)
	ctx := b.Context()
	for _, municipality := range []string{"", "m7"} {
		scope := "all"
		if municipality != "" {
			scope = municipality
		}
		b.Run(fmt.Sprintf("minutes/%s", scope), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.DashboardMinutes(ctx, municipality, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, r := range events.Ranges {
			f := events.DashboardFilter{Municipality: municipality, Range: r}
			for _, dim := range []events.Dimension{events.DimensionTotal, events.DimensionMunicipality,
				events.DimensionDesk, events.DimensionService, events.DimensionAgency} {
				b.Run(fmt.Sprintf("tallies-%s/%s/%s", dim, r, scope), func(b *testing.B) {
					for b.Loop() {
						if _, err := s.DashboardTallies(ctx, f, dim, now); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			b.Run(fmt.Sprintf("latency/%s/%s", r, scope), func(b *testing.B) {
				for b.Loop() {
					if _, err := s.DashboardLatency(ctx, f, now); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("page/%s/%s", r, scope), func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Dashboard(ctx, f, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("dead-letters", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.PendingDeadLetters(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("desks", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := s.DashboardDesks(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prune", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.PruneDashboard(ctx, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
