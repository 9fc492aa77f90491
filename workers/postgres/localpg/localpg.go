// Package localpg runs a PostgreSQL cluster that spotflow provisions for itself
// from the PostgreSQL binaries installed on the machine.
//
// `spotflow run` opens the cluster and stops it on exit, commands such as
// `spotflow desk create` open the same cluster, and `make test` starts one for
// the test suite. The cluster lives in DataDir/postgres and listens only on
// 127.0.0.1, on a port picked when the cluster is created. It is meant for
// development and tests, never for production.
//
// Nothing is trusted. spotflow connects as the role "spotflow", which owns
// the database "spotflow" and is not a superuser, over TCP with a password
// generated when the cluster is created (stored as a SCRAM-SHA-256 verifier)
// and kept in the cluster's spotflow.pgpass, mode 0600, which the URL names
// (passfile), so that the URL itself holds no secret. The superuser,
// "postgres", is for provisioning only: localpg provisions a new cluster
// with the server in single-user mode before it first starts, and
// otherwise the superuser logs in only over the Unix socket inside the
// cluster, as the OS user that runs the server (peer authentication). Any
// other connection is refused. A cluster made by an earlier spotflow, which
// trusted every local connection and made "spotflow" its superuser, is
// upgraded in place, keeping its data, the first time Open finds it.
//
// PostgreSQL refuses to run as root. When the process is root, initdb and the
// server run as the "postgres" OS user, and when that user cannot reach
// DataDir (say, a repository cloned under a private /root) the cluster is
// placed under /var/lib/spotflow instead, with the pointer file
// DataDir/postgres.location naming it.
//
// Besides the cluster, DataDir holds postgres.lock, which Open and Stop lock
// with flock so that processes sharing DataDir take turns. The cluster holds
// the server's log, server.log; spotflow.conf, the settings localpg adds to
// PostgreSQL's defaults, including the port; spotflow.pgpass; and, given a
// certificate, server.crt and server.key, for TLS.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

const (
	// superuser is the role initdb creates, for provisioning only.
	superuser = "postgres"
	// role is the role spotflow connects as: it owns database and is not a
	// superuser.
	role = "spotflow"
	// database is spotflow's database.
	database = "spotflow"
	// clusterName is the cluster's directory inside DataDir.
	clusterName = "postgres"
	// lockName is the lock file inside DataDir that serialises Open and Stop
	// across processes.
	lockName = "postgres.lock"
)

// Config says where the cluster lives and which binaries run it. DataDir is
// required; the other fields have defaults.
type Config struct {
	// DataDir is spotflow's data directory (e.g. "./.data"); the cluster lives
	// in DataDir/postgres. It is created if missing.
	DataDir string
	// BinDir overrides the directory holding initdb and pg_ctl. Empty means
	// the highest version under /usr/lib/postgresql/*/bin, then PATH.
	BinDir string
	// Logger receives what Open and Stop do. Nil discards.
	Logger *slog.Logger
	// TLSCert and TLSKey are PEM files of a certificate for the server and
	// its key, both or neither. With them, a server that Open starts also
	// accepts TLS connections (ssl = on); URL still names a plain one, and a
	// client adds sslmode and sslrootcert to its query to use TLS. Open
	// copies both into the cluster before it starts the server, as
	// server.crt and server.key, owned by the user that runs PostgreSQL and
	// readable by it alone, as PostgreSQL demands of a key. A server that is
	// already running keeps what it was started with.
	TLSCert, TLSKey string
}

// Cluster is a local PostgreSQL cluster returned by Open. Its methods are safe
// for concurrent use. The server outlives the process unless Stop is called.
type Cluster struct {
	dir       string
	relocated bool
	dataDir   string
	port      int
	created   bool // made by this Open: its port may still move
	started   bool
	tlsCert   string // Config.TLSCert: empty when the server serves no TLS
	tlsKey    string
	bins      binaries
	run       runner
	log       *slog.Logger
}

