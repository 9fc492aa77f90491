package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// Project applies changes in one transaction and returns one error per
// change: nil when it was applied or had been applied before.
//
// The batch is applied as a set: one pipelined round trip locks its requests
// and reads their work items and the events already recorded, the new state
// is worked out in memory, and a second round trip writes it back, a single
// statement per table whatever the size of the batch. Changes that cannot be
// applied (an unknown request or agency, an event without a status) get
// their own error and change nothing. If the database refuses the batch as a
// whole, it is split in halves and each applied alone, down to the one change
// at fault; an outage fails every change with an events.ErrUnavailable.
//
// Applying is idempotent: each event's ID is recorded in the timeline in the
// same transaction as its effects, and an event seen before changes nothing.
// A status only replaces one it outranks, so reordered events never move a
// work item backwards. Requests are locked in ID order, so concurrent
// projectors do not deadlock.
func (s *Store) Project(ctx context.Context, changes []events.Change) []error {
	if len(changes) == 0 {
		return nil
	}
	errs, err := s.projectSet(ctx, changes)
	if err == nil {
		return errs
	}
	if len(changes) == 1 || errors.Is(err, events.ErrUnavailable) || ctx.Err() != nil {
		return fill(make([]error, len(changes)), err)
	}
	half := len(changes) / 2
	return append(s.Project(ctx, changes[:half]), s.Project(ctx, changes[half:])...)
}

