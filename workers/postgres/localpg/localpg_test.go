package localpg_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

func TestOpen_StartsClusterServingTheSpotflowDatabase(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")

	c := mustOpen(t, dataDir)

	if !c.Started() {
		t.Error("Started() = false for a cluster Open created, want true")
	}
	if want := filepath.Join(dataDir, "postgres"); c.Dir() != want {
		t.Errorf("Dir() = %q, want %q", c.Dir(), want)
	}
	wantSuffix := "/spotflow?sslmode=disable&passfile=" + filepath.Join(c.Dir(), "spotflow.pgpass")
	if !strings.HasPrefix(c.URL(), "postgres://spotflow@127.0.0.1:") || !strings.HasSuffix(c.URL(), wantSuffix) {
		t.Errorf("URL() = %q, want postgres://spotflow@127.0.0.1:PORT%s", c.URL(), wantSuffix)
	}
	if got := query(t, c.URL(), "SELECT 1::text"); got != "1" {
		t.Errorf("SELECT 1 = %q, want 1", got)
	}
	if got := query(t, c.URL(), "SELECT current_database()"); got != "spotflow" {
		t.Errorf("current_database() = %q, want spotflow", got)
	}
	if os.Geteuid() == 0 {
		assertOwnedByPostgres(t, c.Dir())
	}
}

func TestOpen_ReusesStoppedClusterWithItsPortAndData(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	first := mustOpen(t, dataDir)
	exec(t, first.URL(), "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")

	stop(t, first)
	stop(t, first) // a second Stop is a no-op
	assertStopped(t, first)

	second := mustOpen(t, dataDir)

	if !second.Started() {
		t.Error("Started() = false after reopening a stopped cluster, want true")
	}
	if second.URL() != first.URL() || second.Dir() != first.Dir() {
		t.Errorf("reopened cluster at %s (%s), want %s (%s)", second.URL(), second.Dir(), first.URL(), first.Dir())
	}
	if got := query(t, second.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row after restart = %q, want kept", got)
	}
}

func TestOpen_MovesANewClustersPortTakenBeforeItsFirstStart(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	c := mustOpen(t, dataDir)
	exec(t, c.URL(), "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
	stop(t, c)
	before := c.URL()
	u, err := url.Parse(before)
	if err != nil {
		t.Fatal(err)
	}
	// Someone takes the port between initdb and the first start.
	taken, err := net.Listen("tcp", "127.0.0.1:"+u.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	// A cluster made earlier keeps its port and says why it cannot start.
	if _, err := open(t, dataDir); err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Open of an existing cluster whose port is taken: %v, want the server's refusal", err)
	}
	// A cluster on its first start moves to another port.
	if err := localpg.StartAsNew(t.Context(), c); err != nil {
		t.Fatalf("first start with its port taken: %v", err)
	}
	if c.URL() == before {
		t.Fatalf("URL still %s after the port moved", before)
	}
	if got := query(t, c.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row on the moved port = %q, want kept", got)
	}
	// The move is kept: spotflow.conf and the password file name the new port.
	stop(t, c)
	again := mustOpen(t, dataDir)
	if again.URL() != c.URL() {
		t.Errorf("reopened at %s, want the moved %s", again.URL(), c.URL())
	}
	if got := query(t, again.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row after reopening = %q, want kept", got)
	}
}

func TestOpen_ReusesRunningServerWithoutStartingIt(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	first := mustOpen(t, dataDir)

	second := mustOpen(t, dataDir)

	if second.Started() {
		t.Error("Started() = true for a server that was already running, want false")
	}
	if second.URL() != first.URL() || second.Dir() != first.Dir() {
		t.Errorf("second Open gave %s (%s), want %s (%s)", second.URL(), second.Dir(), first.URL(), first.Dir())
	}
	if got := query(t, second.URL(), "SELECT 1::text"); got != "1" {
		t.Errorf("SELECT 1 = %q, want 1", got)
	}

	stop(t, second)
	assertStopped(t, first)
	stop(t, first) // the server is gone already: no error
}

func TestOpen_RelocatesClusterOutOfDirectoryPostgresCannotReach(t *testing.T) {
	t.Parallel()
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(private, "repo", ".data")

	first := mustOpen(t, dataDir)
	exec(t, first.URL(), "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")

	inPlace := filepath.Join(dataDir, "postgres")
	if os.Geteuid() != 0 {
		// Without root the server runs as the current user, which reaches it.
		if first.Dir() != inPlace {
			t.Errorf("Dir() = %q, want %q", first.Dir(), inPlace)
		}
		return
	}
	if strings.HasPrefix(first.Dir(), private) {
		t.Fatalf("Dir() = %q, want a directory outside %s, which the postgres user cannot reach", first.Dir(), private)
	}
	assertOwnedByPostgres(t, first.Dir())
	pointer, err := os.ReadFile(filepath.Join(dataDir, "postgres.location"))
	if err != nil {
		t.Fatalf("read pointer file: %v", err)
	}
	if !bytes.Contains(pointer, []byte(first.Dir()+"\n")) {
		t.Errorf("pointer file does not name %s:\n%s", first.Dir(), pointer)
	}

	stop(t, first)
	second := mustOpen(t, dataDir)

	if second.Dir() != first.Dir() || second.URL() != first.URL() {
		t.Errorf("reopened cluster at %s (%s), want %s (%s)", second.URL(), second.Dir(), first.URL(), first.Dir())
	}
	if got := query(t, second.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row after restart = %q, want kept", got)
	}
}

func TestOpen_StartsServerAfterItWasKilled(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	first := mustOpen(t, dataDir)
	exec(t, first.URL(), "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
	kill(t, first)

	second := mustOpen(t, dataDir)

	if !second.Started() {
		t.Error("Started() = false after the server was killed, want true")
	}
	if got := query(t, second.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row after crash = %q, want kept", got)
	}
}

func TestOpen_StartsServerWhosePidFileNamesAnUnrelatedProcess(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	first := mustOpen(t, dataDir)
	pidFile := kill(t, first)
	// The killed server's PID now belongs to another process, here this one.
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(data), "\n")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"+rest), 0o600); err != nil {
		t.Fatal(err)
	}

	second := mustOpen(t, dataDir)

	if !second.Started() {
		t.Error("Started() = false with a stale postmaster.pid, want true")
	}
	if got := query(t, second.URL(), "SELECT 1::text"); got != "1" {
		t.Errorf("SELECT 1 = %q, want 1", got)
	}
}

