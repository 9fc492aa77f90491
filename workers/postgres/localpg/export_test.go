package localpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5"
)

// legacySuperuser is the bootstrap superuser clusters of earlier versions
// had, which spotflow connected as.
const legacySuperuser = "spotflow"

// MakeLegacyCluster makes in dataDir, and starts, the cluster an earlier
// spotflow made: it trusts every local connection, and "spotflow" is its
// bootstrap superuser and owns the database "spotflow". It returns the
// cluster, for stopping it, and the URL earlier versions gave, without a
// password. dataDir must be one the server's user reaches.
func MakeLegacyCluster(ctx context.Context, dataDir string, log *slog.Logger) (*Cluster, string, error) {
	dataDir, err := prepareDataDir(dataDir)
	if err != nil {
		return nil, "", err
	}
	run, err := newRunner()
	if err != nil {
		return nil, "", err
	}
	place, err := locate(dataDir, run)
	if err != nil {
		return nil, "", err
	}
	if place.relocated {
		return nil, "", errors.New("make legacy cluster: the postgres user cannot reach " + dataDir)
	}
	bins, err := findBinaries("", "")
	if err != nil {
		return nil, "", err
	}
	c := &Cluster{dir: place.dir, dataDir: dataDir, bins: bins, run: run, log: log}
	tmp := c.dir + ".initdb"
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, "", err
	}
	if err := run.chown(tmp); err != nil {
		return nil, "", err
	}
	if c.port, err = freePort(); err != nil {
		return nil, "", err
	}
	// The command line of earlier versions.
	out, err := run.command(ctx, tmp, bins.initdb, "--pgdata", tmp, "--auth", "trust", "--username", legacySuperuser,
		"--encoding", "UTF8", "--locale", initdbLocale(), "--lc-collate", "C").CombinedOutput()
	if err != nil {
		return nil, "", fmt.Errorf("make legacy cluster: initdb: %w%s", err, tail(out))
	}
	if err := c.writeConf(tmp, c.port); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp, c.dir); err != nil {
		return nil, "", err
	}
	if err := c.start(ctx); err != nil {
		return nil, "", err
	}
	if err := c.waitReady(ctx); err != nil {
		return c, "", err
	}
	conn, err := pgx.Connect(ctx, c.trustedURL(legacySuperuser, "postgres"))
	if err != nil {
		return c, "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoteIdent(database)); err != nil {
		return c, "", err
	}
	return c, c.trustedURL(legacySuperuser, database), nil
}

// StartAsNew starts the stopped cluster c as Open starts one it has just
// made: the first start, whose port may still move.
func StartAsNew(ctx context.Context, c *Cluster) error {
	c.created = true
	if err := c.start(ctx); err != nil {
		return err
	}
	return c.waitReady(ctx)
}