func fill(errs []error, err error) []error {
	err = classify(err)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// requestState is a request as the batch finds and leaves it.
type requestState struct {
	desk, municipality, service string
	submittedAt                 time.Time
	status                      events.Status
	round                       int
	// training marks a request made in training mode: counted nowhere.
	training bool
	items    []workItemState
	// at is the latest event time seen; dirty marks a request to write back.
	at    time.Time
	dirty bool
}

// workItemState is a work item as the batch finds and leaves it.
type workItemState struct {
	agency string
	status events.Status
	round  int
	at     time.Time
	dirty  bool
}

// timelineRow is an event to record.
type timelineRow struct {
	id, requestID, agency string
	status                events.Status
	at                    time.Time
	actor, note           string
}

// batch is one Project call worked out in memory.
type batch struct {
	requests map[string]*requestState
	seen     map[string]bool
	timeline []timelineRow
}

func (s *Store) projectSet(ctx context.Context, changes []events.Change) ([]error, error) {
	errs := make([]error, len(changes))
	evs := make([]*events.StatusEvent, len(changes))
	var ids, eventIDs []string
	inserts := make(map[string]*events.Request)
	for i, c := range changes {
		ev, err := eventOf(c)
		if err != nil {
			errs[i] = err
			continue
		}
		evs[i] = ev
		ids = append(ids, ev.RequestID)
		eventIDs = append(eventIDs, ev.ID)
		eventIDs = append(eventIDs, rivals(ev)...)
		if c.Request != nil {
			inserts[c.Request.ID] = c.Request
		}
	}
	if len(ids) == 0 {
		return errs, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("project: begin: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b, err := s.load(ctx, tx, ids, eventIDs, inserts)
	if err != nil {
		return nil, classify(err)
	}
	for i, ev := range evs {
		if ev != nil {
			errs[i] = b.apply(ev)
		}
	}
	if err := b.store(ctx, tx, b.counted()); err != nil {
		return nil, classify(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, classify(fmt.Errorf("project: commit: %w", err))
	}
	return errs, nil
}

// eventOf is the status event a change stands for.
func eventOf(c events.Change) (*events.StatusEvent, error) {
	ev := c.Event
	if c.Request != nil {
		sub := c.Request.SubmittedEvent()
		ev = &sub
	}
	if ev == nil {
		return nil, events.Permanent(errors.New("project: empty change"))
	}
	if !ev.Status.Valid() {
		return nil, events.Permanent(fmt.Errorf("project: event %s has unknown status %q", ev.ID, ev.Status))
	}
	if ev.Agency == "" && ev.Status == events.StatusRouted && len(ev.Agencies) == 0 {
		return nil, events.Permanent(fmt.Errorf("project event %s: routed to no agency", ev.ID))
	}
	return ev, nil
}

// load inserts the batch's new requests, then locks every request of the
// batch and reads its work items and which of the batch's events are already
// recorded, in one round trip. Reading after the lock means a concurrent
// projector's events on the same requests are seen once it commits.
func (s *Store) load(ctx context.Context, tx pgx.Tx, ids, eventIDs []string, inserts map[string]*events.Request) (*batch, error) {
	var q pgx.Batch
	if len(inserts) > 0 {
		n := len(inserts)
		var (
			rid, desk, muni, svc, visit, mediator = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
			refs                                  = make([][]byte, 0, n)
			submitted                             = make([]time.Time, 0, n)
			// NULL for a request without consent.
			consent  = make([]*events.ConsentGiven, 0, n)
			training = make([]bool, 0, n)
		)
		for _, id := range slices.Sorted(maps.Keys(inserts)) {
			r := inserts[id]
			rid, desk, muni, svc = append(rid, r.ID), append(desk, r.DeskID), append(muni, r.Municipality), append(svc, r.ServiceCode)
			visit, mediator = append(visit, r.VisitID), append(mediator, r.Mediator)
			consent, training = append(consent, r.Consent), append(training, r.Practice != nil)
			refs = append(refs, s.keyedHash([]byte(r.Citizen.NationalID)))
			submitted = append(submitted, r.SubmittedAt)
		}
		q.Queue(`
			INSERT INTO requests (id, desk_id, municipality, service_code, visit_id, mediator,
			                      citizen_ref, status, submitted_at, updated_at, consent, training)
			SELECT id, desk, muni, svc, NULLIF(visit, ''), NULLIF(mediator, ''), ref, $9, at, at, consent, training
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::timestamptz[], $10::jsonb[], $11::bool[])
			     AS t(id, desk, muni, svc, visit, mediator, ref, at, consent, training)
			ORDER BY id
			ON CONFLICT (id) DO NOTHING`,
			rid, desk, muni, svc, visit, mediator, refs, submitted, events.StatusSubmitted, consent, training)
	}
	b := &batch{requests: make(map[string]*requestState, len(ids)), seen: make(map[string]bool)}
	q.Queue(`
		SELECT id, desk_id, municipality, service_code, submitted_at, status, round, training FROM requests
		WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				r := &requestState{}
				if err := rows.Scan(&id, &r.desk, &r.municipality, &r.service, &r.submittedAt, &r.status, &r.round, &r.training); err != nil {
					return err
				}
				b.requests[id] = r
			}
			return rows.Err()
		})
	q.Queue(`SELECT request_id, agency, status, round, updated_at FROM work_items WHERE request_id = ANY($1) ORDER BY request_id, agency`, ids).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var w workItemState
				if err := rows.Scan(&id, &w.agency, &w.status, &w.round, &w.at); err != nil {
					return err
				}
				if r := b.requests[id]; r != nil {
					r.items = append(r.items, w)
				}
			}
			return rows.Err()
		})
	q.Queue(`SELECT event_id FROM timeline WHERE event_id = ANY($1)`, eventIDs).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				b.seen[id] = true
			}
			return rows.Err()
		})
	if err := tx.SendBatch(ctx, &q).Close(); err != nil {
		return nil, fmt.Errorf("project: load requests: %w", err)
	}
	return b, nil
}

// apply works out in memory what ev does to its request.
func (b *batch) apply(ev *events.StatusEvent) error {
	req := b.requests[ev.RequestID]
	if req == nil {
		return fmt.Errorf("project event %s: %w", ev.ID, events.ErrUnknownRequest)
	}
	if ev.Agency != "" && !slices.ContainsFunc(req.items, func(w workItemState) bool { return w.agency == ev.Agency }) {
		return fmt.Errorf("project event %s: agency %s: %w", ev.ID, ev.Agency, events.ErrUnknownRequest)
	}
	if b.seen[ev.ID] {
		return nil // applied before
	}
	if err := b.check(req, ev); err != nil {
		return err
	}
	b.record(ev.ID, ev.RequestID, ev.Agency, ev.Status, ev.At, ev.Actor, ev.Note)
	req.dirty = true
	if ev.At.After(req.at) {
		req.at = ev.At
	}
	if ev.Agency == "" {
		b.applyRequestEvent(req, ev)
	} else {
		b.applyWorkItemEvent(req, ev)
	}
	return nil
}

// check refuses a work item's event that breaks a rule only the projection
// can judge: a practice event of a real request, or an agency's event of a
// training request (which no agency was given); an event of a round no
// replay opened (only the replay's routed event opens one); or one that
// would move the work item from one terminal status to another within a
// round (a rival terminal event of that round is recorded already: see
// rivals).
func (b *batch) check(req *requestState, ev *events.StatusEvent) error {
	if ev.Agency == "" {
		return nil
	}
	if ev.Practice != req.training {
		return events.Refuse(events.RuleSource, "event %s (practice %t) of a request made with training mode %t", ev.ID, ev.Practice, req.training)
	}
	i := slices.IndexFunc(req.items, func(w workItemState) bool { return w.agency == ev.Agency })
	if ev.Status != events.StatusRouted && ev.Round > req.items[i].round {
		return fmt.Errorf("project event %s: round %d of %s's work item: %w", ev.ID, ev.Round, ev.Agency, events.ErrRoundNotOpened)
	}
	for _, rival := range rivals(ev) {
		if b.seen[rival] {
			return events.Refuse(events.RuleTerminal, "event %s: the work item already ended otherwise in round %d (%s)", ev.ID, ev.Round, rival)
		}
	}
	return nil
}

// rivals are the IDs of the events that would end ev's work item otherwise
// in ev's round, when ev ends it: no two of them may both be recorded.
func rivals(ev *events.StatusEvent) []string {
	if ev.Agency == "" || !ev.Status.Terminal() {
		return nil
	}
	var ids []string
	for _, st := range events.Statuses {
		if st.Terminal() && st != ev.Status {
			ids = append(ids, events.RoundEventID(ev.RequestID, ev.Agency, st, ev.Round))
		}
	}
	return ids
}

// record adds an event to the timeline unless it is there already, and
// reports whether it was new.
func (b *batch) record(id, requestID, agency string, status events.Status, at time.Time, actor, note string) bool {
	if b.seen[id] {
		return false
	}
	b.seen[id] = true
	b.timeline = append(b.timeline, timelineRow{id: id, requestID: requestID, agency: agency, status: status, at: at, actor: actor, note: note})
	return true
}

func (b *batch) applyRequestEvent(req *requestState, ev *events.StatusEvent) {
	if ev.Status == events.StatusRouted {
		// A routed event of a newer round (a replayed request) starts its
		// work items over.
		for _, a := range ev.Agencies {
			i := slices.IndexFunc(req.items, func(w workItemState) bool { return w.agency == a })
			switch {
			case i < 0:
				req.items = append(req.items, workItemState{agency: a, status: events.StatusRouted, round: ev.Round, at: ev.At, dirty: true})
			case req.items[i].round < ev.Round:
				w := &req.items[i]
				w.status, w.round, w.dirty = events.StatusRouted, ev.Round, true
				if ev.At.After(w.at) {
					w.at = ev.At
				}
			}
		}
	}
	switch {
	case ev.Round > req.round:
		req.round = ev.Round
	case ev.Round < req.round || ev.Status.Rank() <= req.status.Rank():
		return
	}
	b.setStatus(ev.RequestID, req, ev.Status, ev.At, ev.Note, ev.Round)
}

// applyWorkItemEvent applies ev to its work item and moves the request to
// what its work items add up to.
func (b *batch) applyWorkItemEvent(req *requestState, ev *events.StatusEvent) {
	statuses := make([]events.Status, len(req.items))
	round := req.round
	// The request reaches what its work items add up to when the last of
	// them got there, whatever order their events were applied in.
	latest := ev.At
	for i := range req.items {
		w := &req.items[i]
		// An event of a newer round supersedes whatever the work item
		// reached; within a round, a status only replaces one it outranks.
		if w.agency == ev.Agency && (ev.Round > w.round || (ev.Round == w.round && ev.Status.Rank() > w.status.Rank())) {
			w.status, w.round, w.dirty = ev.Status, ev.Round, true
			if ev.At.After(w.at) {
				w.at = ev.At
			}
		}
		statuses[i] = w.status
		round = max(round, w.round)
		if w.at.After(latest) {
			latest = w.at
		}
	}
	if agg := events.Aggregate(statuses); agg != req.status {
		b.setStatus(ev.RequestID, req, agg, latest, "", round)
	}
}

// setStatus moves the request to status; reaching a terminal status is
// itself an event of the request's timeline, named by the round, so a
// request that fails again after a replay shows both failures.
func (b *batch) setStatus(id string, req *requestState, status events.Status, at time.Time, note string, round int) {
	req.status = status
	if status.Terminal() {
		b.record(events.RoundEventID(id, "", status, round), id, "", status, at, "spotflow", note)
	}
}

// throughputKey is what the roll-ups count an event by: a row of
// throughput_minute.
type throughputKey struct {
	minute                                      time.Time
	desk, municipality, service, agency, status string
}

// counted is the batch's new events, as the dashboard's roll-ups count them:
// those of training requests count nowhere.
func (b *batch) counted() []countedEvent {
	out := make([]countedEvent, 0, len(b.timeline))
	for _, t := range b.timeline {
		r := b.requests[t.requestID]
		if r.training {
			continue
		}
		out = append(out, countedEvent{
			throughputKey: throughputKey{
				minute: t.at.UTC().Truncate(time.Minute),
				desk:   r.desk, municipality: r.municipality, service: r.service,
				agency: t.agency, status: string(t.status),
			},
			sinceSubmitted: t.at.Sub(r.submittedAt),
		})
	}
	return out
}

// store writes what the batch worked out, one statement per table, in one
// round trip: work items, requests, the timeline, and its new events for
// the roll-ups (throughput_minute and the dashboard's; see FoldRollups).
func (b *batch) store(ctx context.Context, tx pgx.Tx, counted []countedEvent) error {
	var q pgx.Batch
	var (
		wReq, wAgency, wStatus []string
		wRound                 []int32
		wAt                    []time.Time
		rID, rStatus           []string
		rRound                 []int32
		rAt                    []time.Time
	)
	for _, id := range slices.Sorted(maps.Keys(b.requests)) {
		r := b.requests[id]
		if !r.dirty {
			continue
		}
		rID, rStatus, rRound, rAt = append(rID, id), append(rStatus, string(r.status)), append(rRound, int32(r.round)), append(rAt, r.at)
		for _, w := range r.items {
			if w.dirty {
				wReq, wAgency, wStatus = append(wReq, id), append(wAgency, w.agency), append(wStatus, string(w.status))
				wRound, wAt = append(wRound, int32(w.round)), append(wAt, w.at)
			}
		}
	}
	if len(wReq) > 0 {
		q.Queue(`
			INSERT INTO work_items (request_id, agency, status, round, updated_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[])
			ON CONFLICT (request_id, agency) DO UPDATE
			SET status = excluded.status, round = excluded.round,
			    updated_at = greatest(work_items.updated_at, excluded.updated_at)`,
			wReq, wAgency, wStatus, wRound, wAt)
	}
	if len(rID) > 0 {
		q.Queue(`
			UPDATE requests r SET status = u.status, round = u.round, updated_at = greatest(r.updated_at, u.at)
			FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[]) AS u(id, status, round, at)
			WHERE r.id = u.id`,
			rID, rStatus, rRound, rAt)
	}
	if n := len(b.timeline); n > 0 {
		id, req, agency, status, actor, note := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at := make([]time.Time, n)
		for i, t := range b.timeline {
			id[i], req[i], agency[i], status[i], at[i], actor[i], note[i] = t.id, t.requestID, t.agency, string(t.status), t.at, t.actor, t.note
		}
		q.Queue(`
			INSERT INTO timeline (event_id, request_id, agency, status, at, actor, note)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[])
			ON CONFLICT (event_id) DO NOTHING`,
			id, req, agency, status, at, actor, note)
	}
	if len(counted) > 0 {
		queueForDashboard(&q, counted)
	}
	if err := tx.SendBatch(ctx, &q).Close(); err != nil {
		return fmt.Errorf("project: store: %w", err)
	}
	return nil
}

func (k throughputKey) compare(o throughputKey) int {
	return cmp.Or(k.minute.Compare(o.minute), cmp.Compare(k.desk, o.desk), cmp.Compare(k.municipality, o.municipality),
		cmp.Compare(k.service, o.service), cmp.Compare(k.agency, o.agency), cmp.Compare(k.status, o.status))
}

// rankCases is the SQL counterpart of events.Status.Rank.
var rankCases = func() string {
	s := ""
	for _, st := range events.Statuses {
		s += fmt.Sprintf("WHEN '%s' THEN %d ", st, st.Rank())
	}
	return s
}()
