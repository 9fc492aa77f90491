package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/events"
)

// ErrCitizenKeyMismatch: the store's citizen key is not the one the
// pipeline hashes national IDs with (its fingerprint differs from the one
// the pruner noted, or it cannot open the pipeline's sealed copies): an
// erasure under it would find nothing.
var ErrCitizenKeyMismatch = errors.New("this citizen key is not the one the pipeline uses " +
	"(--citizen-key, SPOTFLOW_CITIZEN_KEY or <data-dir>/citizen.key): an erasure under it would find nothing")

// unprojectedLookback is how far back EraseCitizen looks for requests
// accepted but not projected yet: twice the reconciler's look-back, past
// which the pruner deletes every sealed copy anyway.
const unprojectedLookback = 2 * reconcileLookback

// EraseCitizen erases, on behalf of by, the personal data spotflow keeps in
// Postgres of the citizen whose national ID is nationalID, and returns what
// it erased. by must name who acts and say why (by.Reason): the erasure is
// in the audit log, in the same transaction, with its ID, the requests
// erased and the agencies they went to, never the citizen.
//
// The citizen's requests are found by the keyed hash of the national ID, as
// given and with its letters in upper and in lower case; requests accepted
// but not projected yet (normally those of the last second or two), by
// opening their sealed copies, and their rows are written at once, erased,
// for the projector to find. Each request keeps its row, work items,
// statuses and times, so every count and roll-up stays as it was, and loses
// its citizen_ref and visit_id (set NULL; erased_at is set), the sealed copy
// intake kept for the reconciler, the binding of its idempotency key to the
// body (the key stays taken: the same key again is a conflict), the notes of
// its timeline, and the sealed messages and last errors of its dead letters,
// which can then no longer be replayed. Dead letters of no known request are
// opened and erased too when they hold the national ID. Requests still under
// way are erased like the others and reported in Erasure.UnderWay.
//
// Erasing a citizen again finds nothing, and is audited again. A national
// ID that is not 4 to 32 letters, digits or '-' is refused with an
// *events.FieldError; a store whose citizen key does not open the database's
// sealed copies, with ErrCitizenKeyMismatch. The national ID is never in an
// error, the audit log or a log.
func (s *Store) EraseCitizen(ctx context.Context, nationalID string, by events.By) (events.Erasure, error) {
	switch {
	case strings.TrimSpace(by.Actor) == "":
		return events.Erasure{}, errors.New("erase citizen: who is acting is required")
	case strings.TrimSpace(by.Reason) == "":
		return events.Erasure{}, fmt.Errorf("erase citizen: %w", ErrReasonRequired)
	}
	id, forms, err := nationalIDForms(nationalID)
	if err != nil {
		return events.Erasure{}, err
	}
	if err := s.checkCitizenKey(ctx); err != nil {
		return events.Erasure{}, err
	}
	for attempt := 1; ; attempt++ {
		e, err := s.erase(ctx, id, forms, by)
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			continue // a deadlock or serialization failure: nothing was written
		}
		if err != nil {
			return events.Erasure{}, classify(fmt.Errorf("erase citizen: %w", err))
		}
		return e, nil
	}
}

// nationalIDForms checks a national ID as desks must give it, and returns
// it trimmed with the forms whose hashes an erasure looks for: as given,
// and with its letters in upper and in lower case.
func nationalIDForms(nationalID string) (string, []string, error) {
	id := strings.TrimSpace(nationalID)
	notIDRune := func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'))
	}
	switch {
	case id == "":
		return "", nil, &events.FieldError{Code: events.CodeRequired, Field: "national_id", Message: "the citizen's national ID is required"}
	case len(id) < 4 || len(id) > 32 || strings.IndexFunc(id, notIDRune) >= 0:
		return "", nil, &events.FieldError{Code: events.CodeInvalidValue, Field: "national_id", Message: "a national ID is 4 to 32 letters, digits or '-'"}
	}
	forms := []string{id, strings.ToUpper(id), strings.ToLower(id)}
	slices.Sort(forms)
	return id, slices.Compact(forms), nil
}

// keyFingerprint stands for the citizen key without revealing it.
func (s *Store) keyFingerprint() []byte {
	return s.keyedHash([]byte("spotflow citizen key fingerprint v1"))
}

