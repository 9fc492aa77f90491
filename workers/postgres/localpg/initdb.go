package localpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

const (
	// confName is the settings file localpg writes into the cluster and
	// includes from postgresql.conf. Its port line is where the port the
	// cluster was created with is remembered.
	confName = "spotflow.conf"
	// maxSocketPath is a conservative limit on the length of a Unix socket
	// path (sun_path is 108 bytes on Linux, 104 on macOS).
	maxSocketPath = 100
)

// ensureInitialised creates the cluster unless it exists, and records where a
// relocated cluster lives.
func (c *Cluster) ensureInitialised(ctx context.Context) error {
	if c.relocated {
		if err := prepareRelocation(c.dir, c.run); err != nil {
			return err
		}
	}
	if clusterVersion(c.dir) == "" {
		if err := c.initdb(ctx); err != nil {
			return err
		}
		c.created = true
	}
	if !c.relocated {
		return nil
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, pointerName)); errors.Is(err, fs.ErrNotExist) {
		c.log.Info("postgres cluster relocated: the postgres user cannot reach the data directory",
			"data_dir", c.dataDir, "pointer", filepath.Join(c.dataDir, pointerName))
		return writePointer(c.dataDir, c.dir)
	}
	return nil
}

// initdb creates and provisions the cluster. initdb writes into a sibling
// directory that is renamed into place once the cluster is complete and
// provisioned, so a process killed half way leaves no half-made cluster
// behind, only a leftover that the next call removes. initdb's instructions
// go to the captured output, which is shown only on failure, so
// --no-instructions (PostgreSQL 14+) is not needed. initdb's authentication
// settings never serve: provision replaces them before the server first
// starts.
func (c *Cluster) initdb(ctx context.Context) error {
	// A directory without PG_VERSION is only removed when empty: whatever is
	// in it is not localpg's to delete.
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("initialise postgres cluster: %s exists but holds no cluster; move it away: %w", c.dir, err)
	}
	tmp := c.dir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("initialise postgres cluster: remove leftover %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("initialise postgres cluster: %w", err)
	}
	if err := c.run.chown(tmp); err != nil {
		return fmt.Errorf("initialise postgres cluster: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}

	c.log.Info("initialising postgres cluster", "port", port, "initdb", c.bins.initdb, "relocated", c.relocated)
	out, err := c.run.command(ctx, tmp, c.bins.initdb,
		"--pgdata", tmp,
		"--auth-local", "peer",
		"--auth-host", "reject",
		"--username", superuser,
		"--encoding", "UTF8",
		"--locale", initdbLocale(),
		// Text compares byte by byte, the order C.UTF-8 gives UTF-8 text
		// anyway, without a library call per comparison: ids fill the
		// indexes the projection writes most.
		"--lc-collate", "C",
	).CombinedOutput()
	if err != nil {
		return fmt.Errorf("initialise postgres cluster in %s: initdb: %w%s", c.dir, err, tail(out))
	}
	if err := c.writeConf(tmp, port); err != nil {
		return err
	}
	if err := c.provision(ctx, tmp, port); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.dir); err != nil {
		return fmt.Errorf("initialise postgres cluster: %w", err)
	}
	return nil
}

// writeConf writes localpg's settings into the cluster being created in dir
// and includes them from postgresql.conf, after initdb's own settings so that
// they win. The socket directory names the cluster's final place.
func (c *Cluster) writeConf(dir string, port int) error {
	socketDir := c.dir
	if len(filepath.Join(socketDir, ".s.PGSQL."+strconv.Itoa(port))) > maxSocketPath {
		socketDir = "" // no Unix socket: clients use TCP anyway
	}
	conf := fmt.Sprintf(`# Written by spotflow (workers/postgres/localpg) when it created this cluster:
# a development and test server, reachable only from this machine.
listen_addresses = '127.0.0.1'
port = %d
# Inside the cluster, as /var/run/postgresql may be missing or not writable;
# empty when the path is too long for a socket.
unix_socket_directories = '%s'
max_connections = 200
shared_buffers = 128MB
# Data written is data kept, even on a test box.
fsync = on
# The data sits in memory or on an SSD: an index lookup costs about what a
# sequential read does. With the default of 4 the planner scans whole tables
# for a batch's few hundred ids once they reach some ten thousand rows.
random_page_cost = 1.1
effective_cache_size = 1GB
# Fewer checkpoints under sustained load, so fewer full-page images in the WAL.
max_wal_size = 4GB
checkpoint_timeout = 15min
`, port, strings.ReplaceAll(socketDir, "'", "''"))

	path := filepath.Join(dir, confName)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write postgres settings: %w", err)
	}
	if err := c.run.chown(path); err != nil {
		return fmt.Errorf("write postgres settings: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("include postgres settings: %w", err)
	}
	_, werr := fmt.Fprintf(f, "\n# Added by spotflow.\ninclude '%s'\n", confName)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("include postgres settings: %w", err)
	}
	return nil
}

// readPort returns the port written into the cluster in dir when it was
// created.
func readPort(dir string) (int, error) {
	path := filepath.Join(dir, confName)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read postgres port (was the cluster made by spotflow?): %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.TrimSpace(key) != "port" {
			continue
		}
		port, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || port <= 0 || port > 65535 {
			return 0, fmt.Errorf("read postgres port from %s: bad value %q", path, strings.TrimSpace(value))
		}
		return port, nil
	}
	return 0, fmt.Errorf("read postgres port: %s has no port line", path)
}

// movePort gives the cluster another free port, in spotflow.conf and in
// the password file: the one it was given when it was made was taken by
// someone else before its first start.
func (c *Cluster) movePort() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	path := filepath.Join(c.dir, confName)
	conf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("move postgres port: %w", err)
	}
	line := regexp.MustCompile(`(?m)^port = \d+$`)
	if !line.Match(conf) {
		return fmt.Errorf("move postgres port: %s has no port line", path)
	}
	conf = line.ReplaceAll(conf, []byte("port = "+strconv.Itoa(port)))
	if err := c.writeFile(path, conf); err != nil {
		return fmt.Errorf("move postgres port: %w", err)
	}
	if password, ok, err := readPassword(c.passfile()); err != nil {
		return err
	} else if ok {
		if err := c.writePassfile(c.dir, port, password); err != nil {
			return err
		}
	}
	c.log.Info("postgres port taken before the new cluster's first start; moved", "from", c.port, "to", port)
	c.port = port
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port for postgres: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pick a port for postgres: %w", err)
	}
	return port, nil
}

// initdbLocale is a locale present wherever localpg runs, whatever LANG says:
// C.UTF-8 on Linux (Debian, Ubuntu and Alpine always have it), else plain C.
// Either way text sorts by code point, the same on every machine.
func initdbLocale() string {
	if runtime.GOOS == "linux" {
		return "C.UTF-8"
	}
	return "C"
}
