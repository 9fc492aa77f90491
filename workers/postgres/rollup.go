package postgres

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// countedEvent is an event a batch recorded, as the roll-ups count it.
type countedEvent struct {
	throughputKey
	// sinceSubmitted is the time from the request's submission to the event.
	sinceSubmitted time.Duration
}

// countsKey is one row of dashboard_counts.
type countsKey struct {
	grain           events.Grain
	at              time.Time
	scope, dim, key string
}

func (k countsKey) compare(o countsKey) int {
	return cmp.Or(cmp.Compare(k.grain, o.grain), cmp.Compare(k.scope, o.scope), cmp.Compare(k.dim, o.dim),
		k.at.Compare(o.at), cmp.Compare(k.key, o.key))
}

// countsRow is what a fold adds to one row of dashboard_counts.
type countsRow struct {
	submitted, completed, rejected, failed, withinSLA, breached int64
	latency                                                     float64
}

// latencyKey is one row of dashboard_latency.
type latencyKey struct {
	grain          events.Grain
	at             time.Time
	scope, service string
}

func (k latencyKey) compare(o latencyKey) int {
	return cmp.Or(cmp.Compare(k.grain, o.grain), cmp.Compare(k.scope, o.scope), k.at.Compare(o.at),
		cmp.Compare(k.service, o.service))
}

// dashboardRollup is what a fold adds to the dashboard's roll-ups.
type dashboardRollup struct {
	counts  map[countsKey]*countsRow
	latency map[latencyKey]*[events.LatencyBuckets]int32
}

