package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// RequestForDesk reads a request with its work items and timeline. A request
// of another desk is reported as events.ErrNotFound, like one that does not
// exist.
func (s *Store) RequestForDesk(ctx context.Context, deskID, id string) (*events.RequestView, error) {
	v := &events.RequestView{ID: id}
	var visit, mediator *string
	err := s.pool.QueryRow(ctx, `
		SELECT service_code, status, visit_id, mediator, consent, training, submitted_at, updated_at
		FROM requests WHERE id = $1 AND desk_id = $2`, id, deskID).
		Scan(&v.ServiceCode, &v.Status, &visit, &mediator, &v.Consent, &v.Training, &v.CreatedAt, &v.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.acceptedRequest(ctx, deskID, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if visit != nil {
		v.VisitID = *visit
	}
	if mediator != nil {
		v.Mediator = *mediator
	}
	rows, err := s.pool.Query(ctx, `
		SELECT agency, status, updated_at FROM work_items
		WHERE request_id = $1 ORDER BY agency`, id)
	if err != nil {
		return nil, fmt.Errorf("read work items: %w", err)
	}
	v.WorkItems, err = pgx.CollectRows(rows, pgx.RowToStructByPos[events.WorkItemView])
	if err != nil {
		return nil, fmt.Errorf("read work items: %w", err)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT status, at, agency, note FROM timeline
		WHERE request_id = $1
		ORDER BY at, CASE status `+rankCases+` ELSE 0 END, agency = '', agency`, id)
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	v.Timeline, err = pgx.CollectRows(rows, pgx.RowToStructByPos[events.TimelineEntry])
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	return v, nil
}

// acceptedRequest answers for a request that JetStream stored but the
// projection has not recorded yet: it is submitted, with nothing more to tell.
func (s *Store) acceptedRequest(ctx context.Context, deskID, id string) (*events.RequestView, error) {
	v := &events.RequestView{ID: id, Status: events.StatusSubmitted, WorkItems: []events.WorkItemView{}, Timeline: []events.TimelineEntry{}}
	err := s.pool.QueryRow(ctx, `
		SELECT service_code, created_at, created_at FROM intake_keys
		WHERE request_id = $1 AND desk_id = $2 AND published_at IS NOT NULL`, id, deskID).
		Scan(&v.ServiceCode, &v.CreatedAt, &v.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, events.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	return v, nil
}
