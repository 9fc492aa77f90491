package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers/simagency"
)

// maxDrain is the longest a backlog may take to drain once its fault ended.
const maxDrain = 60 * time.Second

// drainMargin is how much longer than maxDrain the ledger waits before it
// counts what is still missing as lost.
const drainMargin = 30 * time.Second

// accepted is a request that got 202.
type accepted struct {
	ID      string
	Key     string
	Service string
}

// ledger compares accepted requests with Postgres and with the simulated
// agencies' journals.
type ledger struct {
	pool       *pgxpool.Pool
	journalDir string
	catalog    *events.Catalog
}

func newLedger(ctx context.Context, pgURL, journalDir string) (*ledger, error) {
	catalog, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &ledger{pool: pool, journalDir: journalDir, catalog: catalog}, nil
}

func (l *ledger) close() { l.pool.Close() }

// deadLetter is a row of dead_letters.
type deadLetter struct {
	ID         int64
	At         streamSeq
	Subject    string
	RequestID  string
	WorkItemID string
	Reason     string
	LastError  string
}

func (d deadLetter) String() string {
	return fmt.Sprintf("dead letter %d (%s #%d, %s, request %q, work item %q): %s: %s",
		d.ID, d.At.Stream, d.At.Seq, d.Subject, d.RequestID, d.WorkItemID, d.Reason, truncate(d.LastError, 200))
}

// look is what the ledger sees of a set of requests at one moment.
type look struct {
	// Settled: every request reached completed, rejected or failed, every
	// work item not failed was applied by its agency, and every expected
	// poison message was dead-lettered.
	Settled bool
	// Pending says what keeps the look from being settled.
	Pending string
	// Lost are the requests not completed or rejected, or with a work item
	// its agency never applied, with the reason.
	Lost []string
	// Twice are work items applied more than once, requests answered with
	// two IDs and repeated timeline entries.
	Twice []string
	// DeadLettered are the dead letters of these requests.
	DeadLettered []deadLetter
	// Poison counts the dead letters of the expected poison messages.
	Poison int
	// Problems are other inconsistencies between Postgres and the journals.
	Problems []string
}

