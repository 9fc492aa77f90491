package localpg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs PostgreSQL's programs: as the current user, or as the postgres
// OS user when the process is root, because PostgreSQL refuses to run as root.
type runner struct {
	// cred is nil when programs run as the current user.
	cred *syscall.Credential
	// home is the postgres user's home directory, set with cred.
	home string
}

// newRunner returns a runner for the current user, or for the postgres user
// when the process is root.
func newRunner() (runner, error) {
	if os.Geteuid() != 0 {
		return runner{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runner{}, fmt.Errorf("look up the postgres user, which runs PostgreSQL when spotflow runs as root (the postgresql package creates it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return runner{}, fmt.Errorf("parse uid of the postgres user: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return runner{}, fmt.Errorf("parse gid of the postgres user: %w", err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return runner{}, fmt.Errorf("look up groups of the postgres user: %w", err)
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return runner{}, fmt.Errorf("parse group %q of the postgres user: %w", id, err)
		}
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return runner{cred: cred, home: u.HomeDir}, nil
}

// asPostgres reports whether programs run as the postgres user rather than
// the current user.
func (r runner) asPostgres() bool {
	return r.cred != nil
}

// command prepares name to run in dir. PG* variables are dropped from the
// environment so that a developer's PGDATA or PGPORT cannot redirect it. The
// program gets its own process group, so a Ctrl-C meant for spotflow does not
// also reach the server that pg_ctl starts.
func (r runner) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second // should a child hold the output open
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred, Setpgid: true}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG")
	})
	if r.asPostgres() {
		env = slices.DeleteFunc(env, func(kv string) bool {
			return strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "USER=") || strings.HasPrefix(kv, "LOGNAME=")
		})
		env = append(env, "HOME="+r.home, "USER=postgres", "LOGNAME=postgres")
	}
	cmd.Env = env
	return cmd
}

// chown gives path to the user that runs PostgreSQL; a no-op when that is the
// current user.
func (r runner) chown(path string) error {
	if !r.asPostgres() {
		return nil
	}
	if err := os.Lchown(path, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
		return fmt.Errorf("give %s to the postgres user: %w", path, err)
	}
	return nil
}

// canReach reports whether the user that runs PostgreSQL may traverse dir and
// every directory above it. Directories that do not exist yet are skipped:
// localpg creates them traversable. ACLs are not consulted.
func (r runner) canReach(dir string) bool {
	if !r.asPostgres() {
		return true
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return false
		case !r.mayTraverse(fi):
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// mayTraverse applies the owner, group, other rule for the execute bit of a
// directory to the postgres user.
func (r runner) mayTraverse(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return false
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == r.cred.Uid:
		return perm&0o100 != 0
	case st.Gid == r.cred.Gid || slices.Contains(r.cred.Groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// tail returns the last lines of a program's output, indented on lines of
// their own, for appending to an error.
func tail(out []byte) string {
	const maxLines, maxBytes = 20, 4096
	s := strings.TrimSpace(string(out))
	if s == "" {
		return ""
	}
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	lines := strings.Split(s, "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}
