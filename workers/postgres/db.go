// Package postgres is spotflow's Postgres store: migrations, desks and their
// credentials, idempotency keys, and the projections of requests, work items,
// timelines and throughput roll-ups that dashboards and BI tools read. It
// imports the domain (events), the schemas it migrates to, and pgx; the
// roles and surfaces reach it through the interfaces they declare.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/spotflow/spotflow/events"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spotflow/spotflow/schemas"
)

// DBTX is what the store needs of a connection, a pool or a transaction, so
// the same queries run in any of them.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Connect opens a pool to url and checks that the server answers. Unless
// url sets pool_max_conns, the pool holds up to 16 connections.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, 16)
	}
	return ConnectConfig(ctx, cfg)
}

// ConnectConfig opens a pool with cfg and checks that the server answers.
func ConnectConfig(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reach database: %w", err)
	}
	return pool, nil
}

// classify marks err as an outage (events.ErrUnavailable) when it says the
// database could not be reached or used at all, rather than refusing one
// statement: no connection, a connection lost, a server shutting down or out
// of resources. It marks err permanent (events.Permanent) when the server
// refused the statement's data (SQLSTATE class 22, data exception: text that
// is not UTF-8 or holds NUL, a string too long for its column, a number or
// time out of range): the same data would be refused again, so a consumer
// dead-letters the message rather than retry it for ever. Other errors the
// server raised about a statement are returned as they are; an error
// classified already is returned unchanged.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, events.ErrUnavailable) || events.IsPermanent(err) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),  // insufficient resources
			strings.HasPrefix(pgErr.Code, "57P"): // operator intervention: shutdown
			return events.Unavailable(err)
		case strings.HasPrefix(pgErr.Code, "22"): // data exception
			return events.Permanent(err)
		}
		return err
	}
	if errors.Is(err, events.ErrUnknownRequest) || errors.Is(err, events.ErrNotFound) {
		return err
	}
	// Anything else is the client failing to talk to the server.
	return events.Unavailable(err)
}

// storable makes s text Postgres stores: what is not UTF-8 is dropped and
// NUL becomes a space. For what spotflow must store whatever it holds, such
// as a dead letter's reason and IDs: refused, the dead letter would never be
// recorded.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", " ")
}

// migrationLock is the advisory lock that serialises migrations across
// processes starting at once.
const migrationLock = 0x5f0f1047

// Migrate applies every migration under schemas/migrations that the database
// has not seen yet, each in its own transaction, in the order of their
// numbers, and returns the versions it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var done []int
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	done, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	files, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range files {
		if slices.Contains(done, m.version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: %s: %w", m.name, err)
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(schemas.Migrations, "migrations/*.up.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its number", base)
		}
		data, err := fs.ReadFile(schemas.Migrations, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(data)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	return ms, nil
}
