package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// CreateDesk registers a desk of municipality and returns it with its new
// token. Only the token's hash is stored: the token is shown this once.
func (s *Store) CreateDesk(ctx context.Context, municipality, name string) (events.Desk, string, error) {
	if !events.ValidToken(municipality) {
		return events.Desk{}, "", fmt.Errorf("create desk: municipality %q must be lowercase letters, digits, '-' or '_'", municipality)
	}
	if name == "" {
		return events.Desk{}, "", errors.New("create desk: a name is required")
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	token := "sfd_" + base64.RawURLEncoding.EncodeToString(raw[:])
	desk := events.Desk{
		ID:           "desk-" + events.NewID(time.Now())[24:],
		Municipality: municipality,
		Name:         name,
	}
	hash := sha256.Sum256([]byte(token))
	_, err := s.pool.Exec(ctx,
		`INSERT INTO desks (id, municipality, name, token_hash) VALUES ($1, $2, $3, $4)`,
		desk.ID, desk.Municipality, desk.Name, hash[:])
	if err != nil {
		return events.Desk{}, "", fmt.Errorf("create desk: %w", err)
	}
	return desk, token, nil
}

// DeskByToken finds the desk a token belongs to, or events.ErrUnauthenticated.
func (s *Store) DeskByToken(ctx context.Context, token string) (events.Desk, error) {
	hash := sha256.Sum256([]byte(token))
	var d events.Desk
	err := s.pool.QueryRow(ctx,
		`SELECT id, municipality, name FROM desks WHERE token_hash = $1`, hash[:]).
		Scan(&d.ID, &d.Municipality, &d.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Desk{}, events.ErrUnauthenticated
	}
	if err != nil {
		return events.Desk{}, fmt.Errorf("find desk: %w", err)
	}
	return d, nil
}

// HasMunicipality reports whether any desk belongs to municipality.
func (s *Store) HasMunicipality(ctx context.Context, municipality string) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM desks WHERE municipality = $1)`, municipality).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("find municipality: %w", err)
	}
	return found, nil
}
