package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// A trainer follows the mediators of their municipality: they choose what
// the simulated agencies do with each one's practice requests, and read
// their practice visits.

// SetTrainer makes username a trainer, or no longer one, on behalf of by.
func (s *Store) SetTrainer(ctx context.Context, username string, trainer bool, by events.By) error {
	err := s.changeMediator(ctx, username, by, events.AuditMediatorTrainer, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE mediators SET trainer = $2 WHERE username = $1`, username, trainer)
		return err
	})
	if err != nil {
		return fmt.Errorf("set trainer: %w", err)
	}
	return nil
}

// SetTraining switches the session whose token's SHA-256 is tokenHash, of
// username, to training mode or back, in the audit log too. It is
// events.ErrVisitUnderWay while username has a visit under way, whose
// requests would otherwise change kind midway.
func (s *Store) SetTraining(ctx context.Context, tokenHash []byte, username string, on bool) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE mediator_sessions SET training = $3
			WHERE token_hash = $1 AND username = $2 AND ended_at IS NULL
			  AND NOT EXISTS (SELECT 1 FROM visits WHERE username = $2 AND ended_at IS NULL)`, tokenHash, username, on)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return events.ErrVisitUnderWay
		}
		return auditBy(ctx, tx, events.By{Actor: "mediator:" + username}, events.AuditTrainingMode, "mediator:"+username,
			map[string]any{"training": on})
	})
	if err != nil && !errors.Is(err, events.ErrVisitUnderWay) {
		return fmt.Errorf("switch training mode: %w", err)
	}
	return err
}

// TrainingScenario is what the simulated agencies do with username's
// practice requests: what a trainer chose last, or OutcomeComplete.
func (s *Store) TrainingScenario(ctx context.Context, username string) (events.Practice, error) {
	var p events.Practice
	err := s.pool.QueryRow(ctx, `SELECT outcome, reason, delay_seconds FROM training_scenarios WHERE username = $1`, username).
		Scan(&p.Outcome, &p.Reason, &p.DelaySeconds)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return events.Practice{Outcome: events.OutcomeComplete}, nil
	case err != nil:
		return p, fmt.Errorf("read training scenario: %w", err)
	}
	return p, nil
}

// SetTrainingScenario records what trainer chose for sc.Username's practice
// requests, in the audit log too. events.ErrNotFound unless trainer is a
// trainer in force and sc.Username a mediator of their municipality.
func (s *Store) SetTrainingScenario(ctx context.Context, trainer string, sc events.Scenario) error {
	if err := sc.Practice.Check(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO training_scenarios (username, outcome, reason, delay_seconds, set_by)
			SELECT m.username, $3, $4, $5, $2
			FROM mediators m JOIN desks d ON d.id = m.desk_id
			WHERE m.username = $1 AND d.municipality = (`+trainerMunicipality+`)
			ON CONFLICT (username) DO UPDATE
			SET outcome = excluded.outcome, reason = excluded.reason, delay_seconds = excluded.delay_seconds,
			    set_by = excluded.set_by, set_at = now()`,
			sc.Username, trainer, sc.Practice.Outcome, sc.Practice.Reason, sc.Practice.DelaySeconds)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return events.ErrNotFound
		}
		return auditBy(ctx, tx, events.By{Actor: "mediator:" + trainer}, events.AuditTrainingScenarioSet, "mediator:"+sc.Username,
			map[string]any{"outcome": sc.Practice.Outcome, "delay_seconds": sc.Practice.DelaySeconds})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		return fmt.Errorf("set training scenario: %w", err)
	}
	return err
}

// trainerMunicipality is the municipality of the trainer in force named $2:
// NULL, matching nothing, for anyone else.
const trainerMunicipality = `
	SELECT d.municipality FROM mediators t JOIN desks d ON d.id = t.desk_id
	WHERE t.username = $2 AND t.trainer AND t.disabled_at IS NULL`

// Trainees lists the mediators of trainer's municipality, by username, each
// with the scenario their practice requests follow; none unless trainer is
// a trainer in force.
func (s *Store) Trainees(ctx context.Context, trainer string) ([]events.Trainee, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+mediatorColumns+`, coalesce(x.outcome, $1), coalesce(x.reason, ''), coalesce(x.delay_seconds, 0),
		       coalesce(x.set_by, ''), x.set_at
		FROM mediators m JOIN desks d ON d.id = m.desk_id
		LEFT JOIN training_scenarios x ON x.username = m.username
		WHERE d.municipality = (`+trainerMunicipality+`)
		ORDER BY m.username`, events.OutcomeComplete, trainer)
	if err != nil {
		return nil, fmt.Errorf("list trainees: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.Trainee, error) {
		var t events.Trainee
		var at *time.Time
		var err error
		t.Mediator, err = scanMediator(r, &t.Scenario.Practice.Outcome, &t.Scenario.Practice.Reason,
			&t.Scenario.Practice.DelaySeconds, &t.Scenario.SetBy, &at)
		t.Scenario.Username, t.Scenario.SetAt = t.Mediator.Username, deref(at)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list trainees: %w", err)
	}
	return list, nil
}

// PracticeVisits lists the latest limit training visits of the mediators
// of trainer's municipality, newest first, each with its requests and
// where they stand (the latest note of each, a rejection's reason, say);
// none unless trainer is a trainer in force.
func (s *Store) PracticeVisits(ctx context.Context, trainer string, limit int) ([]events.PracticeVisit, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT v.id, v.username, m.name, v.started_at, v.ended_at,
		       coalesce(vs.request_id, ''), coalesce(vs.service_code, ''), coalesce(r.status, ''),
		       coalesce((SELECT t.note FROM timeline t WHERE t.request_id = r.id AND t.note <> ''
		                 ORDER BY t.at DESC LIMIT 1), '')
		FROM (SELECT v.* FROM visits v JOIN desks d ON d.id = v.desk_id
		      WHERE v.training AND d.municipality = (`+trainerMunicipality+`)
		      ORDER BY v.started_at DESC LIMIT $1) v
		JOIN mediators m ON m.username = v.username
		LEFT JOIN visit_services vs ON vs.visit_id = v.id AND vs.request_id IS NOT NULL
		LEFT JOIN requests r ON r.id = vs.request_id
		ORDER BY v.started_at DESC, v.id, vs.n`, limit, trainer)
	if err != nil {
		return nil, fmt.Errorf("list practice visits: %w", err)
	}
	var out []events.PracticeVisit
	var v events.PracticeVisit
	var ended *time.Time
	var r events.PracticeRequest
	_, err = pgx.ForEachRow(rows, []any{&v.ID, &v.Username, &v.Name, &v.StartedAt, &ended, &r.ID, &r.ServiceCode, &r.Status, &r.Note}, func() error {
		if len(out) == 0 || out[len(out)-1].ID != v.ID {
			v.EndedAt = deref(ended)
			out = append(out, events.PracticeVisit{ID: v.ID, Username: v.Username, Name: v.Name, StartedAt: v.StartedAt, EndedAt: v.EndedAt})
		}
		if r.ID != "" {
			last := &out[len(out)-1]
			if r.Status == "" {
				r.Status = events.StatusSubmitted // accepted, not projected yet
			}
			last.Requests = append(last.Requests, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list practice visits: %w", err)
	}
	return out, nil
}
