package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// StartVisit starts a visit of v.Citizen at v.DeskID with v.Username, who
// may have one visit under way: one they left open ends. The citizen is
// kept sealed until the visit ends. It returns the visit's ID.
func (s *Store) StartVisit(ctx context.Context, v events.Visit) (string, error) {
	citizen, err := json.Marshal(v.Citizen)
	if err != nil {
		return "", err
	}
	sealed, err := s.seal(citizen)
	if err != nil {
		return "", err
	}
	id := events.NewID(time.Now())
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := endVisits(ctx, tx, `username = $1 AND ended_at IS NULL`, v.Username); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO visits (id, desk_id, username, citizen, citizen_ref, language, training) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, v.DeskID, v.Username, sealed, s.keyedHash([]byte(v.Citizen.NationalID)), v.Language, v.Training)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("start visit: %w", err)
	}
	return id, nil
}

// endVisits ends the visits that where selects, deleting what they keep
// of their citizen: the sealed identity and the answers not submitted. It
// returns how many visits it selected.
func endVisits(ctx context.Context, db DBTX, where string, args ...any) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `
		WITH ended AS (
			UPDATE visits SET ended_at = coalesce(ended_at, now()), citizen = NULL, citizen_ref = NULL
			WHERE `+where+` RETURNING id),
		cleared AS (
			UPDATE visit_services SET answers = NULL WHERE visit_id IN (SELECT id FROM ended))
		SELECT count(*) FROM ended`, args...).Scan(&n)
	return n, err
}

// EndVisit ends visit id of username.
func (s *Store) EndVisit(ctx context.Context, id, username string) error {
	if _, err := endVisits(ctx, s.pool, `id = $1 AND username = $2`, id, username); err != nil {
		return fmt.Errorf("end visit: %w", err)
	}
	return nil
}

// EndIdleVisits ends the visits started before cutoff that are still under
// way, and returns how many it ended.
func (s *Store) EndIdleVisits(ctx context.Context, cutoff time.Time) (int64, error) {
	n, err := endVisits(ctx, s.pool, `ended_at IS NULL AND started_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("end idle visits: %w", err)
	}
	return n, nil
}

// RecordConsent records that the citizen of visit id consented, in
// language, to the text of version.
func (s *Store) RecordConsent(ctx context.Context, id, username, version, language string) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE visits SET consent_version = $3, consent_at = now(), language = $4
		WHERE id = $1 AND username = $2 AND ended_at IS NULL`, id, username, version, language)
	if err != nil {
		return fmt.Errorf("record consent: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return events.ErrNotFound
	}
	return nil
}

// OpenVisit returns the visit username has under way, or
// events.ErrNotFound.
func (s *Store) OpenVisit(ctx context.Context, username string) (*events.Visit, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id FROM visits WHERE username = $1 AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1`,
		username).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, events.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find visit: %w", err)
	}
	return s.Visit(ctx, id, username)
}

// Visit reads visit id of username, with its citizen and answers opened;
// events.ErrNotFound when username has no such visit.
func (s *Store) Visit(ctx context.Context, id, username string) (*events.Visit, error) {
	v := &events.Visit{ID: id}
	var sealed []byte
	var version *string
	var consentAt, ended *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT desk_id, username, citizen, language, consent_version, consent_at, training, started_at, ended_at
		FROM visits WHERE id = $1 AND username = $2`, id, username).
		Scan(&v.DeskID, &v.Username, &sealed, &v.Language, &version, &consentAt, &v.Training, &v.StartedAt, &ended)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, events.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read visit: %w", err)
	}
	v.EndedAt = deref(ended)
	if version != nil && consentAt != nil {
		v.Consent = &events.ConsentGiven{Version: *version, Language: v.Language, At: *consentAt}
	}
	if len(sealed) > 0 {
		plain, err := s.unseal(sealed)
		if err != nil {
			return nil, fmt.Errorf("read visit: %w", err)
		}
		if err := json.Unmarshal(plain, &v.Citizen); err != nil {
			return nil, fmt.Errorf("read visit: %w", err)
		}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT n, service_code, answers, documents, idempotency_key, coalesce(request_id, ''), added_at, submitted_at
		FROM visit_services WHERE visit_id = $1 ORDER BY n`, id)
	if err != nil {
		return nil, fmt.Errorf("read visit: %w", err)
	}
	v.Services, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.VisitService, error) {
		var vs events.VisitService
		var answers []byte
		var submitted *time.Time
		if err := r.Scan(&vs.N, &vs.ServiceCode, &answers, &vs.Documents, &vs.IdempotencyKey, &vs.RequestID, &vs.AddedAt, &submitted); err != nil {
			return vs, err
		}
		vs.SubmittedAt = deref(submitted)
		if len(answers) > 0 {
			plain, err := s.unseal(answers)
			if err != nil {
				return vs, err
			}
			if err := json.Unmarshal(plain, &vs.Answers); err != nil {
				return vs, err
			}
		}
		return vs, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read visit: %w", err)
	}
	return v, nil
}

// AddVisitService adds service to visit id of username, and returns its
// place in the visit.
func (s *Store) AddVisitService(ctx context.Context, id, username, service string) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var found string
		err := tx.QueryRow(ctx, `SELECT id FROM visits WHERE id = $1 AND username = $2 AND ended_at IS NULL FOR UPDATE`,
			id, username).Scan(&found)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(n), 0) + 1 FROM visit_services WHERE visit_id = $1`, id).Scan(&n); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO visit_services (visit_id, n, service_code, idempotency_key) VALUES ($1, $2, $3, $4)`,
			id, n, service, "visit-"+id+"-"+strconv.Itoa(n))
		return err
	})
	if err != nil {
		if errors.Is(err, events.ErrNotFound) {
			return 0, err
		}
		return 0, fmt.Errorf("add a service to the visit: %w", err)
	}
	return n, nil
}

// SaveVisitAnswers keeps the answers given so far to service n of visit id
// of username, sealed, and the documents seen; not once it is submitted.
func (s *Store) SaveVisitAnswers(ctx context.Context, id, username string, n int, answers map[string]json.RawMessage, documents []string) error {
	plain, err := json.Marshal(answers)
	if err != nil {
		return err
	}
	sealed, err := s.seal(plain)
	if err != nil {
		return err
	}
	if documents == nil {
		documents = []string{}
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE visit_services x SET answers = $4, documents = $5
		FROM visits v
		WHERE x.visit_id = v.id AND v.id = $1 AND v.username = $2 AND v.ended_at IS NULL
		  AND x.n = $3 AND x.request_id IS NULL`, id, username, n, sealed, documents)
	if err != nil {
		return fmt.Errorf("save answers: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return events.ErrNotFound
	}
	return nil
}

