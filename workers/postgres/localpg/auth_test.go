package localpg_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestOpen_RefusesEveryConnectionButSpotflowsWithItsPassword(t *testing.T) {
	t.Parallel()
	c := mustOpen(t, filepath.Join(reachableDir(t), ".data"))

	passfile := filepath.Join(c.Dir(), "spotflow.pgpass")
	fi, err := os.Stat(passfile)
	if err != nil {
		t.Fatalf("password file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("password file mode %o, want 600", mode)
	}
	data, err := os.ReadFile(passfile)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(strings.TrimSpace(string(data)), ":")
	password := fields[len(fields)-1]
	if len(password) < 32 {
		t.Fatalf("password %q is too short, want 32 or more characters", password)
	}
	if strings.Contains(c.URL(), password) {
		t.Errorf("URL() %q holds the password, want it only in the password file", c.URL())
	}

	for _, tc := range []struct {
		name, url, want string
	}{
		{"WithoutThePassword", withoutQuery(t, c.URL(), "passfile"), "28P01"},
		{"WithAWrongPassword", withPassword(t, c.URL(), "spotflow", strings.Repeat("0", len(password))), "28P01"},
		{"AsTheSuperuserOverTCPWithSpotflowsPassword", withPassword(t, c.URL(), "postgres", password), "28000"},
		{"AsTheSuperuserOverTCPWithoutAPassword", withoutQuery(t, withUser(t, c.URL(), "postgres"), "passfile"), "28000"},
		{"ToAnotherDatabase", withDatabase(t, c.URL(), "postgres"), "28000"},
	} {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, tc.url)
			if err == nil {
				_ = conn.Close(ctx)
				t.Fatalf("connected to %s, want it refused", tc.url)
			}
			if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != tc.want {
				t.Errorf("connect to %s: %v, want refused with SQLSTATE %s", tc.url, err, tc.want)
			}
		})
	}

	t.Run("AcceptsSpotflowWithThePasswordAsAnOwnerThatIsNotASuperuser", func(t *testing.T) {
		if got := query(t, c.URL(), "SELECT current_user || ' ' || rolsuper || rolcreaterole || rolcreatedb FROM pg_roles WHERE rolname = current_user"); got != "spotflow falsefalsefalse" {
			t.Errorf("current role and rolsuper, rolcreaterole, rolcreatedb = %q, want spotflow falsefalsefalse", got)
		}
		if got := query(t, c.URL(), "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"); got != "spotflow" {
			t.Errorf("owner of the database = %q, want spotflow", got)
		}
		// What the tests (a schema each) and make bench (a fresh public) do.
		exec(t, c.URL(), `CREATE SCHEMA test_own; CREATE TABLE test_own.notes (id bigserial PRIMARY KEY, body text);
			INSERT INTO test_own.notes (body) VALUES ('kept'); DROP SCHEMA test_own CASCADE;
			DROP SCHEMA public CASCADE; CREATE SCHEMA public`)
		// What only a superuser may do.
		conn := connect(t, c.URL())
		_, err := conn.Exec(t.Context(), "COPY (SELECT 1) TO PROGRAM 'true'")
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "42501" {
			t.Errorf("COPY TO PROGRAM: %v, want refused for insufficient privilege (42501)", err)
		}
	})
}

