package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// Project applies changes in one transaction, each change in a savepoint of
// its own, and returns one error per change: nil when it was applied or had
// been applied before. A change that fails is rolled back alone; if the
// transaction cannot commit, every change gets the commit's error.
//
// Applying is idempotent: each event's ID is recorded in the timeline in the
// same transaction as its effects, and an event seen before changes nothing.
// A status only replaces one it outranks, so reordered events never move a
// work item backwards.
//
// Throughput roll-ups are counted in memory and written last, in key order:
// every event of a minute lands in the same few rows, and taking them in the
// order of each batch's requests would let concurrent projectors deadlock.
//
// A batch is first applied as a whole, without savepoints, which saves two
// round trips per change; only if a change fails is the batch applied again
// with a savepoint per change, so that the failure stays alone.
func (s *Store) Project(ctx context.Context, changes []events.Change) []error {
	// Lock requests in a stable order to keep concurrent projectors from
	// deadlocking; a stable sort keeps each request's events in order.
	order := make([]int, len(changes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(changes[a].RequestID(), changes[b].RequestID())
	})
	if errs, ok := s.project(ctx, changes, order, false); ok {
		return errs
	}
	errs, _ := s.project(ctx, changes, order, true)
	return errs
}

// project applies changes in one transaction, in order. Without savepoints
// it gives up at the first failing change and reports ok false; with them,
// each failure is rolled back alone.
func (s *Store) project(ctx context.Context, changes []events.Change, order []int, savepoints bool) (errs []error, ok bool) {
	errs = make([]error, len(changes))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fill(errs, fmt.Errorf("project: begin: %w", err)), true
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	counts := make(map[throughputKey]int64)
	var dashboard []countedEvent
	for _, i := range order {
		var counted []countedEvent
		if savepoints {
			errs[i] = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				return s.apply(ctx, sp, changes[i], &counted)
			})
		} else {
			errs[i] = s.apply(ctx, tx, changes[i], &counted)
		}
		if errs[i] != nil && ctx.Err() != nil {
			return fill(errs, fmt.Errorf("project: %w", ctx.Err())), true
		}
		if errs[i] != nil && !savepoints {
			return nil, false
		}
		if errs[i] == nil {
			for _, c := range counted {
				counts[c.throughputKey]++
			}
			dashboard = append(dashboard, counted...)
		}
	}
	if err := addThroughput(ctx, tx, counts); err != nil {
		return fill(errs, fmt.Errorf("project: %w", err)), true
	}
	if err := s.addDashboard(ctx, tx, dashboard); err != nil {
		return fill(errs, fmt.Errorf("project: %w", err)), true
	}
	if err := tx.Commit(ctx); err != nil {
		return fill(errs, fmt.Errorf("project: commit: %w", err)), true
	}
	for i := range errs {
		errs[i] = classify(errs[i])
	}
	return errs, true
}

