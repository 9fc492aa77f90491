package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestNATSConfig_ListsEveryIdentityForAServerOfOnesOwn prints the users
// block with `spotflow nats-config` and has nats-server read it.
func TestNATSConfig_ListsEveryIdentityForAServerOfOnesOwn(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	common := []string{"--database-url", dbURL, "--data-dir", t.TempDir(), "--nats-identities", t.TempDir(), "--log-level", "warn"}
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := dispatch(t.Context(), append(args, common...), &stdout, &stderr); err != nil {
			t.Fatalf("spotflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	seedFile := filepath.Join(t.TempDir(), "tax.nk")
	run("agency", "issue", "--agency", "tax", "--out", seedFile)
	seed, err := natsbus.ReadSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	taxKey, err := seed.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	block := run("nats-config")
	for _, want := range []string{"# admin", "# intake", "# router", "# dispatcher", "# projector", "# agency-tax", taxKey} {
		if !strings.Contains(block, want) {
			t.Errorf("the users block lacks %q:\n%s", want, block)
		}
	}
	conf := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(conf, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server does not read the block: %v", err)
	}
	if len(opts.Nkeys) != 6 {
		t.Errorf("nats-server read %d users, want spotflow's five and tax", len(opts.Nkeys))
	}
}
