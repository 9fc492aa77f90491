package localpg

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

const (
	// passfileName is the file inside the cluster holding the password of
	// role, in the format of PostgreSQL's password file, which URL names.
	passfileName = "spotflow.pgpass"
	// hbaMarker opens the pg_hba.conf localpg writes; a cluster whose
	// pg_hba.conf lacks it was made by an earlier spotflow, which trusted
	// every local connection.
	hbaMarker = "# Written by spotflow (workers/postgres/localpg)"
	// identMap is the name of the map in pg_ident.conf that lets the OS user
	// running the server in as the superuser over the Unix socket.
	identMap = "localpg"
	// scramIterations is the iteration count of the SCRAM verifier, as
	// PostgreSQL's own default.
	scramIterations = 4096
)

// newPassword is a random password of 32 bytes, in hex so that it needs no
// escaping in a password file or a URL.
func newPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scramVerifier is what PostgreSQL stores for password under
// scram-sha-256 (RFC 5802, RFC 7677), computed here so that the password
// itself never reaches the server, its log or a command's output: a role
// created with it logs in with password, nothing else.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("derive scram verifier: %w", err)
	}
	mac := func(msg string) []byte {
		h := hmac.New(sha256.New, salted)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac("Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(mac("Server Key"))), nil
}

// passfileEntry is the password file's line for role on port: any host,
// as a client may name the server 127.0.0.1 or localhost.
func passfileEntry(port int, password string) string {
	return fmt.Sprintf("*:%d:*:%s:%s\n", port, role, password)
}

// readPassword returns the password in the password file at path, and false
// when there is no such file.
func readPassword(path string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read postgres password: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) == 5 && fields[3] == role && fields[4] != "" {
			return fields[4], true, nil
		}
	}
	return "", false, fmt.Errorf("read postgres password: %s holds no password of role %s", path, role)
}

// hbaConf is the cluster's pg_hba.conf: spotflow's role reaches its
// database over TCP from this machine with its password; the superuser only
// over the Unix socket, as the OS user that runs the server; nobody else.
func hbaConf() string {
	return hbaMarker + `: nothing is trusted.
# spotflow's role, ` + role + `, reaches its database over TCP from this machine
# with the password in ` + passfileName + `. The superuser, ` + superuser + `, is for
# provisioning and maintenance only: over the Unix socket in this directory,
# as the OS user that runs the server (pg_ident.conf). Anything else is refused.
# TYPE  DATABASE  USER      ADDRESS       METHOD
local   all       ` + superuser + `                peer map=` + identMap + `
host    ` + database + `  ` + role + `  127.0.0.1/32  scram-sha-256
`
}

// identConf is the cluster's pg_ident.conf: the OS user that runs the
// server, osUser, may log in as the superuser. Empty osUser maps nobody.
func identConf(osUser string) string {
	conf := "# Written by spotflow (workers/postgres/localpg): the OS user that runs the\n" +
		"# server may log in as the superuser over the Unix socket.\n" +
		"# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n"
	if osUser != "" && !strings.ContainsAny(osUser, " \t\"#") {
		conf += identMap + "  " + osUser + "  " + superuser + "\n"
	}
	return conf
}

// serverUser is the name of the OS user that runs the server, or "" when it
// cannot be told.
func (r runner) serverUser() string {
	if r.asPostgres() {
		return "postgres"
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// isLegacy reports whether the cluster in dir was made by an earlier
// spotflow: its pg_hba.conf is not localpg's, so it trusts every local
// connection, and "spotflow" is its superuser.
func isLegacy(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "pg_hba.conf"))
	if err != nil {
		return false, fmt.Errorf("read postgres authentication settings: %w", err)
	}
	return !bytes.HasPrefix(data, []byte(hbaMarker)), nil
}

