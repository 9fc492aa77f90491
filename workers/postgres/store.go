package postgres

import (
	"crypto/hmac"
	"crypto/sha256"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Store reads and writes spotflow's tables. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// citizenKey keys the hash that stands for a citizen's national ID.
	citizenKey []byte
	// claims and marks group intake's writes made at the same time.
	claims *groupCommit[keyClaim, claimed]
	marks  *groupCommit[publishedRequest, struct{}]
	// slas are the services' expected completion times, by service code.
	slas map[string]time.Duration
}

// Option tunes a Store.
type Option func(*Store)

// ServiceLevels gives the store each service's expected completion time, by
// service code, so that the dashboard's roll-ups count completions within it
// and past it. Completions of a service without one count in neither.
func ServiceLevels(slas map[string]time.Duration) Option {
	return func(s *Store) { s.slas = slas }
}

// NewStore returns a store over pool. citizenKey is the secret that keys the
// hash stored in place of national IDs; keep it stable, or the hashes of old
// and new requests stop matching.
func NewStore(pool *pgxpool.Pool, citizenKey []byte, opts ...Option) *Store {
	s := &Store{pool: pool, citizenKey: citizenKey}
	s.claims = newGroupCommit(500, s.claimKeys)
	s.marks = newGroupCommit(500, s.markPublished)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pool is the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// keyedHash is HMAC-SHA256 of parts under the citizen key.
// secretHash is the SHA-256 of a random secret (a token, a one-time code),
// as the database keeps it in the secret's place.
func secretHash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

func (s *Store) keyedHash(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, s.citizenKey)
	for _, p := range parts {
		m.Write(p)
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}