func TestOpen_InitialisesOnceWhenCalledConcurrently(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")

	clusters := make([]*localpg.Cluster, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			clusters[i], errs[i] = open(t, dataDir)
		})
	}
	wg.Wait()
	for i, err := range errs {
		pgtest.Opened(t, "Open", err)
		cleanUp(t, clusters[i], dataDir)
	}

	if clusters[0].Started() == clusters[1].Started() {
		t.Errorf("Started() = %v and %v, want exactly one true", clusters[0].Started(), clusters[1].Started())
	}
	if clusters[0].URL() != clusters[1].URL() {
		t.Errorf("URLs differ: %s and %s", clusters[0].URL(), clusters[1].URL())
	}
	if got := query(t, clusters[1].URL(), "SELECT 1::text"); got != "1" {
		t.Errorf("SELECT 1 = %q, want 1", got)
	}
}

func TestOpen_ReportsMissingBinaries(t *testing.T) {
	t.Parallel()

	_, err := localpg.Open(t.Context(), localpg.Config{DataDir: t.TempDir(), BinDir: t.TempDir()})

	if !errors.Is(err, localpg.ErrNoBinaries) {
		t.Fatalf("Open with an empty BinDir: %v, want ErrNoBinaries", err)
	}
	if !strings.Contains(err.Error(), "install the postgresql package") {
		t.Errorf("error %q does not say to install the postgresql package", err)
	}
}

func TestOpen_RefusesACertificateWithoutItsKey(t *testing.T) {
	t.Parallel()
	for _, cfg := range []localpg.Config{{TLSCert: "cert.pem"}, {TLSKey: "key.pem"}} {
		cfg.DataDir = t.TempDir()

		_, err := localpg.Open(t.Context(), cfg)

		if err == nil || !strings.Contains(err.Error(), "Config.TLSCert and Config.TLSKey go together") {
			t.Errorf("Open with TLSCert %q and TLSKey %q: %v, want an error saying they go together", cfg.TLSCert, cfg.TLSKey, err)
		}
	}
}

// open opens the cluster of dataDir with a bounded wait, logging to the test.
func open(t *testing.T, dataDir string) (*localpg.Cluster, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return localpg.Open(ctx, localpg.Config{
		DataDir: dataDir,
		Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
}

// mustOpen opens the cluster of dataDir and stops it when the test ends.
func mustOpen(t *testing.T, dataDir string) *localpg.Cluster {
	t.Helper()
	c, err := open(t, dataDir)
	pgtest.Opened(t, "Open", err)
	cleanUp(t, c, dataDir)
	return c
}

// cleanUp stops c when the test ends, and removes its directory when it was
// relocated out of dataDir.
func cleanUp(t *testing.T, c *localpg.Cluster, dataDir string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if !strings.HasPrefix(c.Dir(), dataDir+string(filepath.Separator)) {
			if err := os.RemoveAll(c.Dir()); err != nil {
				t.Errorf("remove relocated cluster: %v", err)
			}
			_ = os.Remove(filepath.Dir(c.Dir())) // only when no other cluster is left there
		}
	})
}

// reachableDir is a temporary directory that the postgres user can traverse
// when the tests run as root; t.TempDir makes private ones.
func reachableDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func stop(t *testing.T, c *localpg.Cluster) {
	t.Helper()
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// kill kills the server's postmaster with SIGKILL, as a crash or the OOM
// killer would, waits until it is gone, and returns its postmaster.pid.
func kill(t *testing.T, c *localpg.Cluster) (pidFile string) {
	t.Helper()
	pidFile = filepath.Join(c.Dir(), "postmaster.pid")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("parse %s: %v", pidFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postmaster: %v", err)
	}
	workertest.WaitWithin(t, 10*time.Second, "the killed postmaster to exit", func() error {
		if !gone(pid) {
			return fmt.Errorf("postmaster %d still alive", pid)
		}
		return nil
	})
	return pidFile
}

// gone reports whether process pid has exited; a zombie that nobody reaped
// counts as gone.
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) != nil
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}

// assertStopped checks that nothing answers at c's URL and that the server
// left no postmaster.pid behind.
func assertStopped(t *testing.T, c *localpg.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, c.URL()); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("connected to %s after Stop", c.URL())
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid after Stop: %v, want it gone", err)
	}
}

func assertOwnedByPostgres(t *testing.T, dir string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); uid != u.Uid {
		t.Errorf("%s owned by uid %s, want postgres (%s)", dir, uid, u.Uid)
	}
}

// query returns the single text value sql selects.
func query(t *testing.T, url, sql string) string {
	t.Helper()
	conn := connect(t, url)
	var s string
	if err := conn.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func exec(t *testing.T, url, sql string) {
	t.Helper()
	conn := connect(t, url)
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