// writeAuth writes pg_hba.conf and pg_ident.conf into the cluster in dir. A
// running server reads them when it reloads its configuration.
func (c *Cluster) writeAuth(dir string) error {
	if err := c.writeFile(filepath.Join(dir, "pg_ident.conf"), []byte(identConf(c.run.serverUser()))); err != nil {
		return fmt.Errorf("write postgres authentication settings: %w", err)
	}
	if err := c.writeFile(filepath.Join(dir, "pg_hba.conf"), []byte(hbaConf())); err != nil {
		return fmt.Errorf("write postgres authentication settings: %w", err)
	}
	return nil
}

// writePassfile writes password into the password file of the cluster in
// dir, with the port the cluster listens on.
func (c *Cluster) writePassfile(dir string, port int, password string) error {
	if err := c.writeFile(filepath.Join(dir, passfileName), []byte(passfileEntry(port, password))); err != nil {
		return fmt.Errorf("write postgres password: %w", err)
	}
	return nil
}

// writeFile replaces the file at path with data, mode 0600, owned by the user
// that runs PostgreSQL (so that the server reads its settings, and a base
// backup taken as that user reads every file), without a moment when the
// file is missing or half written.
func (c *Cluster) writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := c.run.chown(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// single runs statements, one a line, in the database db of the cluster in
// dir with the server in single-user mode: as the user that runs
// PostgreSQL, with no server running and no connection to authenticate.
// The first error stops it and fails.
func (c *Cluster) single(ctx context.Context, dir, db string, statements ...string) error {
	for _, s := range statements {
		if strings.ContainsAny(s, "\r\n") {
			return fmt.Errorf("provision postgres cluster: statement spans lines: %.40q", s)
		}
	}
	cmd := c.run.command(ctx, dir, c.bins.postgres, "--single", "-D", dir, "-c", "exit_on_error=on", db)
	cmd.Stdin = strings.NewReader(strings.Join(statements, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err == nil && bytes.Contains(out, []byte("ERROR:")) {
		err = errors.New("a statement failed")
	}
	if err != nil {
		return fmt.Errorf("provision postgres cluster in %s (single-user mode, database %s): %w%s", dir, db, err, tail(out))
	}
	return nil
}

// provision gives the cluster just made in dir, whose server does not run,
// spotflow's role, with password, and its database, owned by the role, in
// single-user mode; then writes the password file and the authentication
// settings.
func (c *Cluster) provision(ctx context.Context, dir string, port int) error {
	password := newPassword()
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	ident := quoteIdent(role)
	err = c.single(ctx, dir, "postgres",
		"CREATE ROLE "+ident+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD "+quoteLiteral(verifier),
		"CREATE DATABASE "+quoteIdent(database)+" OWNER "+ident,
	)
	if err != nil {
		return err
	}
	// The role may then drop and recreate public, as on PostgreSQL 15 and
	// later, where its owner is the database's owner; earlier versions give
	// it to the superuser.
	if err := c.single(ctx, dir, database, "ALTER SCHEMA public OWNER TO "+ident); err != nil {
		return err
	}
	if err := c.writePassfile(dir, port, password); err != nil {
		return err
	}
	return c.writeAuth(dir)
}

// resetPassword gives the role a new password, and writes it into the
// password file, when the file has gone missing. The server must not be
// running.
func (c *Cluster) resetPassword(ctx context.Context) error {
	c.log.Warn("postgres password file missing; giving spotflow's role a new password", "passfile", c.passfile())
	password := newPassword()
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	if err := c.single(ctx, c.dir, "postgres", "ALTER ROLE "+quoteIdent(role)+" PASSWORD "+quoteLiteral(verifier)); err != nil {
		return err
	}
	return c.writePassfile(c.dir, c.port, password)
}

// passfile is the path of the cluster's password file.
func (c *Cluster) passfile() string {
	return filepath.Join(c.dir, passfileName)
}

// quoteIdent quotes a name for SQL.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes a string for SQL (standard_conforming_strings on).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