func fill(errs []error, err error) []error {
	err = classify(err)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// requestRow is what applying an event needs of its request.
type requestRow struct {
	id, desk, municipality, service string
	status                          events.Status
	round                           int
	submittedAt                     time.Time
	// counted collects the roll-up buckets of the events recorded.
	counted *[]countedEvent
}

// throughputKey is one row of throughput_minute.
type throughputKey struct {
	minute                                      time.Time
	desk, municipality, service, agency, status string
}

func (k throughputKey) compare(o throughputKey) int {
	return cmp.Or(k.minute.Compare(o.minute), cmp.Compare(k.desk, o.desk),
		cmp.Compare(k.municipality, o.municipality), cmp.Compare(k.service, o.service),
		cmp.Compare(k.agency, o.agency), cmp.Compare(k.status, o.status))
}

// addThroughput adds counts to the roll-ups, taking their rows in key order.
func addThroughput(ctx context.Context, tx pgx.Tx, counts map[throughputKey]int64) error {
	if len(counts) == 0 {
		return nil
	}
	keys := make([]throughputKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, throughputKey.compare)
	var b pgx.Batch
	for _, k := range keys {
		b.Queue(`
			INSERT INTO throughput_minute (minute, desk_id, municipality, service_code, agency, status, events)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (minute, desk_id, municipality, service_code, agency, status)
			DO UPDATE SET events = throughput_minute.events + excluded.events`,
			k.minute, k.desk, k.municipality, k.service, k.agency, k.status, counts[k])
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	return nil
}

func (s *Store) apply(ctx context.Context, tx pgx.Tx, c events.Change, counted *[]countedEvent) error {
	if r := c.Request; r != nil {
		_, err := tx.Exec(ctx, `
			INSERT INTO requests (id, desk_id, municipality, service_code, visit_id, mediator,
			                      citizen_ref, status, submitted_at, updated_at)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, $8, $9, $9)
			ON CONFLICT (id) DO NOTHING`,
			r.ID, r.DeskID, r.Municipality, r.ServiceCode, r.VisitID, r.Mediator,
			s.keyedHash([]byte(r.Citizen.NationalID)), events.StatusSubmitted, r.SubmittedAt)
		if err != nil {
			return fmt.Errorf("insert request: %w", err)
		}
		ev := r.SubmittedEvent()
		c.Event = &ev
	}
	ev := c.Event
	if ev == nil {
		return events.Permanent(errors.New("project: empty change"))
	}
	if !ev.Status.Valid() {
		return events.Permanent(fmt.Errorf("project: event %s has unknown status %q", ev.ID, ev.Status))
	}
	req := requestRow{counted: counted}
	err := tx.QueryRow(ctx, `
		SELECT id, desk_id, municipality, service_code, status, round, submitted_at FROM requests
		WHERE id = $1 FOR UPDATE`, ev.RequestID).
		Scan(&req.id, &req.desk, &req.municipality, &req.service, &req.status, &req.round, &req.submittedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("project event %s: %w", ev.ID, events.ErrUnknownRequest)
	}
	if err != nil {
		return fmt.Errorf("lock request: %w", err)
	}
	var items []workItemRow
	if ev.Agency != "" {
		if items, err = readWorkItems(ctx, tx, req.id); err != nil {
			return err
		}
		if !slices.ContainsFunc(items, func(w workItemRow) bool { return w.agency == ev.Agency }) {
			return fmt.Errorf("project event %s: agency %s: %w", ev.ID, ev.Agency, events.ErrUnknownRequest)
		}
	}
	fresh, err := s.record(ctx, tx, &req, ev.ID, ev.Agency, ev.Status, ev.At, ev.Actor, ev.Note)
	if err != nil || !fresh {
		return err
	}
	if ev.Agency == "" {
		return s.applyRequestEvent(ctx, tx, &req, ev)
	}
	return s.applyWorkItemEvent(ctx, tx, &req, ev, items)
}

// workItemRow is what applying an event needs of a work item.
type workItemRow struct {
	agency string
	status events.Status
	round  int
}

func readWorkItems(ctx context.Context, tx pgx.Tx, requestID string) ([]workItemRow, error) {
	rows, err := tx.Query(ctx, `SELECT agency, status, round FROM work_items WHERE request_id = $1`, requestID)
	if err != nil {
		return nil, fmt.Errorf("read work items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (workItemRow, error) {
		var w workItemRow
		err := r.Scan(&w.agency, &w.status, &w.round)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("read work items: %w", err)
	}
	return items, nil
}

// record adds an event to the timeline, counts it for the roll-ups, and
// reports whether it was new.
func (s *Store) record(ctx context.Context, tx pgx.Tx, req *requestRow, id, agency string,
	status events.Status, at time.Time, actor, note string) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO timeline (event_id, request_id, agency, status, at, actor, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (event_id) DO NOTHING`,
		id, req.id, agency, status, at, actor, note)
	if err != nil {
		return false, fmt.Errorf("record event: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	*req.counted = append(*req.counted, countedEvent{throughputKey: throughputKey{
		minute: at.UTC().Truncate(time.Minute),
		desk:   req.desk, municipality: req.municipality, service: req.service,
		agency: agency, status: string(status),
	}, sinceSubmitted: at.Sub(req.submittedAt)})
	return true, nil
}

func (s *Store) applyRequestEvent(ctx context.Context, tx pgx.Tx, req *requestRow, ev *events.StatusEvent) error {
	if ev.Status == events.StatusRouted {
		if len(ev.Agencies) == 0 {
			return events.Permanent(fmt.Errorf("project event %s: routed to no agency", ev.ID))
		}
		// A routed event of a newer round (a replayed request) starts its
		// work items over.
		for _, a := range ev.Agencies {
			_, err := tx.Exec(ctx, `
				INSERT INTO work_items (request_id, agency, status, updated_at, round)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (request_id, agency) DO UPDATE
				SET status = excluded.status, round = excluded.round, updated_at = greatest(work_items.updated_at, excluded.updated_at)
				WHERE work_items.round < excluded.round`,
				req.id, a, events.StatusRouted, ev.At, ev.Round)
			if err != nil {
				return fmt.Errorf("insert work item: %w", err)
			}
		}
	}
	switch {
	case ev.Round > req.round:
		_, err := tx.Exec(ctx, `UPDATE requests SET round = $2 WHERE id = $1`, req.id, ev.Round)
		if err != nil {
			return fmt.Errorf("update request: %w", err)
		}
		req.round = ev.Round
	case ev.Round < req.round || ev.Status.Rank() <= req.status.Rank():
		return touch(ctx, tx, req.id, ev.At)
	}
	return s.setRequestStatus(ctx, tx, req, ev.Status, ev.At, ev.Note, ev.Round)
}

// applyWorkItemEvent applies ev to its work item, one of items (read under
// the request's lock), and moves the request to what its work items add up
// to.
func (s *Store) applyWorkItemEvent(ctx context.Context, tx pgx.Tx, req *requestRow, ev *events.StatusEvent, items []workItemRow) error {
	statuses := make([]events.Status, len(items))
	round := req.round
	for i := range items {
		w := &items[i]
		// An event of a newer round supersedes whatever the work item
		// reached; within a round, a status only replaces one it outranks.
		if w.agency == ev.Agency && (ev.Round > w.round || (ev.Round == w.round && ev.Status.Rank() > w.status.Rank())) {
			_, err := tx.Exec(ctx, `
				UPDATE work_items SET status = $3, round = $4, updated_at = greatest(updated_at, $5)
				WHERE request_id = $1 AND agency = $2`,
				req.id, ev.Agency, ev.Status, ev.Round, ev.At)
			if err != nil {
				return fmt.Errorf("update work item: %w", err)
			}
			w.status, w.round = ev.Status, ev.Round
		}
		statuses[i] = w.status
		round = max(round, w.round)
	}
	agg := events.Aggregate(statuses)
	if agg == req.status {
		return touch(ctx, tx, req.id, ev.At)
	}
	return s.setRequestStatus(ctx, tx, req, agg, ev.At, "", round)
}

// setRequestStatus moves the request to status; reaching a terminal status
// is itself an event of the request's timeline.
// The round names that event, so a request that fails again after a replay
// shows both failures.
func (s *Store) setRequestStatus(ctx context.Context, tx pgx.Tx, req *requestRow, status events.Status, at time.Time, note string, round int) error {
	_, err := tx.Exec(ctx, `
		UPDATE requests SET status = $2, updated_at = greatest(updated_at, $3) WHERE id = $1`,
		req.id, status, at)
	if err != nil {
		return fmt.Errorf("update request: %w", err)
	}
	req.status = status
	if status.Terminal() {
		_, err = s.record(ctx, tx, req, events.RoundEventID(req.id, "", status, round), "", status, at, "spotflow", note)
	}
	return err
}

func touch(ctx context.Context, tx pgx.Tx, id string, at time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE requests SET updated_at = greatest(updated_at, $2) WHERE id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("update request: %w", err)
	}
	return nil
}

// rankCases is the SQL counterpart of events.Status.Rank.
var rankCases = func() string {
	s := ""
	for _, st := range events.Statuses {
		s += fmt.Sprintf("WHEN '%s' THEN %d ", st, st.Rank())
	}
	return s
}()
