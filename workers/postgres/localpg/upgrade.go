package localpg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// upgrader is the superuser that upgrade makes for the moment it renames the
// old superuser, which cannot rename itself.
const upgrader = "localpg_upgrade"

// upgrade brings a cluster made by an earlier spotflow, running and trusting
// every local connection with "spotflow" its bootstrap superuser, to what
// localpg makes now, keeping its data:
//
//  1. the bootstrap superuser is renamed "postgres" (by a superuser made for
//     the moment and dropped after);
//  2. a role "spotflow" is made, with LOGIN, a new password (kept in the
//     password file) and no other attribute;
//  3. it is given the database "spotflow" and, in it, every schema, table,
//     view, sequence, routine and type the old superuser owned outside the
//     system's schemas: what spotflow's migrations and tests make;
//  4. the authentication settings are replaced and the server reloads them.
//
// Until the last step every connection is trusted, so an upgrade cut short
// is taken up again by the next Open, from wherever it stopped. Sessions
// open before the upgrade keep their superuser until they end; processes of
// an earlier spotflow cannot connect after it.
func (c *Cluster) upgrade(ctx context.Context) error {
	c.log.Warn("upgrading a postgres cluster made by an earlier spotflow, which trusted every local connection with spotflow a superuser: "+
		"spotflow's role becomes an owner that is not a superuser, with a password; earlier versions of spotflow cannot use the cluster after this",
		"passfile", c.passfile())
	password, ok, err := readPassword(c.passfile())
	if err != nil {
		return err
	}
	if !ok {
		password = newPassword()
		if err := c.writePassfile(c.dir, c.port, password); err != nil {
			return err
		}
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}

	admin, boot, err := c.bootstrapSession(ctx)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if boot != superuser {
		if err := c.renameBootstrap(ctx, admin, boot); err != nil {
			return err
		}
	}
	steps := []string{
		"DROP ROLE IF EXISTS " + quoteIdent(upgrader),
		// A role "spotflow" other than the bootstrap superuser is one an
		// upgrade cut short made.
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ` + quoteLiteral(role) + `) THEN CREATE ROLE ` + quoteIdent(role) + `; END IF; END $$`,
		"ALTER ROLE " + quoteIdent(role) + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD " + quoteLiteral(verifier),
	}
	for _, sql := range steps {
		if _, err := admin.Exec(ctx, sql); err != nil {
			return fmt.Errorf("upgrade postgres cluster: %w", err)
		}
	}
	var hasDatabase bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&hasDatabase); err != nil {
		return fmt.Errorf("upgrade postgres cluster: %w", err)
	}
	sql := "ALTER DATABASE " + quoteIdent(database) + " OWNER TO " + quoteIdent(role)
	if !hasDatabase {
		sql = "CREATE DATABASE " + quoteIdent(database) + " OWNER " + quoteIdent(role)
	}
	if _, err := admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("upgrade postgres cluster: %w", err)
	}
	if err := c.reassignObjects(ctx); err != nil {
		return err
	}
	if err := c.writeAuth(c.dir); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("upgrade postgres cluster: reload authentication settings: %w", err)
	}
	c.log.Warn("upgraded the postgres cluster: spotflow connects with the password in its password file; the superuser, postgres, only over the Unix socket as the OS user that runs the server",
		"passfile", c.passfile(), "superuser", superuser)
	return nil
}

// bootstrapSession connects, trusted, to the database "postgres" as the
// bootstrap superuser of a legacy cluster, and returns its session and name:
// "spotflow" before an upgrade renames it, "postgres" after.
func (c *Cluster) bootstrapSession(ctx context.Context) (*pgx.Conn, string, error) {
	var conn *pgx.Conn
	var err error
	for _, user := range []string{role, superuser} {
		conn, err = pgx.Connect(ctx, c.trustedURL(user, "postgres"))
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "28000" { // no such role
			continue
		}
		break
	}
	if err != nil {
		return nil, "", fmt.Errorf("upgrade postgres cluster: connect as its superuser: %w", err)
	}
	var boot, current string
	if err := conn.QueryRow(ctx, "SELECT (SELECT rolname FROM pg_roles WHERE oid = 10), current_user").Scan(&boot, &current); err != nil {
		conn.Close(ctx)
		return nil, "", fmt.Errorf("upgrade postgres cluster: find its superuser: %w", err)
	}
	if current == boot {
		return conn, boot, nil
	}
	conn.Close(ctx)
	if conn, err = pgx.Connect(ctx, c.trustedURL(boot, "postgres")); err != nil {
		return nil, "", fmt.Errorf("upgrade postgres cluster: connect as its superuser %s: %w", boot, err)
	}
	return conn, boot, nil
}

// renameBootstrap renames the bootstrap superuser, boot, to superuser, from a
// session of a superuser made for the purpose: no session may rename its
// own user. admin is a session of boot's, which goes on.
func (c *Cluster) renameBootstrap(ctx context.Context, admin *pgx.Conn, boot string) error {
	var taken bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", superuser).Scan(&taken); err != nil {
		return fmt.Errorf("upgrade postgres cluster: %w", err)
	}
	if taken {
		return fmt.Errorf("upgrade postgres cluster in %s: its superuser is %s, and a role %s exists already; drop or rename that role", c.dir, boot, superuser)
	}
	create := `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ` + quoteLiteral(upgrader) + `) THEN CREATE ROLE ` + quoteIdent(upgrader) + ` SUPERUSER LOGIN; END IF; END $$`
	if _, err := admin.Exec(ctx, create); err != nil {
		return fmt.Errorf("upgrade postgres cluster: %w", err)
	}
	conn, err := pgx.Connect(ctx, c.trustedURL(upgrader, "postgres"))
	if err != nil {
		return fmt.Errorf("upgrade postgres cluster: connect as %s: %w", upgrader, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "ALTER ROLE "+quoteIdent(boot)+" RENAME TO "+quoteIdent(superuser)); err != nil {
		return fmt.Errorf("upgrade postgres cluster: rename its superuser %s to %s: %w", boot, superuser, err)
	}
	c.log.Info("renamed the superuser of the postgres cluster", "from", boot, "to", superuser)
	return nil
}

// reassignObjects gives spotflow's role, in its database, what the bootstrap
// superuser owns outside the system's schemas. Objects of the bootstrap
// superuser are not recorded in pg_shdepend, so REASSIGN OWNED cannot move
// them: each kind is altered in turn. A table's indexes, and the sequences
// its columns own, go with it.
func (c *Cluster) reassignObjects(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.trustedURL(superuser, database))
	if err != nil {
		return fmt.Errorf("upgrade postgres cluster: connect to database %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	to := quoteIdent(role)
	sql := `SET lock_timeout = '30s';
