package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// MonthlyServiceTallies reads what happened to the requests of each service
// at the desks of each municipality in each calendar month, months taken in
// UTC, from the start of from's month up to (not including) the start of
// to's; a zero from reads from the first month there is. It calls each once
// per month, municipality and service that saw a submission or an outcome,
// ordered by month, then municipality, then service code (bytewise), with
// the month's start (UTC), the municipality, the tally keyed by the service
// code and the histogram of the month's completions by time from
// submission.
//
// It reads the dashboard's day roll-ups alone (day rows are never pruned),
// summed into months by Postgres: never a request, a desk or a person, and
// no total across municipalities or services. Submissions count in the
// month they were made, outcomes in the month they happened. An error from
// each stops the reading and is returned wrapped.
func (s *Store) MonthlyServiceTallies(ctx context.Context, from, to time.Time,
	each func(month time.Time, municipality string, t events.Tally, h *events.Histogram) error) error {
	from, to = monthStart(from), monthStart(to)
	if !from.Before(to) {
		return nil
	}
	// Day buckets start at midnight UTC, so each lies within one UTC month.
	// Histograms are summed bucket by bucket, 64 sums in one pass over the
	// rows: many times faster than unnesting every array.
	sums := make([]string, events.LatencyBuckets)
	for i := range sums {
		sums[i] = fmt.Sprintf("sum(counts[%d])", i+1)
	}
	rows, err := s.pool.Query(ctx, `
		WITH tallies AS (
			SELECT date_trunc('month', at AT TIME ZONE 'UTC') AS month, scope, key AS service,
			       sum(submitted) AS submitted, sum(completed) AS completed, sum(rejected) AS rejected,
			       sum(failed) AS failed, sum(within_sla) AS within_sla, sum(breached) AS breached,
			       round(sum(latency_s) * 1000)::bigint AS latency_ms
			FROM dashboard_counts
			WHERE grain = 'day' AND scope <> '' AND dim = 'service' AND at >= $1 AND at < $2
			GROUP BY 1, 2, 3),
		histograms AS (
			SELECT date_trunc('month', at AT TIME ZONE 'UTC') AS month, scope, service,
			       ARRAY[`+strings.Join(sums, ", ")+`] AS counts
			FROM dashboard_latency
			WHERE grain = 'day' AND scope <> '' AND service <> '' AND at >= $1 AND at < $2
			GROUP BY 1, 2, 3)
		SELECT t.month, t.scope, t.service, t.submitted, t.completed, t.rejected, t.failed,
		       t.within_sla, t.breached, t.latency_ms, coalesce(h.counts, '{}')
		FROM tallies t LEFT JOIN histograms h USING (month, scope, service)
		ORDER BY t.month, t.scope COLLATE "C", t.service COLLATE "C"`, from, to)
	if err != nil {
		return fmt.Errorf("read monthly tallies: %w", err)
	}
	var (
		month        time.Time
		municipality string
		t            events.Tally
		counts       []int64
	)
	_, err = pgx.ForEachRow(rows, []any{&month, &municipality, &t.Key, &t.Submitted, &t.Completed, &t.Rejected,
		&t.Failed, &t.WithinSLA, &t.Breached, &t.LatencyMillis, &counts}, func() error {
		h := new(events.Histogram)
		copy(h[:], counts)
		return each(month.UTC(), municipality, t, h)
	})
	if err != nil {
		return fmt.Errorf("read monthly tallies: %w", err)
	}
	return nil
}

// monthStart is the start, in UTC, of the calendar month of t in UTC; the
// zero time stays zero.
func monthStart(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
