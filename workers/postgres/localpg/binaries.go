package localpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// debianRoot holds one bin directory per installed major version on Debian
// and Ubuntu, e.g. /usr/lib/postgresql/15/bin.
const debianRoot = "/usr/lib/postgresql"

// ErrNoBinaries means no PostgreSQL server binaries (initdb and pg_ctl) were
// found. Open wraps it; test with errors.Is.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install the postgresql package (e.g. apt-get install postgresql) or set Config.BinDir")

// binaries are the paths of the PostgreSQL programs localpg runs.
type binaries struct {
	initdb string
	pgCtl  string
	// postgres is the server itself, which localpg runs directly only in
	// single-user mode, to provision the cluster while no server runs.
	postgres string
}

// binariesIn are the programs of the directory dir.
func binariesIn(dir string) binaries {
	return binaries{initdb: filepath.Join(dir, "initdb"), pgCtl: filepath.Join(dir, "pg_ctl"), postgres: filepath.Join(dir, "postgres")}
}

// findBinaries returns binDir's programs when binDir is set. Otherwise it
// prefers the Debian directory of version want (the version of an existing
// cluster, whose files other major versions cannot read), then the highest
// Debian version, then PATH.
func findBinaries(binDir, want string) (binaries, error) {
	if binDir != "" {
		b := binariesIn(binDir)
		if !b.present() {
			return binaries{}, fmt.Errorf("find postgres binaries in Config.BinDir %s: %w", binDir, ErrNoBinaries)
		}
		return b, nil
	}
	if b, ok := debianBinaries(want); ok {
		return b, nil
	}
	// pg_ctl starts the postgres beside it, so the three live together.
	if pgCtl, err := exec.LookPath("pg_ctl"); err == nil {
		if b := binariesIn(filepath.Dir(pgCtl)); b.present() {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("find postgres binaries in %s/*/bin and PATH: %w", debianRoot, ErrNoBinaries)
}

// debianBinaries picks a version under debianRoot: want when present, else
// the highest.
func debianBinaries(want string) (binaries, bool) {
	entries, err := os.ReadDir(debianRoot)
	if err != nil {
		return binaries{}, false
	}
	var best binaries
	var bestVersion []int
	for _, e := range entries {
		version, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		b := binariesIn(filepath.Join(debianRoot, e.Name(), "bin"))
		if !b.present() {
			continue
		}
		if e.Name() == want {
			return b, true
		}
		if bestVersion == nil || newer(version, bestVersion) {
			best, bestVersion = b, version
		}
	}
	return best, bestVersion != nil
}

// present reports whether the programs exist and are executable.
func (b binaries) present() bool {
	return executable(b.initdb) && executable(b.pgCtl) && executable(b.postgres)
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// parseVersion parses a major version directory name such as "15" or "9.6".
func parseVersion(name string) ([]int, bool) {
	var version []int
	for part := range strings.SplitSeq(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		version = append(version, n)
	}
	return version, true
}

// newer reports whether version a is higher than version b.
func newer(a, b []int) bool {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return len(a) > len(b)
}

// clusterVersion is the major version of the cluster in dir, or "" when dir
// holds no cluster yet.
func clusterVersion(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
