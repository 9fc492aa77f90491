package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestMediator_CommandsCreateListDisableEnableAndReset runs `spotflow
// mediator` as an operator would, from an account's creation to its reset.
func TestMediator_CommandsCreateListDisableEnableAndReset(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	cli := commandsOn(t, dbURL)
	desk := issued(t, cli("desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão"))

	var setup mediatorSetup
	out := cli("mediator", "create", "--desk", desk.DeskID, "--username", "ana.sousa", "--name", "Ana Sousa", "--language", "el",
		"--public-url", "https://desk.example.gov/")
	if err := json.Unmarshal([]byte(out), &setup); err != nil || setup.Username != "ana.sousa" || len(setup.Code) < 20 ||
		setup.Link != "https://desk.example.gov/desk/setup?code="+setup.Code || setup.ExpiresAt.IsZero() {
		t.Fatalf("mediator create printed %s (%v)", out, err)
	}
	table := cli("mediator", "list", "--desk", desk.DeskID)
	if !strings.Contains(table, "ana.sousa") || !strings.Contains(table, "not set") || !strings.Contains(table, "active") {
		t.Errorf("mediator list:\n%s", table)
	}
	if out := cli("mediator", "disable", "--username", "ana.sousa"); !strings.Contains(out, "disabled") {
		t.Errorf("mediator disable printed %q", out)
	}
	var list []events.Mediator
	if err := json.Unmarshal([]byte(cli("mediator", "list", "--json")), &list); err != nil || len(list) != 1 || list[0].DisabledAt.IsZero() ||
		list[0].Language != "el" || list[0].DeskID != desk.DeskID {
		t.Fatalf("mediator list --json after disable: %+v (%v)", list, err)
	}
	cli("mediator", "enable", "--username", "ana.sousa")
	var again mediatorSetup
	if err := json.Unmarshal([]byte(cli("mediator", "reset", "--username", "ana.sousa")), &again); err != nil || again.Code == setup.Code ||
		!strings.HasPrefix(again.Link, "/desk/setup?code=") {
		t.Errorf("mediator reset printed %+v (%v): want a new code and a relative link without --public-url", again, err)
	}
	if out := cli("mediator", "trainer", "--username", "ana.sousa"); !strings.Contains(out, "ana.sousa is a trainer") {
		t.Errorf("mediator trainer printed %q", out)
	}
	if table := cli("mediator", "list"); !strings.Contains(table, "trainer") {
		t.Errorf("mediator list after trainer:\n%s", table)
	}
	entries, err := postgres.NewStore(pgtest.Pool(t, dbURL), nil).AuditEntries(t.Context(), events.AuditQuery{Target: "mediator:ana.sousa"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, string(e.Action)+" by "+e.Actor)
	}
	want := "mediator_trainer by operator:ana,mediator_reset by operator:ana,mediator_enabled by operator:ana,mediator_disabled by operator:ana,mediator_created by operator:ana"
	if strings.Join(actions, ",") != want {
		t.Errorf("audit log %q, want %q", actions, want)
	}

	// Usage mistakes are refused before anything is done.
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"mediator", "create", "--desk", desk.DeskID, "--username", "rui"},
		{"mediator", "disable"},
		{"mediator", "promote", "--username", "rui"},
	} {
		if err := dispatch(t.Context(), append(args, "--database-url", dbURL, "--data-dir", t.TempDir()), &stdout, &stderr); err == nil {
			t.Errorf("spotflow %s succeeded", strings.Join(args, " "))
		}
	}
}
