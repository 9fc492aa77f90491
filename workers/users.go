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

// CredentialUsers are the users the agencies' NATS credentials in force
// make, and those of the desks' edges when edges is not nil: each with its
// grant.
func CredentialUsers(ctx context.Context, agencies AgencyCredentialStore, edges EdgeCredentialStore) ([]natsbus.User, error) {
	creds, err := agencies.AgencyCredentials(ctx, "", events.CredentialNkey, false)
	if err != nil {
		return nil, err
	}
	var edgeCreds []events.EdgeCredential
	if edges != nil {
		if edgeCreds, err = edges.EdgeCredentials(ctx, false); err != nil {
			return nil, err
		}
	}
	users := make([]natsbus.User, 0, len(creds)+len(edgeCreds))
	for _, c := range creds {
		users = append(users, natsbus.User{PublicKey: c.PublicKey, Grant: natsbus.AgencyGrant(c.Agency)})
	}
	for _, e := range edgeCreds {
		users = append(users, natsbus.User{PublicKey: e.PublicKey, Grant: natsbus.EdgeGrant(e.Municipality, e.DeskID), Leaf: true})
	}
	return users, nil
}

// Sync reads the agencies' and edges' credentials and, when they changed
// since the last Sync, gives the server its own identities and theirs.
func (u *Users) Sync(ctx context.Context) error {
	creds, err := CredentialUsers(ctx, u.cfg.Store, u.cfg.Edges)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	keys := make([]string, len(creds))
	edges := 0
	for i, c := range creds {
		keys[i] = c.Grant.Identity + " " + c.PublicKey
		if c.Leaf {
			edges++
		}
	}
	slices.Sort(keys)
	if u.last != nil && slices.Equal(keys, u.last) {
		return nil
	}
	if err := u.cfg.Server.SetUsers(append(slices.Clone(u.cfg.Own), creds...)); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	u.cfg.Logger.Info("users: agencies' and edges' credentials in force", "agencies", len(creds)-edges, "edges", edges)
	u.last = keys
	return nil
}