// look reads Postgres and the journals for reqs; poison, when not empty,
// lists poison messages that must be dead-lettered.
func (l *ledger) look(ctx context.Context, reqs []accepted, poison map[streamSeq]bool) (look, error) {
	var lk look
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}

	status := make(map[string]string, len(reqs))
	rows, err := l.pool.Query(ctx, `SELECT id, status FROM requests WHERE id = ANY($1)`, ids)
	if err != nil {
		return lk, fmt.Errorf("ledger: read requests: %w", err)
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			rows.Close()
			return lk, fmt.Errorf("ledger: read requests: %w", err)
		}
		status[id] = st
	}
	if err := rows.Err(); err != nil {
		return lk, fmt.Errorf("ledger: read requests: %w", err)
	}

	items := make(map[string]string) // work item ID → status
	rows, err = l.pool.Query(ctx, `SELECT request_id, agency, status FROM work_items WHERE request_id = ANY($1)`, ids)
	if err != nil {
		return lk, fmt.Errorf("ledger: read work items: %w", err)
	}
	for rows.Next() {
		var req, agency, st string
		if err := rows.Scan(&req, &agency, &st); err != nil {
			rows.Close()
			return lk, fmt.Errorf("ledger: read work items: %w", err)
		}
		items[events.WorkItemID(req, agency)] = st
	}
	if err := rows.Err(); err != nil {
		return lk, fmt.Errorf("ledger: read work items: %w", err)
	}

	rows, err = l.pool.Query(ctx, `
		SELECT request_id, agency, status, count(*) FROM timeline WHERE request_id = ANY($1)
		GROUP BY request_id, agency, status HAVING count(*) > 1`, ids)
	if err != nil {
		return lk, fmt.Errorf("ledger: read timeline: %w", err)
	}
	for rows.Next() {
		var req, agency, st string
		var n int
		if err := rows.Scan(&req, &agency, &st, &n); err != nil {
			rows.Close()
			return lk, fmt.Errorf("ledger: read timeline: %w", err)
		}
		lk.Twice = append(lk.Twice, fmt.Sprintf("request %s: %q event of agency %q recorded %d times in the timeline", req, st, agency, n))
	}
	if err := rows.Err(); err != nil {
		return lk, fmt.Errorf("ledger: read timeline: %w", err)
	}

	dead, err := l.deadLetters(ctx)
	if err != nil {
		return lk, err
	}
	mine := make(map[string]bool, len(reqs))
	for _, id := range ids {
		mine[id] = true
	}
	for _, d := range dead {
		req := d.RequestID
		if req == "" {
			req, _, _ = strings.Cut(d.WorkItemID, ".")
		}
		if mine[req] && !poison[d.At] {
			lk.DeadLettered = append(lk.DeadLettered, d)
		}
		if poison[d.At] {
			lk.Poison++
		}
	}

	journals, err := simagency.ReadJournals(l.journalDir)
	if err != nil {
		return lk, fmt.Errorf("ledger: %w", err)
	}
	applied := make(map[string]simagency.KeyLog) // work item ID → its journal record
	for agency, log := range journals {
		for key, k := range log {
			req, a, _ := strings.Cut(key, ".")
			if a != agency {
				lk.Problems = append(lk.Problems, fmt.Sprintf("agency %s journalled work item %s, which names another agency", agency, key))
			}
			if mine[req] {
				applied[key] = k
			}
		}
	}

	var notTerminal, unapplied, failed int
	expected := make(map[string]bool)
	for _, r := range reqs {
		svc, ok := l.catalog.Service(r.Service)
		if !ok {
			return lk, fmt.Errorf("ledger: unknown service %q", r.Service)
		}
		st, found := status[r.ID]
		reasons := []string{}
		switch {
		case !found:
			reasons = append(reasons, "no row in requests")
			notTerminal++
		case st == string(events.StatusFailed):
			reasons = append(reasons, "status failed")
			failed++
		case st != string(events.StatusCompleted) && st != string(events.StatusRejected):
			reasons = append(reasons, "status "+st)
			notTerminal++
		}
		for _, agency := range svc.Agencies {
			key := events.WorkItemID(r.ID, agency)
			expected[key] = true
			k := applied[key]
			itemStatus, hasItem := items[key]
			switch {
			case k.Applied == 0 && itemStatus == string(events.StatusFailed):
				reasons = append(reasons, "work item "+agency+" failed")
			case k.Applied == 0:
				reasons = append(reasons, "work item "+agency+" never applied by the agency")
				unapplied++
			case k.Applied > 1:
				lk.Twice = append(lk.Twice, fmt.Sprintf("work item %s applied %d times by %s", key, k.Applied, agency))
			}
			if found && st != "" && events.Status(st).Terminal() {
				switch {
				case !hasItem:
					lk.Problems = append(lk.Problems, fmt.Sprintf("request %s is %s without a work_items row for %s", r.ID, st, agency))
				case k.Applied > 0 && itemStatus != string(k.Status):
					lk.Problems = append(lk.Problems, fmt.Sprintf("work item %s is %s in Postgres but %s in the agency's journal", key, itemStatus, k.Status))
				}
			}
		}
		if len(reasons) > 0 {
			lk.Lost = append(lk.Lost, fmt.Sprintf("request %s (%s, key %s): %s", r.ID, r.Service, r.Key, strings.Join(reasons, "; ")))
		}
	}
	for key := range items {
		if !expected[key] {
			lk.Problems = append(lk.Problems, fmt.Sprintf("work_items has %s, which the request's service does not route to", key))
		}
	}
	for key := range applied {
		if !expected[key] {
			lk.Twice = append(lk.Twice, fmt.Sprintf("agency journal applied %s, which is no work item of the request", key))
		}
	}
	slices.Sort(lk.Lost)
	slices.Sort(lk.Problems)

	var pending []string
	if notTerminal > 0 {
		pending = append(pending, fmt.Sprintf("%d of %d requests not terminal", notTerminal, len(reqs)))
	}
	if unapplied > 0 {
		pending = append(pending, fmt.Sprintf("%d work items not applied", unapplied))
	}
	if len(poison) > 0 && lk.Poison < len(poison) {
		pending = append(pending, fmt.Sprintf("%d of %d poison messages dead-lettered", lk.Poison, len(poison)))
	}
	lk.Settled = len(pending) == 0
	lk.Pending = strings.Join(pending, ", ")
	return lk, nil
}

