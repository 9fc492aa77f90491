package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// screenChannel is the channel of NOTIFY that announces a visit's new step.
const screenChannel = "spotflow_screen"

// PairScreen gives visit id of username a new pairing code, valid for
// life, replacing any before: the code a second window types to follow the
// visit.
func (s *Store) PairScreen(ctx context.Context, id, username, code string, life time.Duration) error {
	sum := secretHash(code)
	tag, err := s.pool.Exec(ctx, `
		UPDATE visits SET pair_hash = $3, pair_expires_at = now() + $4::interval
		WHERE id = $1 AND username = $2 AND ended_at IS NULL`, id, username, sum, life.String())
	if err != nil {
		return fmt.Errorf("pair a screen: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return events.ErrNotFound
	}
	return nil
}

// ClaimScreen pairs the screen whose token's SHA-256 is tokenHash with the
// open visit whose pairing code code is, using the code up, and returns
// the visit's ID. A screen paired before with the visit is unpaired.
// events.ErrNotFound for a code unknown, used or expired.
func (s *Store) ClaimScreen(ctx context.Context, code string, tokenHash []byte) (string, error) {
	sum := secretHash(code)
	var id string
	err := s.pool.QueryRow(ctx, `
		UPDATE visits SET pair_hash = NULL, pair_expires_at = NULL, screen_hash = $2
		WHERE pair_hash = $1 AND pair_expires_at > now() AND ended_at IS NULL
		RETURNING id`, sum, tokenHash).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", events.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("claim a screen: %w", err)
	}
	return id, nil
}

// ScreenVisit is the visit a paired screen follows, with the step its
// mediator is on: events.ErrNotFound when the token pairs with no visit
// (it never did, or the visit ended, which the step "ended" says until the
// screen asks no more).
func (s *Store) ScreenVisit(ctx context.Context, tokenHash []byte) (*events.Visit, string, int64, error) {
	var id, username, step string
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT id, username, screen_step, screen_seq FROM visits WHERE screen_hash = $1`, tokenHash).
		Scan(&id, &username, &step, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", 0, events.ErrNotFound
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("read a screen's visit: %w", err)
	}
	v, err := s.Visit(ctx, id, username)
	if err != nil {
		return nil, "", 0, err
	}
	if !v.EndedAt.IsZero() {
		step = "ended"
	}
	return v, step, seq, nil
}

// ScreenStep records the step the mediator of visit id is on, and
// announces it to the screens' processes. Nothing happens for a visit with
// no paired screen.
func (s *Store) ScreenStep(ctx context.Context, id, step string) error {
	_, err := s.pool.Exec(ctx, `
		WITH moved AS (
			UPDATE visits SET screen_step = $2, screen_seq = screen_seq + 1
			WHERE id = $1 AND screen_hash IS NOT NULL RETURNING id)
		SELECT pg_notify('`+screenChannel+`', id) FROM moved`, id, step)
	if err != nil {
		return fmt.Errorf("record the screen's step: %w", err)
	}
	return nil
}

// ListenScreens calls moved with the ID of each visit whose step changes
// (ScreenStep, in any process), on a connection of its own, until ctx ends
// (nil) or the connection fails (its error: listen again).
func (s *Store) ListenScreens(ctx context.Context, moved func(visit string)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen for screens: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+screenChannel); err != nil {
		return fmt.Errorf("listen for screens: %w", err)
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if ctx.Err() != nil {
			// The wait was cut short: the connection is closed, not
			// returned to the pool listening.
			return nil
		}
		if err != nil {
			return fmt.Errorf("listen for screens: %w", err)
		}
		moved(n.Payload)
	}
}