// noteCitizenKey records the fingerprint of the store's citizen key, unless
// one is recorded already.
func (s *Store) noteCitizenKey(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO citizen_key (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING`, s.keyFingerprint())
	return err
}

// checkCitizenKey refuses a store whose citizen key is not the pipeline's,
// and so hashes national IDs differently: its fingerprint differs from the
// one recorded (by the pruner), or, with none recorded, it cannot open the
// newest sealed copy there is. With neither to go by, it cannot tell.
func (s *Store) checkCitizenKey(ctx context.Context) error {
	var fingerprint []byte
	err := s.pool.QueryRow(ctx, `SELECT fingerprint FROM citizen_key`).Scan(&fingerprint)
	switch {
	case err == nil && bytes.Equal(fingerprint, s.keyFingerprint()):
		return nil
	case err == nil:
		return ErrCitizenKeyMismatch
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("erase citizen: check the citizen key: %w", err)
	}
	var sealed []byte
	err = s.pool.QueryRow(ctx, `
		SELECT sealed FROM (
			(SELECT sealed_request AS sealed, created_at FROM intake_keys
			 WHERE sealed_request IS NOT NULL ORDER BY created_at DESC LIMIT 1)
			UNION ALL
			(SELECT payload, created_at FROM dead_letters WHERE payload IS NOT NULL ORDER BY id DESC LIMIT 1)
		) newest ORDER BY created_at DESC LIMIT 1`).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("erase citizen: check the citizen key: %w", err)
	}
	if _, err := s.unseal(sealed); err != nil {
		return ErrCitizenKeyMismatch
	}
	return s.noteCitizenKey(ctx)
}

// erase is one attempt at EraseCitizen, in one transaction.
func (s *Store) erase(ctx context.Context, id string, forms []string, by events.By) (events.Erasure, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	e := events.Erasure{ID: "erasure-" + events.NewID(now), At: now, Requests: []string{}, UnderWay: []string{}, Agencies: []string{}}
	refs := make([][]byte, len(forms))
	for i, f := range forms {
		refs[i] = s.keyedHash([]byte(f))
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A visit under way with the citizen ends, forgetting them and the
		// answers not submitted.
		if _, err := endVisits(ctx, tx, `citizen_ref = ANY($1)`, refs); err != nil {
			return err
		}
		// Locked in ID order, as the projector locks them, so that neither
		// waits for the other in a cycle.
		rows, err := tx.Query(ctx, `SELECT id, status FROM requests WHERE citizen_ref = ANY($1) ORDER BY id FOR UPDATE`, refs)
		if err != nil {
			return err
		}
		var status events.Status
		var rid string
		_, err = pgx.ForEachRow(rows, []any{&rid, &status}, func() error {
			e.Requests = append(e.Requests, rid)
			if !status.Terminal() {
				e.UnderWay = append(e.UnderWay, rid)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("find the citizen's requests: %w", err)
		}
		late, err := s.eraseUnprojected(ctx, tx, id, now)
		if err != nil {
			return err
		}
		e.Requests = append(e.Requests, late...)
		e.UnderWay = append(e.UnderWay, late...)
		slices.Sort(e.Requests)
		slices.Sort(e.UnderWay)
		if len(e.Requests) > 0 {
			if err := s.eraseRequests(ctx, tx, &e); err != nil {
				return err
			}
		}
		n, err := s.eraseStrayDeadLetters(ctx, tx, id)
		if err != nil {
			return err
		}
		e.DeadLetters += n
		return auditBy(ctx, tx, by, events.AuditCitizenErased, e.ID, map[string]any{
			"requests": e.Requests, "under_way": e.UnderWay, "agencies": e.Agencies,
			"sealed_requests": e.SealedRequests, "dead_letters": e.DeadLetters,
		})
	})
	return e, err
}

// eraseUnprojected finds the citizen's requests that intake accepted and
// the projector has not recorded yet, by opening their sealed copies, and
// writes their rows, already erased, as the projector would have written
// them (the projector then finds them there and goes on). It returns their
// IDs.
func (s *Store) eraseUnprojected(ctx context.Context, tx pgx.Tx, id string, now time.Time) ([]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT k.request_id, k.sealed_request FROM intake_keys k
		WHERE k.created_at > $1 AND k.sealed_request IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = k.request_id)
		ORDER BY k.request_id FOR UPDATE OF k`, now.Add(-unprojectedLookback))
	if err != nil {
		return nil, fmt.Errorf("find requests not projected yet: %w", err)
	}
	var found []*events.Request
	var rid string
	var sealed []byte
	_, err = pgx.ForEachRow(rows, []any{&rid, &sealed}, func() error {
		plain, err := s.unseal(sealed)
		if err != nil {
			return nil // not sealed under this key: not the pipeline's, whose key was checked
		}
		var r events.Request
		if json.Unmarshal(plain, &r) == nil && r.ID == rid && strings.EqualFold(r.Citizen.NationalID, id) {
			found = append(found, &r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find requests not projected yet: %w", err)
	}
	ids := make([]string, 0, len(found))
	for _, r := range found {
		_, err := tx.Exec(ctx, `
			INSERT INTO requests (id, desk_id, municipality, service_code, mediator, citizen_ref, status,
			                      round, submitted_at, updated_at, erased_at)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULL, $6, $7, $8, $8, $9)
			ON CONFLICT (id) DO NOTHING`,
			r.ID, r.DeskID, r.Municipality, r.ServiceCode, r.Mediator, events.StatusSubmitted, r.Round, r.SubmittedAt, now)
		if err != nil {
			return nil, fmt.Errorf("record a request not projected yet: %w", err)
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// eraseRequests erases e.Requests, locked already, and notes in e what it
// erased.
func (s *Store) eraseRequests(ctx context.Context, tx pgx.Tx, e *events.Erasure) error {
	var q pgx.Batch
	q.Queue(`UPDATE requests SET citizen_ref = NULL, visit_id = NULL, erased_at = $2 WHERE id = ANY($1)`, e.Requests, e.At)
	q.Queue(`SELECT DISTINCT agency FROM work_items WHERE request_id = ANY($1) ORDER BY agency`, e.Requests).
		Query(func(rows pgx.Rows) error {
			agencies, err := pgx.CollectRows(rows, pgx.RowTo[string])
			e.Agencies = append(e.Agencies, agencies...)
			return err
		})
	// The key stays taken (a retry with it is a conflict, not a second
	// request), bound to no body.
	q.Queue(`
		WITH erased AS (
			UPDATE intake_keys k SET sealed_request = NULL, body_hash = '\x'
			FROM (SELECT request_id, sealed_request IS NOT NULL AS sealed FROM intake_keys WHERE request_id = ANY($1)) o
			WHERE k.request_id = o.request_id
			RETURNING o.sealed)
		SELECT count(*) FILTER (WHERE sealed) FROM erased`, e.Requests).
		QueryRow(func(row pgx.Row) error { return row.Scan(&e.SealedRequests) })
	q.Queue(`
		WITH erased AS (
			UPDATE dead_letters d SET payload = NULL, last_error = ''
			FROM (SELECT id, payload IS NOT NULL AS sealed FROM dead_letters WHERE request_id = ANY($1)) o
			WHERE d.id = o.id
			RETURNING o.sealed)
		SELECT count(*) FILTER (WHERE sealed) FROM erased`, e.Requests).
		QueryRow(func(row pgx.Row) error { return row.Scan(&e.DeadLetters) })
	// Agencies' notes are free text about the citizen's case.
	q.Queue(`UPDATE timeline SET note = '' WHERE request_id = ANY($1) AND note <> ''`, e.Requests)
	if err := tx.SendBatch(ctx, &q).Close(); err != nil {
		return fmt.Errorf("erase the citizen's requests: %w", err)
	}
	return nil
}

// eraseStrayDeadLetters erases the dead letters of no known request (a
// message that could not be read, a request never projected) whose sealed
// message holds the national ID, and returns how many.
func (s *Store) eraseStrayDeadLetters(ctx context.Context, tx pgx.Tx, id string) (int, error) {
	rows, err := tx.Query(ctx, `
		SELECT d.id, d.payload FROM dead_letters d
		WHERE d.payload IS NOT NULL
		  AND (d.request_id IS NULL OR NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = d.request_id))
		ORDER BY d.id FOR UPDATE OF d`)
	if err != nil {
		return 0, fmt.Errorf("find dead letters of no request: %w", err)
	}
	var ids []int64
	var did int64
	var sealed []byte
	_, err = pgx.ForEachRow(rows, []any{&did, &sealed}, func() error {
		if plain, err := s.unseal(sealed); err == nil && holdsNationalID(plain, id) {
			ids = append(ids, did)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("find dead letters of no request: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE dead_letters SET payload = NULL, last_error = '' WHERE id = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("erase dead letters of no request: %w", err)
	}
	return len(ids), nil
}

// holdsNationalID reports whether msg, a dead letter's message, is of the
// citizen with national ID id: its citizen's, when it is JSON with one;
// otherwise (a message that could not be read) whether the ID appears in
// it at all, in any case.
func holdsNationalID(msg []byte, id string) bool {
	var m struct {
		Citizen *struct {
			NationalID string `json:"national_id"`
		} `json:"citizen"`
	}
	if err := json.Unmarshal(msg, &m); err == nil {
		return m.Citizen != nil && strings.EqualFold(m.Citizen.NationalID, id)
	}
	return bytes.Contains(bytes.ToLower(msg), []byte(strings.ToLower(id)))
}