// deadLetters reads every dead letter.
func (l *ledger) deadLetters(ctx context.Context) ([]deadLetter, error) {
	rows, err := l.pool.Query(ctx, `
		SELECT id, stream, stream_seq, subject, coalesce(request_id, ''), coalesce(work_item_id, ''), reason, last_error
		FROM dead_letters ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("ledger: read dead letters: %w", err)
	}
	defer rows.Close()
	var out []deadLetter
	for rows.Next() {
		var d deadLetter
		var seq int64
		if err := rows.Scan(&d.ID, &d.At.Stream, &seq, &d.Subject, &d.RequestID, &d.WorkItemID, &d.Reason, &d.LastError); err != nil {
			return nil, fmt.Errorf("ledger: read dead letters: %w", err)
		}
		d.At.Seq = uint64(seq)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: read dead letters: %w", err)
	}
	return out, nil
}

// drain polls until reqs are settled or the deadline passes, and returns
// the last look and when it was settled (zero if never).
func (l *ledger) drain(ctx context.Context, reqs []accepted, poison map[streamSeq]bool, deadline time.Time) (look, time.Time, error) {
	var lk look
	var lastErr error
	for {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		lk, err = l.look(lctx, reqs, poison)
		cancel()
		now := time.Now()
		switch {
		case err == nil && lk.Settled:
			return lk, now, nil
		case err != nil:
			lastErr = err
		default:
			lastErr = nil
		}
		if now.After(deadline) {
			if lastErr != nil {
				return lk, time.Time{}, lastErr
			}
			return lk, time.Time{}, nil
		}
		if !sleepUntil(ctx, now.Add(250*time.Millisecond)) {
			return lk, time.Time{}, ctx.Err()
		}
	}
}

// whole checks the database as a whole once every scenario has run: every
// request in it was accepted (nothing created by a duplicate or a 409),
// every dead letter is one of the poison messages and each of those was
// dead-lettered once, and the roll-ups count each timeline event once. It
// returns problems and notes.
func (l *ledger) whole(ctx context.Context, all []accepted, keys int, poison map[streamSeq]bool) (problems, notes []string, err error) {
	ids := make([]string, len(all))
	for i, r := range all {
		ids[i] = r.ID
	}
	var phantom []string
	rows, err := l.pool.Query(ctx, `SELECT id, service_code, status FROM requests WHERE NOT (id = ANY($1)) ORDER BY id LIMIT 20`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: read requests: %w", err)
	}
	for rows.Next() {
		var id, svc, st string
		if err := rows.Scan(&id, &svc, &st); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("ledger: read requests: %w", err)
		}
		phantom = append(phantom, fmt.Sprintf("%s (%s, %s)", id, svc, st))
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("ledger: read requests: %w", err)
	}
	if len(phantom) > 0 {
		problems = append(problems, "requests in Postgres that no desk got a 202 for: "+strings.Join(phantom, ", "))
	}

	var nKeys, unpublished, redriven int
	if err := l.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE published_at IS NULL), count(*) FILTER (WHERE redrives > 0)
		FROM intake_keys`).Scan(&nKeys, &unpublished, &redriven); err != nil {
		return nil, nil, fmt.Errorf("ledger: read intake keys: %w", err)
	}
	if nKeys != keys {
		problems = append(problems, fmt.Sprintf("intake_keys holds %d keys; desks got 202 for %d", nKeys, keys))
	}
	if unpublished > 0 {
		notes = append(notes, fmt.Sprintf("%d accepted requests have no published_at in intake_keys (202 given, but not marked published: the reconciler cannot re-drive them)", unpublished))
	}
	if redriven > 0 {
		notes = append(notes, fmt.Sprintf("the reconciler re-drove %d requests", redriven))
	}

	dead, err := l.deadLetters(ctx)
	if err != nil {
		return nil, nil, err
	}
	seen := make(map[streamSeq]int)
	for _, d := range dead {
		seen[d.At]++
		if !poison[d.At] {
			problems = append(problems, "unexpected "+d.String())
		}
	}
	missing := 0
	for at := range poison {
		switch seen[at] {
		case 0:
			missing++
		case 1:
		default:
			problems = append(problems, fmt.Sprintf("poison message %s #%d dead-lettered %d times", at.Stream, at.Seq, seen[at]))
		}
	}
	if missing > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d poison messages were not dead-lettered", missing, len(poison)))
	}

	// The projectors' folders add the projected events to the roll-ups every
	// few seconds.
	if waiting, err := l.foldedWithin(ctx, 30*time.Second); err != nil {
		return nil, nil, err
	} else if waiting > 0 {
		problems = append(problems, fmt.Sprintf("%d projector batches still wait to be added to the roll-ups after 30s", waiting))
	}
	var timeline, counted int64
	if err := l.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM timeline), (SELECT coalesce(sum(events), 0) FROM throughput_minute)`).
		Scan(&timeline, &counted); err != nil {
		return nil, nil, fmt.Errorf("ledger: read roll-ups: %w", err)
	}
	if timeline != counted {
		problems = append(problems, fmt.Sprintf("throughput_minute counts %d events but the timeline holds %d", counted, timeline))
	}
	return problems, notes, nil
}

// foldedWithin waits up to limit for the roll-ups' inbox to empty and
// returns how many rows are left in it.
func (l *ledger) foldedWithin(ctx context.Context, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		var waiting int
		if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM dashboard_inbox`).Scan(&waiting); err != nil {
			return 0, fmt.Errorf("ledger: read the roll-ups' inbox: %w", err)
		}
		if waiting == 0 || time.Now().After(deadline) {
			return waiting, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// journalTotals sums what the agencies' journals recorded.
func (l *ledger) journalTotals() (applied, duplicates int, err error) {
	journals, err := simagency.ReadJournals(l.journalDir)
	if err != nil {
		return 0, 0, err
	}
	for _, log := range journals {
		applied += log.Applied()
		duplicates += log.Duplicates()
	}
	return applied, duplicates, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
