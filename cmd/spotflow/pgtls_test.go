package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestRun_VerifiesPostgresCertificateWithVerifyFull runs the all-in-one
// against a Postgres of its own that has a certificate from a test CA, with
// the DATABASE_URL docs/operations.md gives: sslmode=verify-full and the CA
// in sslrootcert. A request goes through to completed over connections that
// are all encrypted; given another CA, or a host name the certificate does
// not name, spotflow refuses to start.
func TestRun_VerifiesPostgresCertificateWithVerifyFull(t *testing.T) {
	t.Parallel()
	ca, cert, key := certificates(t)
	otherCA, _, _ := certificates(t)
	cluster := postgresWithTLS(t, cert, key)

	t.Run("CarriesARequestOverEncryptedConnectionsGivenTheCA", func(t *testing.T) {
		m := &Main{
			Config: Config{
				DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
				DatabaseURL: verifyFull(t, cluster, "127.0.0.1", ca),
				Agencies:    "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32),
			},
			Roles: allRoles,
			Embed: true,
		}
		runMain(t, m)
		// The test's own connections are plain and named, so that they can be
		// told from spotflow's.
		const testApp = "pgtls-test"
		pool := pgtest.Pool(t, withQuery(t, cluster.URL(), "application_name", testApp))
		store := postgres.NewStore(pool, nil)

		desk, id := submitCertificate(t, m, store, "pgtls-1")
		workertest.WaitWithin(t, 30*time.Second, "the request to be completed", func() error {
			if status, timeline := timelineOf(t, store, desk, id); status != events.StatusCompleted {
				return fmt.Errorf("status %q, timeline %v", status, timeline)
			}
			return nil
		})

		// Every client connection to the server is spotflow's or the test's.
		var spotflows, encrypted, tests, plainTests int
		err := pool.QueryRow(t.Context(), `SELECT
				count(*) FILTER (WHERE a.application_name <> $1),
				count(*) FILTER (WHERE a.application_name <> $1 AND s.ssl),
				count(*) FILTER (WHERE a.application_name = $1),
				count(*) FILTER (WHERE a.application_name = $1 AND NOT s.ssl)
			FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
			WHERE a.backend_type = 'client backend'`, testApp).Scan(&spotflows, &encrypted, &tests, &plainTests)
		if err != nil {
			t.Fatal(err)
		}
		if spotflows == 0 || encrypted != spotflows {
			t.Errorf("%d of spotflow's %d connections use TLS, want all of them and at least one", encrypted, spotflows)
		}
		// The test's plain connections show that the view tells the two apart.
		if tests == 0 || plainTests != tests {
			t.Errorf("%d of the test's %d connections are plain, want all of them and at least one", plainTests, tests)
		}
	})

	for _, tc := range []struct {
		name, host, ca, want string
	}{
		{"RefusesToStartGivenAnotherCA", "127.0.0.1", otherCA, "x509: certificate signed by unknown authority"},
		{"RefusesToStartGivenAHostNameTheCertificateDoesNotName", "localhost", ca, "x509: certificate is not valid for any names, but wanted to match localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Main{
				Config: Config{
					DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
					DatabaseURL: verifyFull(t, cluster, tc.host, tc.ca),
					Agencies:    "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32),
				},
				Roles:  allRoles,
				Embed:  true,
				Logger: slog.New(slog.DiscardHandler),
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ended := make(chan error, 1)
			go func() { ended <- m.Run(ctx) }()

			select {
			case err := <-ended:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Run: %v, want an error saying %q", err, tc.want)
				}
			case <-m.Ready():
				t.Errorf("spotflow started, want it refused with an error saying %q", tc.want)
				cancel()
				<-ended
			case <-time.After(30 * time.Second):
				t.Fatalf("Run neither started nor failed within 30s")
			}
		})
	}
}

// postgresWithTLS opens a cluster of the test's own whose server has cert and
// key, and stops it when the test ends. Without PostgreSQL's binaries the
// test skips, except under CI=true, where it fails.
func postgresWithTLS(t *testing.T, cert, key string) *localpg.Cluster {
	t.Helper()
	// The server runs as the postgres user when the tests run as root, and
	// t.TempDir makes directories only their owner may enter.
	dataDir := t.TempDir()
	for _, dir := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := localpg.Open(ctx, localpg.Config{
		DataDir: dataDir, TLSCert: cert, TLSKey: key,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	pgtest.Opened(t, "open a postgres cluster with TLS", err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop the postgres cluster: %v", err)
		}
	})
	return c
}

// verifyFull is c's URL with host in place of 127.0.0.1, and the server's
// certificate to be checked in full against the CA in the file ca.
func verifyFull(t *testing.T, c *localpg.Cluster, host, ca string) string {
	t.Helper()
	u, err := url.Parse(withQuery(t, withQuery(t, c.URL(), "sslmode", "verify-full"), "sslrootcert", ca))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host + ":" + u.Port()
	return u.String()
}

// withQuery is rawURL with its query parameter key set to value.
func withQuery(t *testing.T, rawURL, key, value string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}
