package localpg

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// pointerName is the file inside DataDir that names a relocated cluster.
const pointerName = "postgres.location"

// placement is where the cluster of a data directory lives.
type placement struct {
	dir string
	// relocated is true when dir lies outside DataDir, because the postgres
	// user cannot reach DataDir.
	relocated bool
}

// locate decides where the cluster of dataDir lives: where its pointer file
// says; else in dataDir/postgres when the user that runs PostgreSQL can reach
// it or a cluster is already there; else in a directory outside dataDir named
// after a hash of dataDir's path, so every Open of dataDir picks the same one.
func locate(dataDir string, run runner) (placement, error) {
	if dir, ok, err := readPointer(dataDir); err != nil || ok {
		return placement{dir: dir, relocated: ok}, err
	}
	inPlace := filepath.Join(dataDir, clusterName)
	if run.canReach(dataDir) || clusterVersion(inPlace) != "" {
		return placement{dir: inPlace}, nil
	}
	for _, dir := range relocations(dataDir) {
		if run.canReach(filepath.Dir(dir)) {
			return placement{dir: dir, relocated: true}, nil
		}
	}
	return placement{}, fmt.Errorf("place postgres cluster: the postgres user cannot reach %s nor any of %s; make one of them traversable (chmod o+x)",
		dataDir, strings.Join(relocations(dataDir), ", "))
}

// relocations are the directories, best first, where the cluster of dataDir
// may live when the postgres user cannot reach dataDir. /var/lib comes first
// because systemd-tmpfiles ages files out of /var/tmp, which would corrupt a
// cluster left alone for a month.
func relocations(dataDir string) []string {
	sum := sha256.Sum256([]byte(dataDir))
	id := hex.EncodeToString(sum[:6])
	return []string{
		filepath.Join("/var/lib/spotflow", "postgres-"+id),
		filepath.Join("/var/tmp", "spotflow-postgres-"+id),
	}
}

// readPointer returns the directory named by dataDir's pointer file, and
// false when there is no pointer file.
func readPointer(dataDir string) (string, bool, error) {
	path := filepath.Join(dataDir, pointerName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read postgres cluster pointer: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			return "", false, fmt.Errorf("read postgres cluster pointer %s: %q is not an absolute path", path, line)
		}
		return filepath.Clean(line), true, nil
	}
	return "", false, fmt.Errorf("read postgres cluster pointer %s: it names no directory", path)
}

// writePointer records in dataDir where its relocated cluster lives, for the
// next Open and for a human looking for it.
func writePointer(dataDir, dir string) error {
	content := fmt.Sprintf(`# spotflow's PostgreSQL cluster for this data directory lives in the directory
# below, because the postgres user, which runs PostgreSQL when spotflow runs
# as root, cannot reach this one. Stop the server and delete both to start
# afresh.
%s
`, dir)
	path := filepath.Join(dataDir, pointerName)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write postgres cluster pointer: %w", err)
	}
	return nil
}

// prepareRelocation makes sure the parent of a relocated cluster directory
// exists and is traversable, and that dir, if it exists, is a real directory
// of root or the postgres user: /var/tmp is writable by everyone, who could
// otherwise plant a directory or a link there for spotflow to use.
func prepareRelocation(dir string, run runner) error {
	parent := filepath.Dir(dir)
	if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", parent, err)
		}
		// Mkdir's mode is filtered by the umask; the postgres user must get in.
		if err := os.Chmod(parent, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", parent, err)
		}
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	trusted := ok && (st.Uid == 0 || (run.asPostgres() && st.Uid == run.cred.Uid) || int(st.Uid) == os.Geteuid())
	if !fi.IsDir() || !trusted {
		return fmt.Errorf("place postgres cluster: %s exists but is not a directory of root or the postgres user; remove it", dir)
	}
	return nil
}