func TestOpen_MakesANewPasswordWhenThePasswordFileIsGone(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), ".data")
	first := mustOpen(t, dataDir)
	exec(t, first.URL(), "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
	passfile := filepath.Join(first.Dir(), "spotflow.pgpass")
	old, err := os.ReadFile(passfile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(passfile); err != nil {
		t.Fatal(err)
	}

	// While the server runs there is no superuser at hand to set one.
	_, err = open(t, dataDir)
	if err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("Open of a running cluster without its password file: %v, want an error naming the password file", err)
	}
	// Stopping needs no Open.
	if err := localpg.Stop(t.Context(), localpg.Config{DataDir: dataDir}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertStopped(t, first)
	second := mustOpen(t, dataDir)

	renewed, err := os.ReadFile(passfile)
	if err != nil {
		t.Fatalf("password file after Open: %v", err)
	}
	if string(renewed) == string(old) {
		t.Error("the new password file holds the old password, want a new one")
	}
	if got := query(t, second.URL(), "SELECT body FROM notes"); got != "kept" {
		t.Errorf("row after a new password = %q, want kept", got)
	}
}

// TestOpen_UpgradesTheClusterOfAnEarlierVersionInPlace makes the cluster an
// earlier spotflow made, trusting every local connection with spotflow its
// superuser, fills it as spotflow's migrations and tests do, and opens it:
// spotflow's role is then an owner that is not a superuser and needs its
// password, and the data is kept, readable and alterable.
func TestOpen_UpgradesTheClusterOfAnEarlierVersionInPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// before runs on the legacy cluster, running, before Open.
		before func(t *testing.T, legacy *localpg.Cluster, trusted string)
	}{
		{"WhileItRuns", func(*testing.T, *localpg.Cluster, string) {}},
		{"WhenStopped", func(t *testing.T, legacy *localpg.Cluster, _ string) { stop(t, legacy) }},
		{"CutShortAfterRenamingTheSuperuser", func(t *testing.T, _ *localpg.Cluster, trusted string) {
			exec(t, withDatabase(t, trusted, "postgres"), "CREATE ROLE localpg_upgrade SUPERUSER LOGIN")
			exec(t, withDatabase(t, withUser(t, trusted, "localpg_upgrade"), "postgres"), "ALTER ROLE spotflow RENAME TO postgres")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(reachableDir(t), ".data")
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			legacy, trusted, err := localpg.MakeLegacyCluster(ctx, dataDir, slog.New(slog.NewTextHandler(t.Output(), nil)))
			if legacy != nil {
				cleanUp(t, legacy, dataDir)
			}
			pgtest.Opened(t, "Open", err)
			exec(t, trusted, `CREATE SCHEMA test_old;
				CREATE TABLE test_old.notes (id bigserial PRIMARY KEY, body text NOT NULL);
				INSERT INTO test_old.notes (body) VALUES ('kept');
				CREATE FUNCTION test_old.no_empty() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN IF NEW.body = '' THEN RAISE EXCEPTION 'empty'; END IF; RETURN NEW; END $$;
				CREATE TRIGGER no_empty BEFORE INSERT ON test_old.notes FOR EACH ROW EXECUTE FUNCTION test_old.no_empty();
				CREATE VIEW test_old.bodies AS SELECT body FROM test_old.notes;
				CREATE TYPE test_old.mood AS ENUM ('ok');
				CREATE SEQUENCE test_old.tickets;
				CREATE TABLE public.schema_version (version int)`)
			tc.before(t, legacy, trusted)

			c := mustOpen(t, dataDir)

			if got := query(t, c.URL(), "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE rolname = current_user"); got != "spotflow false" {
				t.Errorf("current role and rolsuper = %q, want spotflow false", got)
			}
			if got := query(t, c.URL(), "SELECT body FROM test_old.bodies"); got != "kept" {
				t.Errorf("row after the upgrade = %q, want kept", got)
			}
			// Owning them, spotflow's role may change them, as migrations do.
			exec(t, c.URL(), `INSERT INTO test_old.notes (body) VALUES ('new');
				ALTER TABLE test_old.notes ADD COLUMN at timestamptz;
				CREATE OR REPLACE VIEW test_old.bodies AS SELECT body, at FROM test_old.notes;
				SELECT nextval('test_old.tickets'); ALTER TYPE test_old.mood ADD VALUE 'late';
				DROP TABLE public.schema_version`)
			left := query(t, c.URL(), `SELECT count(*)::text FROM (
				SELECT relnamespace AS ns FROM pg_class WHERE relowner = 10
				UNION ALL SELECT pronamespace FROM pg_proc WHERE proowner = 10
				UNION ALL SELECT typnamespace FROM pg_type WHERE typowner = 10
				UNION ALL SELECT oid FROM pg_namespace WHERE nspowner = 10) o
				JOIN pg_namespace n ON n.oid = o.ns
				WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'`)
			if left != "0" {
				t.Errorf("%s objects outside the system's schemas still owned by the superuser, want 0", left)
			}
			if got := query(t, c.URL(), "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'"); got != "postgres,spotflow" {
				t.Errorf("roles %q, want postgres,spotflow", got)
			}
			ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for _, u := range []string{trusted, withUser(t, trusted, "postgres")} {
				if conn, err := pgx.Connect(ctx, u); err == nil {
					_ = conn.Close(ctx)
					t.Errorf("connected to %s without a password after the upgrade, want it refused", u)
				}
			}

			// Opened again, the cluster is left as it is.
			again := mustOpen(t, dataDir)
			if again.URL() != c.URL() {
				t.Errorf("URL after a second Open %s, want %s", again.URL(), c.URL())
			}
			if got := query(t, again.URL(), "SELECT count(*)::text FROM test_old.notes"); got != "2" {
				t.Errorf("%s rows after a second Open, want 2", got)
			}
		})
	}
}

// withoutQuery is rawURL without its query parameter key.
func withoutQuery(t *testing.T, rawURL, key string) string {
	t.Helper()
	return editURL(t, rawURL, func(u *url.URL) {
		q := u.Query()
		q.Del(key)
		u.RawQuery = q.Encode()
	})
}

// withPassword is rawURL as user with password, and no password file.
func withPassword(t *testing.T, rawURL, user, password string) string {
	t.Helper()
	return editURL(t, withoutQuery(t, rawURL, "passfile"), func(u *url.URL) { u.User = url.UserPassword(user, password) })
}

// withUser is rawURL as user.
func withUser(t *testing.T, rawURL, user string) string {
	t.Helper()
	return editURL(t, rawURL, func(u *url.URL) { u.User = url.User(user) })
}

// withDatabase is rawURL with database db.
func withDatabase(t *testing.T, rawURL, db string) string {
	t.Helper()
	return editURL(t, rawURL, func(u *url.URL) { u.Path = "/" + db })
}

func editURL(t *testing.T, rawURL string, edit func(*url.URL)) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(fmt.Errorf("parse %s: %w", rawURL, err))
	}
	edit(u)
	return u.String()
}