// Open initialises and provisions the cluster if it does not exist yet,
// upgrades one made by an earlier spotflow, starts it if it is not running,
// waits until it accepts connections, checks that spotflow's role reaches its
// database, and returns it. Concurrent calls on the same DataDir, from any
// number of processes, take turns, so only one of them runs initdb.
func Open(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("open postgres cluster: Config.DataDir is empty")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("open postgres cluster: Config.TLSCert and Config.TLSKey go together; one of them is empty")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dataDir, err := prepareDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	run, err := newRunner()
	if err != nil {
		return nil, err
	}

	unlock, err := lock(ctx, filepath.Join(dataDir, lockName), log)
	if err != nil {
		return nil, err
	}
	defer unlock()

	place, err := locate(dataDir, run)
	if err != nil {
		return nil, err
	}
	bins, err := findBinaries(cfg.BinDir, clusterVersion(place.dir))
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		dir:       place.dir,
		relocated: place.relocated,
		dataDir:   dataDir,
		tlsCert:   cfg.TLSCert,
		tlsKey:    cfg.TLSKey,
		bins:      bins,
		run:       run,
		log:       log.With("dir", place.dir),
	}
	if err := c.ensureInitialised(ctx); err != nil {
		return nil, err
	}
	if c.port, err = readPort(c.dir); err != nil {
		return nil, err
	}
	legacy, err := isLegacy(c.dir)
	if err != nil {
		return nil, err
	}
	if err := c.ensureRunning(ctx, legacy); err != nil {
		return nil, err
	}
	if legacy {
		if err := c.upgrade(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// URL is the connection string of the "spotflow" database as the role
// "spotflow", e.g.
// postgres://spotflow@127.0.0.1:PORT/spotflow?sslmode=disable&passfile=/DIR/spotflow.pgpass.
// It holds no password: the password file it names does, readable only by
// the user that runs spotflow (and the one that runs PostgreSQL). pgx and
// libpq (psql) read it; other clients take the password from its last field.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable&passfile=%s",
		role, c.port, database, strings.ReplaceAll(url.QueryEscape(c.passfile()), "%2F", "/"))
}

// Started reports whether Open started the server (false when it was already
// running). Callers that did not start it usually leave it running.
func (c *Cluster) Started() bool {
	return c.started
}

// Dir is the cluster's data directory: DataDir/postgres, or the directory the
// cluster was relocated to when the postgres user cannot reach DataDir.
func (c *Cluster) Dir() string {
	return c.dir
}

// Stop stops the server with pg_ctl's fast mode, which rolls back open
// transactions and disconnects clients. It stops the server even when another
// process is using it, returns nil when the server is not running, and so is
// safe to call twice.
func (c *Cluster) Stop(ctx context.Context) error {
	unlock, err := lock(ctx, filepath.Join(c.dataDir, lockName), c.log)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := c.state()
	if err != nil {
		return err
	}
	if !st.running {
		return nil
	}
	c.log.Info("stopping postgres server", "pid", st.pid)
	out, err := c.pgCtl(ctx, "stop", "-w", "-m", "fast", "-D", c.dir)
	if err != nil {
		if st, serr := c.state(); serr == nil && !st.running {
			return nil
		}
		return fmt.Errorf("stop postgres server in %s: %w%s", c.dir, err, tail(out))
	}
	return nil
}

// Stop stops the server of the cluster of cfg.DataDir, if there is one and
// it runs, without opening the cluster first: it neither creates, starts
// nor upgrades one, and needs no connection to it. See Cluster.Stop.
func Stop(ctx context.Context, cfg Config) error {
	if cfg.DataDir == "" {
		return errors.New("stop postgres cluster: Config.DataDir is empty")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	dataDir, err := prepareDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	run, err := newRunner()
	if err != nil {
		return err
	}
	place, err := locate(dataDir, run)
	if err != nil {
		return err
	}
	version := clusterVersion(place.dir)
	if version == "" {
		return nil
	}
	bins, err := findBinaries(cfg.BinDir, version)
	if err != nil {
		return err
	}
	c := &Cluster{dir: place.dir, relocated: place.relocated, dataDir: dataDir, bins: bins, run: run, log: log.With("dir", place.dir)}
	return c.Stop(ctx)
}

// prepareDataDir creates dataDir if needed and returns its absolute path with
// symbolic links resolved, so every spelling of it names the same cluster.
func prepareDataDir(dataDir string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("resolve data directory %s: %w", dataDir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("resolve data directory %s: %w", abs, err)
	}
	return resolved, nil
}