// queueForDashboard adds a batch's recorded events to the roll-ups' inbox
// (dashboard_inbox), one row for the batch, for FoldRollups to count.
func queueForDashboard(q *pgx.Batch, evs []countedEvent) {
	n := len(evs)
	minute, desk, muni, svc, agency, status := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	since := make([]int64, n)
	for i, e := range evs {
		minute[i], desk[i], muni[i], svc[i], agency[i], status[i] = e.minute, e.desk, e.municipality, e.service, e.agency, e.status
		since[i] = e.sinceSubmitted.Microseconds()
	}
	q.Queue(`
		INSERT INTO dashboard_inbox (minute, desk_id, municipality, service_code, agency, status, since_submitted_us)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		minute, desk, muni, svc, agency, status, since)
}

// foldRows is how many inbox rows (projector batches) one fold takes at
// most, so that a long backlog is folded in transactions of bounded size.
const foldRows = 1000

// FoldRollups moves the events waiting in the inbox into the roll-ups
// (throughput_minute, dashboard_counts and dashboard_latency) and reports
// how many it moved. Each fold takes the oldest waiting
// rows, adds their events to the roll-ups and deletes them in one
// transaction, so an event counts once however folds and crashes
// interleave; concurrent folds (several projector processes) take
// different rows. It folds again only while a fold was full (a backlog
// waits), never for the few rows that arrived during the last one: under
// load those would make a stream of small folds, each writing nearly as
// many roll-up rows as a large one, where the next tick folds them
// together. It stops early when ctx ends.
func (s *Store) FoldRollups(ctx context.Context) (int, error) {
	total := 0
	for {
		n, rows, err := s.foldOnce(ctx)
		total += n
		if err != nil || rows < foldRows {
			return total, err
		}
	}
}

// foldOnce folds up to foldRows inbox rows in one transaction and reports
// how many events and inbox rows it folded.
func (s *Store) foldOnce(ctx context.Context) (int, int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: begin: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `
		DELETE FROM dashboard_inbox WHERE id IN (
			SELECT id FROM dashboard_inbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING minute, desk_id, municipality, service_code, agency, status, since_submitted_us`, foldRows)
	if err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: %w", err))
	}
	tallies := make(map[throughputKey]*tally)
	folded, n := 0, 0
	for rows.Next() {
		var (
			minute                          []time.Time
			desk, muni, svc, agency, status []string
			since                           []int64
		)
		if err := rows.Scan(&minute, &desk, &muni, &svc, &agency, &status, &since); err != nil {
			rows.Close()
			return 0, 0, classify(fmt.Errorf("fold roll-ups: %w", err))
		}
		folded++
		n += len(minute)
		for i := range minute {
			k := throughputKey{minute: minute[i], desk: desk[i], municipality: muni[i], service: svc[i], agency: agency[i], status: status[i]}
			s.tallyEvent(tallies, k, time.Duration(since[i])*time.Microsecond)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: %w", err))
	}
	if folded == 0 {
		return 0, 0, nil
	}
	if err := writeThroughput(ctx, tx, tallies); err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: %w", err))
	}
	if err := addDashboard(ctx, tx, tallies); err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: %w", err))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, classify(fmt.Errorf("fold roll-ups: commit: %w", err))
	}
	return n, folded, nil
}

// tally is what the events that share one throughput key add to the
// roll-ups: how many there are and, for completions, their times to
// completion (summed, against the service's SLA, and, for the request as a
// whole, as a histogram).
type tally struct {
	events, withinSLA, breached int64
	latency                     float64
	histogram                   *[events.LatencyBuckets]int32
}

// tallyEvent adds one event, sinceSubmitted after its request's submission,
// to the tally of its key.
func (s *Store) tallyEvent(tallies map[throughputKey]*tally, k throughputKey, sinceSubmitted time.Duration) {
	t := tallies[k]
	if t == nil {
		t = new(tally)
		tallies[k] = t
	}
	t.events++
	if events.Status(k.status) != events.StatusCompleted {
		return
	}
	t.latency += sinceSubmitted.Seconds()
	if sla, ok := s.slas[k.service]; ok && sla > 0 {
		if sinceSubmitted <= sla {
			t.withinSLA++
		} else {
			t.breached++
		}
	}
	if k.agency == "" {
		if t.histogram == nil {
			t.histogram = new([events.LatencyBuckets]int32)
		}
		t.histogram[events.LatencyBucket(sinceSubmitted)]++
	}
}

// addDashboard adds tallied events to the dashboard's roll-ups: counted in
// memory first, then written with one statement per table, rows in key
// order so that concurrent folds never deadlock. Only submissions,
// dispatches and terminal statuses count.
func addDashboard(ctx context.Context, tx pgx.Tx, tallies map[throughputKey]*tally) error {
	r := dashboardRollup{counts: make(map[countsKey]*countsRow), latency: make(map[latencyKey]*[events.LatencyBuckets]int32)}
	for k, t := range tallies {
		r.count(k, t)
	}
	if err := writeCounts(ctx, tx, r.counts); err != nil {
		return err
	}
	return writeLatency(ctx, tx, r.latency)
}

// count adds the events of one throughput key to r at every grain.
func (r *dashboardRollup) count(k throughputKey, t *tally) {
	var add countsRow
	status := events.Status(k.status)
	switch {
	case status == events.StatusSubmitted && k.agency == "",
		status == events.StatusDispatched && k.agency != "":
		add.submitted = t.events
	case status == events.StatusCompleted:
		add.completed = t.events
		add.latency = t.latency
		add.withinSLA, add.breached = t.withinSLA, t.breached
	case status == events.StatusRejected:
		add.rejected = t.events
	case status == events.StatusFailed:
		add.failed = t.events
	default:
		return
	}
	histogram := func(lk latencyKey) {
		h := r.latency[lk]
		if h == nil {
			h = new([events.LatencyBuckets]int32)
			r.latency[lk] = h
		}
		for b, n := range t.histogram {
			h[b] += n
		}
	}
	for _, g := range events.Grains {
		at := g.Truncate(k.minute)
		row := func(scope string, dim events.Dimension, key string) {
			ck := countsKey{grain: g, at: at, scope: scope, dim: string(dim), key: key}
			c := r.counts[ck]
			if c == nil {
				c = new(countsRow)
				r.counts[ck] = c
			}
			c.submitted += add.submitted
			c.completed += add.completed
			c.rejected += add.rejected
			c.failed += add.failed
			c.withinSLA += add.withinSLA
			c.breached += add.breached
			c.latency += add.latency
		}
		if k.agency != "" {
			row(k.municipality, events.DimensionAgency, k.agency)
			row("", events.DimensionAgency, k.agency)
			continue
		}
		for _, scope := range []string{k.municipality, ""} {
			row(scope, events.DimensionTotal, "")
			row(scope, events.DimensionDesk, k.desk)
			row(scope, events.DimensionService, k.service)
			if t.histogram != nil {
				histogram(latencyKey{grain: g, at: at, scope: scope, service: k.service})
				histogram(latencyKey{grain: g, at: at, scope: scope, service: ""})
			}
		}
		row("", events.DimensionMunicipality, k.municipality)
	}
}

// writeThroughput adds events to throughput_minute, a row per key with its
// count, in key order so that concurrent folds never deadlock.
func writeThroughput(ctx context.Context, tx pgx.Tx, tallies map[throughputKey]*tally) error {
	keys := slices.SortedFunc(maps.Keys(tallies), throughputKey.compare)
	n := len(keys)
	minute, desk, muni, svc, agency, status := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	count := make([]int64, n)
	for i, k := range keys {
		minute[i], desk[i], muni[i], svc[i], agency[i], status[i], count[i] = k.minute, k.desk, k.municipality, k.service, k.agency, k.status, tallies[k].events
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO throughput_minute (minute, desk_id, municipality, service_code, agency, status, events)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
		ON CONFLICT (minute, desk_id, municipality, service_code, agency, status)
		DO UPDATE SET events = throughput_minute.events + excluded.events`,
		minute, desk, muni, svc, agency, status, count)
	if err != nil {
		return fmt.Errorf("count throughput: %w", err)
	}
	return nil
}

func writeCounts(ctx context.Context, tx pgx.Tx, counts map[countsKey]*countsRow) error {
	if len(counts) == 0 {
		return nil
	}
	keys := make([]countsKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, countsKey.compare)
	n := len(keys)
	grain, scope, dim, key := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	at := make([]time.Time, n)
	cols := make([][]int64, 6)
	for i := range cols {
		cols[i] = make([]int64, n)
	}
	latency := make([]float64, n)
	for i, k := range keys {
		grain[i], at[i], scope[i], dim[i], key[i] = string(k.grain), k.at, k.scope, k.dim, k.key
		c := counts[k]
		for j, v := range []int64{c.submitted, c.completed, c.rejected, c.failed, c.withinSLA, c.breached} {
			cols[j][i] = v
		}
		latency[i] = c.latency
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO dashboard_counts AS d (grain, at, scope, dim, key,
		       submitted, completed, rejected, failed, within_sla, breached, latency_s)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
		       $6::int[], $7::int[], $8::int[], $9::int[], $10::int[], $11::int[], $12::float8[])
		ON CONFLICT (grain, scope, dim, at, key) DO UPDATE SET
		    submitted  = d.submitted + excluded.submitted,
		    completed  = d.completed + excluded.completed,
		    rejected   = d.rejected + excluded.rejected,
		    failed     = d.failed + excluded.failed,
		    within_sla = d.within_sla + excluded.within_sla,
		    breached   = d.breached + excluded.breached,
		    latency_s  = d.latency_s + excluded.latency_s`,
		grain, at, scope, dim, key, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], latency)
	if err != nil {
		return fmt.Errorf("count for the dashboard: %w", err)
	}
	return nil
}

// writeLatency adds histograms to dashboard_latency: the rows' counts travel
// as one flat array, 64 to a row, and are added bucket by bucket.
func writeLatency(ctx context.Context, tx pgx.Tx, latency map[latencyKey]*[events.LatencyBuckets]int32) error {
	if len(latency) == 0 {
		return nil
	}
	keys := make([]latencyKey, 0, len(latency))
	for k := range latency {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, latencyKey.compare)
	n := len(keys)
	grain, scope, service := make([]string, n), make([]string, n), make([]string, n)
	at := make([]time.Time, n)
	counts := make([]int32, 0, n*events.LatencyBuckets)
	for i, k := range keys {
		grain[i], at[i], scope[i], service[i] = string(k.grain), k.at, k.scope, k.service
		counts = append(counts, latency[k][:]...)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO dashboard_latency AS l (grain, at, scope, service, counts)
		SELECT r.grain, r.at, r.scope, r.service, ($5::int[])[(r.i - 1) * 64 + 1 : r.i * 64]
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[]) WITH ORDINALITY AS r(grain, at, scope, service, i)
		ORDER BY r.i
		ON CONFLICT (grain, scope, at, service) DO UPDATE SET counts = ARRAY(
		    SELECT l.counts[b] + excluded.counts[b] FROM generate_series(1, 64) AS b)`,
		grain, at, scope, service, counts)
	if err != nil {
		return fmt.Errorf("count latency for the dashboard: %w", err)
	}
	return nil
}