// RemoveVisitService takes service n, not submitted, out of visit id.
func (s *Store) RemoveVisitService(ctx context.Context, id, username string, n int) error {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM visit_services x USING visits v
		WHERE x.visit_id = v.id AND v.id = $1 AND v.username = $2 AND v.ended_at IS NULL
		  AND x.n = $3 AND x.request_id IS NULL`, id, username, n)
	if err != nil {
		return fmt.Errorf("remove a service from the visit: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return events.ErrNotFound
	}
	return nil
}

// VisitServiceSubmitted records that service n of visit id became request
// requestID; its answers are deleted.
func (s *Store) VisitServiceSubmitted(ctx context.Context, id string, n int, requestID string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE visit_services SET request_id = $3, submitted_at = coalesce(submitted_at, now()), answers = NULL
		WHERE visit_id = $1 AND n = $2`, id, n, requestID)
	if err != nil {
		return fmt.Errorf("record the submission: %w", err)
	}
	return nil
}

// CitizenRequests lists the requests of nationalID's citizen at deskID,
// newest first, on behalf of by, who must say why: the look-up is in the
// audit log (without the national ID) before anything is returned.
func (s *Store) CitizenRequests(ctx context.Context, deskID, nationalID string, by events.By) ([]events.RequestSummary, error) {
	_, forms, err := nationalIDForms(nationalID)
	if err != nil {
		return nil, err
	}
	refs := make([][]byte, len(forms))
	for i, f := range forms {
		refs[i] = s.keyedHash([]byte(f))
	}
	var found []events.RequestSummary
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT r.id, r.service_code, r.status,
			       coalesce((SELECT t.note FROM timeline t WHERE t.request_id = r.id AND t.note <> ''
			                 ORDER BY t.at DESC LIMIT 1), ''),
			       r.submitted_at, r.updated_at, r.training
			FROM requests r WHERE r.desk_id = $1 AND r.citizen_ref = ANY($2)
			ORDER BY r.submitted_at DESC LIMIT 200`, deskID, refs)
		if err != nil {
			return err
		}
		if found, err = pgx.CollectRows(rows, pgx.RowToStructByPos[events.RequestSummary]); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditCitizenLookedUp, "desk:"+deskID, map[string]any{"found": len(found)})
	})
	if err != nil {
		return nil, fmt.Errorf("look up a citizen: %w", err)
	}
	return found, nil
}