DO $$
DECLARE r record;
BEGIN
	FOR r IN SELECT n.nspname FROM pg_namespace n
		WHERE n.nspowner = 10 AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER SCHEMA %I OWNER TO ` + to + `', r.nspname);
	END LOOP;
	FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relowner = 10 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
			AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER %s %s OWNER TO ` + to + `',
			CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.name);
	END LOOP;
	FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relowner = 10 AND c.relkind = 'S' AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER SEQUENCE %s OWNER TO ` + to + `', r.name);
	END LOOP;
	FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.proowner = 10 AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER ROUTINE %s OWNER TO ` + to + `', r.name);
	END LOOP;
	FOR r IN SELECT t.oid::regtype AS name, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE t.typowner = 10 AND t.typtype IN ('e', 'd', 'r', 'c') AND t.typcategory <> 'A'
			AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
			AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER %s %s OWNER TO ` + to + `', CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.name);
	END LOOP;
	-- A range's multirange type follows it on some versions, not on others.
	FOR r IN SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE t.typowner = 10 AND t.typtype = 'm' AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
	LOOP
		EXECUTE format('ALTER TYPE %s OWNER TO ` + to + `', r.name);
	END LOOP;
END $$;
ALTER SCHEMA public OWNER TO ` + to
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("upgrade postgres cluster: give %s what its superuser owned in database %s: %w", role, database, err)
	}
	return nil
}

// trustedURL is the connection string of database db as user, without a
// password: only a legacy cluster, which trusts local connections, takes it.
func (c *Cluster) trustedURL(user, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, c.port, db)
}
