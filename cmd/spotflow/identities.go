package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
)

// ownIdentities are the NATS identities of spotflow's own processes.
var ownIdentities = append([]string{natsbus.Admin}, natsbus.Roles...)

func (c *Config) identityDir() string {
	return cmp.Or(c.NATSIdentities, filepath.Join(c.DataDir, "identities"))
}

// receiptKeys is the directory of the keys that sign receipts.
func (c *Config) receiptKeys() string {
	return cmp.Or(c.ReceiptKeys, filepath.Join(c.DataDir, "receipt-keys"))
}

func seedPath(dir, identity string) string { return filepath.Join(dir, identity+".nk") }

// ownUsers makes sure the identity directory holds a seed for admin and
// each role, creating the missing ones (mode 0600), and returns them as the
// users a server lets in, the dispatcher granted the queues of catalog's
// adapter agencies.
func (c *Config) ownUsers(catalog *events.Catalog) ([]natsbus.User, error) {
	dir := c.identityDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats identities: %w", err)
	}
	d, err := loadDeliveries(c.Delivery, catalog)
	if err != nil {
		return nil, err
	}
	adapterAgencies := d.adapterAgencies(catalog)
	users := make([]natsbus.User, 0, len(ownIdentities))
	for _, identity := range ownIdentities {
		seed, err := readOrCreateSeed(seedPath(dir, identity))
		if err != nil {
			return nil, err
		}
		pub, err := seed.PublicKey()
		if err != nil {
			return nil, err
		}
		grant, err := natsbus.RoleGrant(identity, adapterAgencies)
		if err != nil {
			return nil, err
		}
		users = append(users, natsbus.User{PublicKey: pub, Grant: grant})
	}
	return users, nil
}

func readOrCreateSeed(path string) (natsbus.Seed, error) {
	seed, err := natsbus.ReadSeed(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return seed, err
	}
	if seed, err = natsbus.NewSeed(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return natsbus.ReadSeed(path) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("nats identity: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(seed, '\n')); err != nil {
		return nil, fmt.Errorf("nats identity: %w", err)
	}
	return seed, f.Sync()
}

// credential reads the seed of one of spotflow's identities from the
// identity directory.
func (c *Config) credential(identity string) (natsbus.Credential, error) {
	seed, err := natsbus.ReadSeed(seedPath(c.identityDir(), identity))
	if err != nil {
		return natsbus.Credential{}, fmt.Errorf("nats identity %s: %w (copy %s.nk from the identity directory of the process that runs the NATS server, or set --nats-identities)", identity, err, identity)
	}
	return natsbus.Credential{Identity: identity, Seed: seed}, nil
}

// newUsers keeps ns's users: spotflow's own, and the agencies' credentials
// in force in store, read once now.
func newUsers(ctx context.Context, ns *natsbus.Server, own []natsbus.User, store *postgres.Store, log *slog.Logger) (*workers.Users, error) {
	users, err := workers.NewUsers(workers.UsersConfig{Server: ns, Own: own, Store: store, Edges: store, Logger: log.With("component", "nats-users")})
	if err != nil {
		return nil, err
	}
	if err := users.Sync(ctx); err != nil {
		log.Warn("agencies' credentials not read yet; only spotflow's own identities may connect", "err", err)
	}
	return users, nil
}

// natsConfigCommand prints the authorization block a NATS server or cluster
// of one's own needs: spotflow's own identities, whose seeds it creates in
// the identity directory when missing, and the agencies' credentials in
// force.
func natsConfigCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := newFlagSet("nats-config", "nats-config [flags]",
		"Prints the authorization block of a NATS server or cluster of one's own: spotflow's own\n"+
			"identities (their seeds in --nats-identities, created when missing: hand each machine\n"+
			"the seeds of the roles it runs) and the agencies' credentials in force, each with its\n"+
			"permissions, and nobody else. Include it in the servers' configuration, and print and\n"+
			"reload it (nats-server --signal reload) whenever an agency's credential is issued or\n"+
			"revoked.", stderr)
	cfg.flags(fs, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	catalog, err := loadCatalog(cfg.CatalogFile)
	if err != nil {
		return err
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		users, err := cfg.ownUsers(catalog)
		if err != nil {
			return err
		}
		creds, err := workers.CredentialUsers(ctx, store, store)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, natsbus.AuthorizationConfig(append(users, creds...)))
		return err
	})
}
