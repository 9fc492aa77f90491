package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestDead_ListsShowsAndReplaysADeadLetter runs `spotflow dead` as an
// operator would, on a message the router could not route.
func TestDead_ListsShowsAndReplaysADeadLetter(t *testing.T) {
	t.Parallel()
	m, dbURL := startMain(t, "*:latency=1ms")
	if _, err := connectAs(t, m, roleIntake).Publish(t.Context(), events.RequestSubject("braga", "poison"), []byte(`{"schema":"not-a-request"}`)); err != nil {
		t.Fatal(err)
	}
	dead := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"dead"}, append(args, "--database-url", dbURL, "--nats-url", m.NATSURL(),
			"--citizen-key", m.Config.CitizenKey, "--data-dir", t.TempDir(), "--nats-identities", m.Config.identityDir(), "--log-level", "warn")...)
		if err := dispatch(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("spotflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}

	var id string
	workertest.WaitFor(t, "the poison message to be listed", func() error {
		lines := strings.Split(strings.TrimSpace(dead("list", "--pending")), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
			return fmt.Errorf("dead list printed %q", lines)
		}
		id = strings.Fields(lines[1])[0]
		return nil
	})
	var stderr bytes.Buffer
	if err := dispatch(t.Context(), []string{"dead", "show", id, "--database-url", dbURL, "--citizen-key", m.Config.CitizenKey,
		"--data-dir", t.TempDir(), "--log-level", "warn"}, io.Discard, &stderr); err == nil {
		t.Error("dead show without --reason showed the dead letter")
	}
	var shown events.DeadLetter
	if err := json.Unmarshal([]byte(dead("show", id, "--operator", "ana", "--reason", "why it failed")), &shown); err != nil {
		t.Fatal(err)
	}
	if strconv.FormatInt(shown.ID, 10) != id || shown.Reason != events.ReasonPermanent || !strings.Contains(shown.LastError, "not-a-request") {
		t.Errorf("dead show %s: %+v, want the poison message, dead-lettered as permanent", id, shown)
	}
	if out := dead("replay", id, "--operator", "ana"); out != "replayed dead letter "+id+"\n" {
		t.Errorf("dead replay printed %q", out)
	}
	rows, err := pgtest.Pool(t, dbURL).Query(t.Context(), `SELECT actor || ' ' || action || ' ' || coalesce(reason, '') FROM audit_log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	audited, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"operator:ana dead_letter_viewed why it failed", "operator:ana replay "}; err != nil || !slices.Equal(audited, want) {
		t.Errorf("audit log holds %q (err %v), want %q", audited, err, want)
	}
	// Still not a request: the replayed copy is dead-lettered again.
	workertest.WaitFor(t, "the replayed copy to be dead-lettered again", func() error {
		if out := dead("list", "--pending"); strings.Count(out, "\n") != 2 {
			return fmt.Errorf("dead list --pending printed %q", out)
		}
		return nil
	})
}
