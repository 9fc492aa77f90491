package workers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// AgencyCredentialStore lists the agencies' NATS credentials in force.
type AgencyCredentialStore interface {
	AgencyCredentials(ctx context.Context, agency, kind string, revoked bool) ([]events.AgencyCredential, error)
}

// EdgeCredentialStore lists the desks' edges' credentials in force.
type EdgeCredentialStore interface {
	EdgeCredentials(ctx context.Context, revoked bool) ([]events.EdgeCredential, error)
}

// UsersConfig configures Users.
type UsersConfig struct {
	// Server whose users are kept. Required.
	Server *natsbus.Server
	// Own are spotflow's own identities (admin, the roles), always let in.
	// Required.
	Own []natsbus.User
	// Store lists the agencies' credentials. Required.
	Store AgencyCredentialStore
	// Edges lists the desks' edges' credentials, let in as leaf nodes.
	// Optional: without it no edge is.
	Edges EdgeCredentialStore
	// Every is how often the credentials are read again: a credential
	// issued or revoked takes effect within it. Default 2 seconds.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Users keeps an embedded NATS server's users in step with the agencies'
// credentials in Postgres, so that a credential issued or revoked takes
// effect without a restart: a revoked agency's connections are closed.
// While Postgres cannot be read, the server keeps the users it has.
type Users struct {
	cfg  UsersConfig
	last []string // the agencies' public keys in force, sorted, as last applied
}

// NewUsers validates cfg.
func NewUsers(cfg UsersConfig) (*Users, error) {
	if cfg.Server == nil || len(cfg.Own) == 0 || cfg.Store == nil {
		return nil, errors.New("new users: Server, Own and Store are required")
	}
	cfg.Every = cmp.Or(cfg.Every, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Users{cfg: cfg}, nil
}

// Run syncs the users every Every until ctx ends, and returns nil.
func (u *Users) Run(ctx context.Context) error {
	return repeat(ctx, u.cfg.Every, u.cfg.Logger, "users: keeping the server's users as they are", u.Sync)
}

// Sync reads the agencies' credentials and, when they changed since the
// last Sync, gives the server its own identities and theirs.
func (u *Users) Sync(ctx context.Context) error {
	creds, err := u.cfg.Store.AgencyCredentials(ctx, "", events.CredentialNkey, false)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	var edges []events.EdgeCredential
	if u.cfg.Edges != nil {
		if edges, err = u.cfg.Edges.EdgeCredentials(ctx, false); err != nil {
			return fmt.Errorf("users: %w", err)
		}
	}
	keys := make([]string, 0, len(creds)+len(edges))
	for _, c := range creds {
		keys = append(keys, c.Agency+" "+c.PublicKey)
	}
	for _, e := range edges {
		keys = append(keys, "edge "+e.DeskID+" "+e.PublicKey)
	}
	slices.Sort(keys)
	if u.last != nil && slices.Equal(keys, u.last) {
		return nil
	}
	users := slices.Clone(u.cfg.Own)
	for _, c := range creds {
		users = append(users, natsbus.User{PublicKey: c.PublicKey, Grant: natsbus.AgencyGrant(c.Agency)})
	}
	for _, e := range edges {
		users = append(users, natsbus.User{PublicKey: e.PublicKey, Grant: natsbus.EdgeGrant(e.Municipality, e.DeskID), Leaf: true})
	}
	if err := u.cfg.Server.SetUsers(users); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	u.cfg.Logger.Info("users: agencies' and edges' credentials in force", "agencies", len(creds), "edges", len(edges))
	u.last = keys
	return nil
}
