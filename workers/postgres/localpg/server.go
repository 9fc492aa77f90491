package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// logName is the server's log file inside the cluster.
	logName = "server.log"
	// readyTimeout bounds the wait for a server to accept connections.
	readyTimeout = 30 * time.Second
	// startAttempts bounds the retries of a start that fails because the
	// processes of a killed server still hold its shared memory.
	startAttempts = 5
)

// serverState is what postmaster.pid says about the cluster's server.
type serverState struct {
	pid int
	// running is true when pid is a live postmaster of this cluster.
	running bool
	// stale is true when postmaster.pid outlived its server: pid is dead, a
	// zombie nobody reaped (common in containers without an init), or a
	// different process that took the number. PostgreSQL takes the last two
	// for a running server and refuses to start.
	stale bool
}

// state reads postmaster.pid. No file means no server is running.
func (c *Cluster) state() (serverState, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return serverState{}, nil
	}
	if err != nil {
		return serverState{}, fmt.Errorf("read postgres server state: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		// Being written by a starting server, or garbage: leave it to
		// PostgreSQL to judge.
		return serverState{}, nil
	}
	if alive(pid) && isPostmasterOf(pid, c.dir) {
		return serverState{pid: pid, running: true}, nil
	}
	return serverState{pid: pid, stale: true}, nil
}

// ensureRunning starts the server unless it is running already, with TLS
// files copied in first when Config names them, then waits until it accepts
// connections. Before it starts a cluster of localpg's (not legacy) whose
// password file has gone missing, it gives spotflow's role a new password.
func (c *Cluster) ensureRunning(ctx context.Context, legacy bool) error {
	st, err := c.state()
	if err != nil {
		return err
	}
	_, hasPassword, err := readPassword(c.passfile())
	if err != nil {
		return err
	}
	if st.running {
		c.log.Info("reusing running postgres server", "pid", st.pid, "port", c.port)
		if !legacy && !hasPassword {
			return fmt.Errorf("open postgres cluster: its password file %s is missing; stop the server (spotflow postgres stop) and start it again to give spotflow's role a new one", c.passfile())
		}
		return c.waitReady(ctx)
	}
	if st.stale {
		if err := c.removeStaleLocks(st.pid); err != nil {
			return err
		}
	}
	if !legacy && !hasPassword {
		if err := c.resetPassword(ctx); err != nil {
			return err
		}
	}
	if c.tlsCert != "" {
		if err := c.installTLS(); err != nil {
			return err
		}
	}
	if err := c.start(ctx); err != nil {
		return err
	}
	c.started = true
	return c.waitReady(ctx)
}

// removeStaleLocks removes the lock files a server killed without cleaning up
// left behind: postmaster.pid and the socket's lock, both naming the dead
// server's PID. It is safe with orphaned backends still running: PostgreSQL
// also finds those through the shared memory they hold, and refuses to start.
func (c *Cluster) removeStaleLocks(pid int) error {
	c.log.Info("removing lock files of a postgres server that is gone", "pid", pid)
	locks, err := filepath.Glob(filepath.Join(c.dir, ".s.PGSQL.*.lock"))
	if err != nil {
		return fmt.Errorf("remove stale postgres locks: %w", err)
	}
	for _, path := range append(locks, filepath.Join(c.dir, "postmaster.pid")) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale postgres locks: %w", err)
		}
	}
	return nil
}

// startOptions are the settings every start passes, whenever the cluster
// was made: each commit's time is kept (track_commit_timestamp), so that
// the load generator can tell when a request became readable as completed
// (pg_xact_commit_timestamp of its row); it costs a few bytes per commit.
const startOptions = "-c track_commit_timestamp=on"

// start runs pg_ctl start. When a killed server's processes still hold its
// shared memory, which they let go of within moments, it tries again.
func (c *Cluster) start(ctx context.Context) error {
	logPath := filepath.Join(c.dir, logName)
	args := []string{"start", "-w", "-D", c.dir, "-l", logPath, "-o", startOptions}
	if c.tlsCert != "" {
		args = append(args, "-o", tlsOptions)
	}
	c.log.Info("starting postgres server", "port", c.port, "log", logPath, "tls", c.tlsCert != "")
	for attempt := 1; ; attempt++ {
		offset := fileSize(logPath)
		out, err := c.pgCtl(ctx, args...)
		if err == nil {
			return nil
		}
		log := readFrom(logPath, offset)
		// A new cluster's port, free when initdb began, may have been
		// taken since (another process listening, or an outgoing
		// connection's ephemeral port): give it another.
		if attempt < startAttempts && c.created && bytes.Contains(log, []byte("Address already in use")) {
			if err := c.movePort(); err != nil {
				return err
			}
			continue
		}
		if attempt < startAttempts && bytes.Contains(log, []byte("is still in use")) {
			c.log.Info("shared memory of a killed postgres server still in use; retrying", "attempt", attempt)
			t := time.NewTimer(time.Duration(attempt) * 200 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
				continue
			}
		}
		return fmt.Errorf("start postgres server in %s: %w%s%s", c.dir, err, tail(out), tail(log))
	}
}

// waitReady polls until the server answers connections, for at most
// readyTimeout. Any answer but "starting up" will do: whether spotflow's role
// gets in is check's to say.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, c.URL())
		if err == nil {
			return conn.Close(ctx)
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code != "57P03" { // cannot_connect_now
			return nil
		}
		select {
		case <-ctx.Done():
			logPath := filepath.Join(c.dir, logName)
			return fmt.Errorf("wait for postgres server on port %d: %w%s", c.port, err, tail(readFrom(logPath, fileSize(logPath)-4096)))
		case <-tick.C:
		}
	}
}

// check connects to spotflow's database as spotflow's role, with the
// password URL names.
func (c *Cluster) check(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		return fmt.Errorf("connect to the local postgres cluster in %s as %s: %w", c.dir, role, err)
	}
	return conn.Close(ctx)
}

// pgCtl runs pg_ctl with args and returns its output.
func (c *Cluster) pgCtl(ctx context.Context, args ...string) ([]byte, error) {
	return c.run.command(ctx, c.dir, c.bins.pgCtl, args...).CombinedOutput()
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: the signal is all there is to go by
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// isPostmasterOf reports whether the live process pid is a PostgreSQL server
// working in dir. Without /proc to tell, it assumes so.
func isPostmasterOf(pid int, dir string) bool {
	if runtime.GOOS != "linux" {
		return true
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true
	}
	if name := strings.TrimSpace(string(comm)); name != "postgres" && name != "postmaster" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		dir = resolved
	}
	return cwd == dir
}

// fileSize is the size of the file at path, 0 when it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file at path from offset on, or nothing when it cannot
// be read.
func readFrom(path string, offset int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(max(offset, 0), io.SeekStart); err != nil {
		return nil
	}
	data, _ := io.ReadAll(f)
	return data
}
