package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// SearchRequests lists the requests of q.DeskID that match q, newest first,
// each with the latest note of its timeline. A request JetStream stored but
// the projection has not recorded yet is listed as submitted (and known as
// a training request only once recorded, a moment later).
func (s *Store) SearchRequests(ctx context.Context, q events.RequestQuery) ([]events.RequestSummary, error) {
	args := pgx.NamedArgs{"desk": q.DeskID}
	// Of one desk, or, for public reads by ID, of any.
	ofRequests, ofKeys := "desk_id = @desk", "k.desk_id = @desk AND "
	if q.DeskID == "" {
		if len(q.IDs) == 0 {
			return nil, errors.New("search requests: without a desk, only by ID")
		}
		ofRequests, ofKeys = "id = ANY(@ids)", "k.request_id = ANY(@ids) AND "
	}
	var where []string
	if len(q.IDs) > 0 {
		where = append(where, "id = ANY(@ids)")
		args["ids"] = q.IDs
	} else {
		if len(q.ServiceCodes) > 0 {
			where = append(where, "service_code = ANY(@services)")
			args["services"] = q.ServiceCodes
		}
		if len(q.Statuses) > 0 {
			statuses := make([]string, len(q.Statuses))
			for i, st := range q.Statuses {
				statuses[i] = string(st)
			}
			where = append(where, "status = ANY(@statuses)")
			args["statuses"] = statuses
		}
		if !q.From.IsZero() {
			where = append(where, "submitted_at >= @from")
			args["from"] = q.From
		}
		if !q.To.IsZero() {
			where = append(where, "submitted_at <= @to")
			args["to"] = q.To
		}
	}
	if q.NoTraining {
		where = append(where, "NOT training")
	}
	filter := ""
	if len(where) > 0 {
		filter = "WHERE " + strings.Join(where, " AND ")
	}
	limit := ""
	if q.Limit > 0 {
		limit = "LIMIT @limit"
		args["limit"] = q.Limit
	}
	rows, err := s.pool.Query(ctx, `
		WITH found AS (
			SELECT id, service_code, status, submitted_at, updated_at, training
			FROM requests WHERE `+ofRequests+`
			UNION ALL
			SELECT k.request_id, k.service_code, 'submitted', k.created_at, k.created_at, false
			FROM intake_keys k
			WHERE `+ofKeys+`k.published_at IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = k.request_id)
		)
		SELECT f.id, f.service_code, f.status,
		       coalesce((SELECT t.note FROM timeline t
		                 WHERE t.request_id = f.id AND t.note <> ''
		                 ORDER BY t.at DESC, CASE t.status `+rankCases+` ELSE 0 END DESC, t.agency = '' DESC, t.agency DESC
		                 LIMIT 1), ''),
		       f.submitted_at, f.updated_at, f.training
		FROM (SELECT * FROM found `+filter+`) f
		ORDER BY f.submitted_at DESC, f.id DESC `+limit, args)
	if err != nil {
		return nil, fmt.Errorf("search requests: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.RequestSummary])
	if err != nil {
		return nil, fmt.Errorf("search requests: %w", err)
	}
	return found, nil
}

// RequestUpdates lists the timeline events of q.DeskID's requests (those
// made in training mode left out) that
// happened between q.From and q.To, in the timeline's order, each with the
// request's status once it had happened. It looks among the desk's
// requests submitted by q.To, through the timeline's index by request, so
// that no index on the timeline's time weighs on the projection.
func (s *Store) RequestUpdates(ctx context.Context, q events.UpdateQuery) ([]events.RequestUpdate, error) {
	limit := ""
	args := pgx.NamedArgs{"desk": q.DeskID, "from": q.From, "to": q.To}
	if q.Limit > 0 {
		limit = "LIMIT @limit"
		args["limit"] = q.Limit
	}
	rank := func(t string) string { return "CASE " + t + ".status " + rankCases + " ELSE 0 END" }
	rows, err := s.pool.Query(ctx, `
		SELECT t.event_id, t.request_id, r.service_code, t.agency, t.status,
		       coalesce((SELECT w.status FROM timeline w
		                 WHERE w.request_id = t.request_id AND w.agency = ''
		                   AND (w.at, `+rank("w")+`) <= (t.at, `+rank("t")+`)
		                 ORDER BY w.at DESC, `+rank("w")+` DESC
		                 LIMIT 1), 'submitted'),
		       t.at, t.note
		FROM requests r JOIN timeline t ON t.request_id = r.id
		WHERE r.desk_id = @desk AND r.submitted_at <= @to AND NOT r.training
		  AND t.at BETWEEN @from AND @to
		ORDER BY t.at, `+rank("t")+`, t.agency = '', t.agency, t.event_id `+limit, args)
	if err != nil {
		return nil, fmt.Errorf("request updates: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.RequestUpdate])
	if err != nil {
		return nil, fmt.Errorf("request updates: %w", err)
	}
	return found, nil
}
