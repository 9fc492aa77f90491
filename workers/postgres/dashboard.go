package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// Dashboard reads what the dashboard shows for f at now, from the roll-ups
// alone: the last hour by the minute, tallies by every dimension, latency
// histograms, pending dead letters, municipalities and desk names. Every
// query reads one range of a primary key or a small table.
func (s *Store) Dashboard(ctx context.Context, f events.DashboardFilter, now time.Time) (*events.DashboardData, error) {
	if !f.Range.Valid() {
		f.Range = events.RangeHour
	}
	d := &events.DashboardData{Filter: f, Since: f.Range.Since(now), Tallies: make(map[events.Dimension][]events.Tally)}
	var err error
	if d.Minutes, err = s.DashboardMinutes(ctx, f.Municipality, now); err != nil {
		return nil, err
	}
	for _, dim := range []events.Dimension{events.DimensionTotal, events.DimensionMunicipality,
		events.DimensionDesk, events.DimensionService, events.DimensionAgency} {
		if d.Tallies[dim], err = s.DashboardTallies(ctx, f, dim, now); err != nil {
			return nil, err
		}
	}
	if d.Latencies, err = s.DashboardLatency(ctx, f, now); err != nil {
		return nil, err
	}
	if d.PendingDeadLetters, err = s.PendingDeadLetters(ctx); err != nil {
		return nil, err
	}
	if d.Municipalities, d.DeskNames, err = s.DashboardDesks(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// DashboardMinutes returns the requests submitted and completed in each of
// the 60 minutes up to now, oldest first, minutes without any included.
func (s *Store) DashboardMinutes(ctx context.Context, municipality string, now time.Time) ([]events.MinuteCount, error) {
	since := events.RangeHour.Since(now)
	rows, err := s.pool.Query(ctx, `
		SELECT at, submitted, completed FROM dashboard_counts
		WHERE grain = 'minute' AND scope = $1 AND dim = 'total' AND at >= $2 AND key = ''`,
		municipality, since)
	if err != nil {
		return nil, fmt.Errorf("read the last hour: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.MinuteCount])
	if err != nil {
		return nil, fmt.Errorf("read the last hour: %w", err)
	}
	byMinute := make(map[time.Time]events.MinuteCount, len(found))
	for _, m := range found {
		byMinute[m.At.UTC()] = m
	}
	out := make([]events.MinuteCount, 60)
	for i := range out {
		at := since.Add(time.Duration(i) * time.Minute)
		out[i] = byMinute[at]
		out[i].At = at
	}
	return out, nil
}

// DashboardTallies returns the tallies of f's range by dim, one per key, in
// no particular order. DimensionTotal always has exactly one.
func (s *Store) DashboardTallies(ctx context.Context, f events.DashboardFilter, dim events.Dimension, now time.Time) ([]events.Tally, error) {
	scope, read, keyExpr := f.Municipality, dim, "key"
	args := []any{string(f.Range.Grain()), scope, string(read), f.Range.Since(now)}
	if dim == events.DimensionMunicipality {
		// Municipalities are counted in the scope of all of them; one
		// municipality's row is its own scope's total.
		args[1] = ""
		if f.Municipality != "" {
			args[1], args[2], keyExpr = f.Municipality, string(events.DimensionTotal), "$5::text"
			args = append(args, f.Municipality)
		}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+keyExpr+`, sum(submitted), sum(completed), sum(rejected), sum(failed),
		       sum(within_sla), sum(breached), round(sum(latency_s) * 1000)::bigint
		FROM dashboard_counts
		WHERE grain = $1 AND scope = $2 AND dim = $3 AND at >= $4
		GROUP BY 1`, args...)
	if err != nil {
		return nil, fmt.Errorf("read tallies by %s: %w", dim, err)
	}
	tallies, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.Tally])
	if err != nil {
		return nil, fmt.Errorf("read tallies by %s: %w", dim, err)
	}
	if dim == events.DimensionTotal && len(tallies) == 0 {
		tallies = []events.Tally{{}}
	}
	return tallies, nil
}

// DashboardLatency returns the histograms of times from submission to
// completion in f's range, by service and for all services under "".
func (s *Store) DashboardLatency(ctx context.Context, f events.DashboardFilter, now time.Time) (map[string]*events.Histogram, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT service, counts FROM dashboard_latency
		WHERE grain = $1 AND scope = $2 AND at >= $3`,
		string(f.Range.Grain()), f.Municipality, f.Range.Since(now))
	if err != nil {
		return nil, fmt.Errorf("read latency: %w", err)
	}
	hists := map[string]*events.Histogram{"": new(events.Histogram)}
	var service string
	var counts []int32
	_, err = pgx.ForEachRow(rows, []any{&service, &counts}, func() error {
		h := hists[service]
		if h == nil {
			h = new(events.Histogram)
			hists[service] = h
		}
		for i, n := range counts[:min(len(counts), events.LatencyBuckets)] {
			h[i] += int64(n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read latency: %w", err)
	}
	return hists, nil
}

// PendingDeadLetters counts the dead letters never replayed, by agency ("" for
// messages of no agency); the practice queue's count nowhere.
func (s *Store) PendingDeadLetters(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT agency, count(*) FROM dead_letters
		WHERE replayed_at IS NULL AND payload IS NOT NULL AND agency IS DISTINCT FROM $1
		GROUP BY agency`, events.SourcePractice)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out := make(map[string]int64)
	var agency string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&agency, &n}, func() error {
		out[agency] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return out, nil
}

// DashboardDesks returns the municipalities that have desks, sorted, and
// every desk's name by ID.
func (s *Store) DashboardDesks(ctx context.Context) ([]string, map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, municipality, name FROM desks ORDER BY municipality`)
	if err != nil {
		return nil, nil, fmt.Errorf("read desks: %w", err)
	}
	var municipalities []string
	names := make(map[string]string)
	var id, municipality, name string
	_, err = pgx.ForEachRow(rows, []any{&id, &municipality, &name}, func() error {
		names[id] = name
		if len(municipalities) == 0 || municipalities[len(municipalities)-1] != municipality {
			municipalities = append(municipalities, municipality)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read desks: %w", err)
	}
	return municipalities, names, nil
}

// Retention of the dashboard's finer roll-ups: no range reads minute rows
// older than an hour or hour rows older than a day, so they are kept only a
// while longer. Day rows are kept.
const (
	MinuteRollupsKept = 48 * time.Hour
	HourRollupsKept   = 8 * 24 * time.Hour
)

// PruneDashboard deletes roll-up rows that no dashboard range reads any
// more: minute rows older than MinuteRollupsKept and hour rows older than
// HourRollupsKept, before now. It returns how many rows it deleted. It finds
// the oldest row of each grain through the (grain, at) index and deletes an
// hour of buckets at a time, so that a pruning with nothing to do costs one
// index probe per table and grain, and one with much to do holds no long
// transaction.
func (s *Store) PruneDashboard(ctx context.Context, now time.Time) (int64, error) {
	var deleted int64
	for _, table := range []string{"dashboard_counts", "dashboard_latency"} {
		for _, g := range []struct {
			grain events.Grain
			kept  time.Duration
		}{{events.GrainMinute, MinuteRollupsKept}, {events.GrainHour, HourRollupsKept}} {
			cutoff := now.Add(-g.kept)
			for {
				var oldest *time.Time
				err := s.pool.QueryRow(ctx, `SELECT min(at) FROM `+table+` WHERE grain = $1`, string(g.grain)).Scan(&oldest)
				if err != nil {
					return deleted, fmt.Errorf("prune dashboard roll-ups: %w", err)
				}
				if oldest == nil || !oldest.Before(cutoff) {
					break
				}
				upTo := oldest.Add(time.Hour)
				if upTo.After(cutoff) {
					upTo = cutoff
				}
				tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE grain = $1 AND at >= $2 AND at < $3`,
					string(g.grain), *oldest, upTo)
				if err != nil {
					return deleted, fmt.Errorf("prune dashboard roll-ups: %w", err)
				}
				deleted += tag.RowsAffected()
			}
		}
	}
	return deleted, nil
}
