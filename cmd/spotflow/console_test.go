package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestOperator_CommandsManageAccountsAndTheMachineCredentialsTheOperatorAPITakes
// runs `spotflow operator` as an operator would, from an account's creation
// to its reset, then issues machine credentials and uses them on the
// operator API: a viewer's lists dead letters but may neither read nor
// replay one (403), an operator's replays under its own name, the
// configured token under "token:operator-token", X-Operator names no one,
// and a revoked token is refused by the very next request.
func TestOperator_CommandsManageAccountsAndTheMachineCredentialsTheOperatorAPITakes(t *testing.T) {
	t.Parallel()
	const configured = "configured-operator-token"
	m, dbURL := startMain(t, "*:latency=1ms", func(c *Config) { c.OperatorToken = configured })
	cli := commandsOn(t, dbURL)
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	ctx := t.Context()

	// Accounts.
	var rui mediatorSetup
	out := cli("operator", "create", "--username", "rui", "--name", "Rui Lopes", "--role", "viewer", "--language", "el",
		"--public-url", "https://ops.example.gov/")
	if err := json.Unmarshal([]byte(out), &rui); err != nil || rui.Username != "rui" || len(rui.Code) < 20 || rui.ExpiresAt.IsZero() ||
		rui.Link != "https://ops.example.gov/desk/ops/setup?code="+url.QueryEscape(rui.Code) {
		t.Fatalf("operator create printed %s (%v)", out, err)
	}
	cli("operator", "create", "--username", "ines", "--name", "Inês Ferreira")
	table := cli("operator", "list")
	for _, want := range []string{"USERNAME", "rui", "Rui Lopes", "viewer", "el", "not set", "active", "ines", "operator", "pt"} {
		if !strings.Contains(table, want) {
			t.Errorf("operator list does not show %q:\n%s", want, table)
		}
	}
	if out := cli("operator", "disable", "--username", "rui"); out != "operator rui disabled\n" {
		t.Errorf("operator disable printed %q", out)
	}
	operators := func() map[string]events.Operator {
		t.Helper()
		var list []events.Operator
		if err := json.Unmarshal([]byte(cli("operator", "list", "--json")), &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]events.Operator{}
		for _, o := range list {
			out[o.Username] = o
		}
		return out
	}
	got := operators()
	if r, i := got["rui"], got["ines"]; len(got) != 2 || r.DisabledAt.IsZero() || r.Role != events.RoleViewer || r.Language != "el" || r.PasswordSet ||
		!i.DisabledAt.IsZero() || i.Role != events.RoleOperator || i.Language != "pt" {
		t.Errorf("operator list --json after disable: %+v", got)
	}
	if table := cli("operator", "list"); !strings.Contains(table, "disabled "+time.Now().UTC().Format(time.DateOnly)) {
		t.Errorf("operator list does not show rui disabled today:\n%s", table)
	}
	if out := cli("operator", "enable", "--username", "rui"); out != "operator rui enabled\n" {
		t.Errorf("operator enable printed %q", out)
	}
	if r := operators()["rui"]; !r.DisabledAt.IsZero() {
		t.Errorf("rui is still disabled after enable: %+v", r)
	}
	var again mediatorSetup
	if err := json.Unmarshal([]byte(cli("operator", "reset", "--username", "rui")), &again); err != nil || again.Code == rui.Code ||
		again.Link != "/desk/ops/setup?code="+url.QueryEscape(again.Code) {
		t.Errorf("operator reset printed %+v (%v): want a new code and a relative link without --public-url", again, err)
	}
	for code, want := range map[string]bool{rui.Code: false, again.Code: true} {
		if who, ok, err := store.OperatorSetupCodeValid(ctx, code); err != nil || ok != want || (ok && who != "rui") {
			t.Errorf("setup code %.6s… valid %v for %q (%v), want %v", code, ok, who, err, want)
		}
	}
	if actions := auditedActions(t, store, "operator:rui"); actions != "operator_reset by operator:ana, operator_enabled by operator:ana, "+
		"operator_disabled by operator:ana, operator_created by operator:ana" {
		t.Errorf("the audit log of operator:rui: %s", actions)
	}

	// Machine credentials.
	issue := func(name, role string) string {
		t.Helper()
		var got struct{ Name, Role, Token string }
		out := cli("operator", "token", "issue", "--name", name, "--role", role)
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Name != name || got.Role != role || !strings.HasPrefix(got.Token, "sfo_") {
			t.Fatalf("operator token issue printed %q (%v)", out, err)
		}
		return got.Token
	}
	prometheus, nightly := issue("prometheus", "viewer"), issue("nightly", "operator")
	if table := cli("operator", "token", "list"); !regexp.MustCompile(`(?m)^nightly\s+operator\s`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^prometheus\s+viewer\s`).MatchString(table) {
		t.Errorf("operator token list:\n%s", table)
	}

	// A dead letter to replay: a message the router cannot route.
	if _, err := connectAs(t, m, roleIntake).Publish(ctx, events.RequestSubject("braga", "poison"), []byte(`{"schema":"not-a-request"}`)); err != nil {
		t.Fatal(err)
	}
	pending := func() int64 {
		t.Helper()
		var id int64
		workertest.WaitFor(t, "a dead letter waiting for replay", func() error {
			list, err := store.ListDeadLetters(ctx, events.DeadLetterQuery{Pending: true, Limit: 10})
			if err == nil && len(list) != 1 {
				err = fmt.Errorf("%d waiting", len(list))
			}
			if err == nil {
				id = list[0].ID
			}
			return err
		})
		return id
	}
	dead := strconv.FormatInt(pending(), 10)
	api := func(method, path, token, reason string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+m.HTTPAddr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Operator", "mallory")
		if reason != "" {
			req.Header.Set("X-Reason", reason)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		what, method, path, token string
		want                      int
	}{
		{"a viewer's token lists dead letters", "GET", "/v1/ops/dead-letters", prometheus, http.StatusOK},
		{"a viewer's token reads no dead letter", "GET", "/v1/ops/dead-letters/" + dead, prometheus, http.StatusForbidden},
		{"a viewer's token replays no dead letter", "POST", "/v1/ops/dead-letters/" + dead + "/replay", prometheus, http.StatusForbidden},
		{"a viewer's token replays nothing at all", "POST", "/v1/ops/dead-letters/replay", prometheus, http.StatusForbidden},
		{"a viewer's token erases no citizen", "POST", "/v1/ops/citizens/erase", prometheus, http.StatusForbidden},
		{"a made-up token is refused", "GET", "/v1/ops/dead-letters", "sfo_made-up", http.StatusUnauthorized},
		{"an operator's token replays", "POST", "/v1/ops/dead-letters/" + dead + "/replay", nightly, http.StatusAccepted},
	} {
		if got := api(c.method, c.path, c.token, "the nightly check"); got != c.want {
			t.Errorf("%s: %s %s answered %d, want %d", c.what, c.method, c.path, got, c.want)
		}
	}
	// Still not a request: dead-lettered again, and replayed with the
	// configured token.
	if got := api("POST", "/v1/ops/dead-letters/"+strconv.FormatInt(pending(), 10)+"/replay", configured, "once more"); got != http.StatusAccepted {
		t.Errorf("the configured token's replay answered %d, want 202", got)
	}
	entries, err := store.AuditEntries(ctx, events.AuditQuery{Action: events.AuditReplay})
	if err != nil {
		t.Fatal(err)
	}
	var replays []string
	for _, e := range entries {
		replays = append(replays, e.Actor+": "+e.Reason)
	}
	if strings.Join(replays, ", ") != "token:operator-token: once more, token:nightly: the nightly check" {
		t.Errorf("the audit log's replays: %q, want token:operator-token's and token:nightly's with their reasons", replays)
	}

	// Revoked: refused at once.
	if out := cli("operator", "token", "revoke", "--name", "prometheus"); out != "operator token prometheus revoked\n" {
		t.Errorf("operator token revoke printed %q", out)
	}
	if got := api("GET", "/v1/ops/dead-letters", prometheus, ""); got != http.StatusUnauthorized {
		t.Errorf("a revoked token lists dead letters: %d, want 401", got)
	}
	var tokens []events.OperatorToken
	// The configured token is listed among them, registered at start.
	if err := json.Unmarshal([]byte(cli("operator", "token", "list", "--json")), &tokens); err != nil || len(tokens) != 3 ||
		tokens[0].Name != "nightly" || !tokens[0].RevokedAt.IsZero() || tokens[0].UsedAt.IsZero() ||
		tokens[1].Name != "operator-token" || !tokens[1].RevokedAt.IsZero() || tokens[1].Role != events.RoleOperator ||
		tokens[2].Name != "prometheus" || tokens[2].RevokedAt.IsZero() || tokens[2].Role != events.RoleViewer {
		t.Errorf("operator token list --json: %+v (%v)", tokens, err)
	}
	if actions := auditedActions(t, store, "token:prometheus"); actions != "operator_token_revoked by operator:ana, operator_token_issued by operator:ana" {
		t.Errorf("the audit log of token:prometheus: %s", actions)
	}
	// The configured token is revoked as any other.
	cli("operator", "token", "revoke", "--name", "operator-token")
	if got := api("GET", "/v1/ops/dead-letters", configured, ""); got != http.StatusUnauthorized {
		t.Errorf("the configured token, revoked, lists dead letters: %d, want 401", got)
	}

	// Mistakes are refused before anything is done.
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"operator", "create", "--username", "joao"},
		{"operator", "create", "--username", "joao", "--name", "João", "--role", "admin"},
		{"operator", "disable"},
		{"operator", "reset", "--username", "nobody"},
		{"operator", "promote", "--username", "rui"},
		{"operator", "token"},
		{"operator", "token", "rotate", "--name", "nightly"},
		{"operator", "token", "issue"},
		{"operator", "token", "issue", "--name", "nightly"},
		{"operator", "token", "revoke", "--name", "prometheus"},
	} {
		if err := dispatch(ctx, append(args, "--database-url", dbURL, "--data-dir", t.TempDir()), &stdout, &stderr); err == nil {
			t.Errorf("spotflow %s succeeded", strings.Join(args, " "))
		}
	}
	if _, ok := operators()["joao"]; ok {
		t.Error("an operator of role admin was created")
	}
}

// auditedActions lists the audit log's entries about target, newest first,
// as "action by actor".
func auditedActions(t *testing.T, store *postgres.Store, target string) string {
	t.Helper()
	entries, err := store.AuditEntries(t.Context(), events.AuditQuery{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, string(e.Action)+" by "+e.Actor)
	}
	return strings.Join(out, ", ")
}

// TestAudit_AnExportVerifiesOfflineUntilOneByteOfAnEntryChanges exports the
// audit log's links with `spotflow audit export`, verifies the file with
// `spotflow audit verify --file` away from any database, then alters one
// byte of one entry's field in the file: verify then fails naming that
// link; a link taken out fails it too.
func TestAudit_AnExportVerifiesOfflineUntilOneByteOfAnEntryChanges(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	cli := commandsOn(t, dbURL)
	desk := issued(t, cli("desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão"))
	cli("desk", "issue", "--desk", desk.DeskID)
	cli("operator", "create", "--username", "rui", "--name", "Rui Lopes", "--role", "viewer")
	cli("operator", "token", "issue", "--name", "prometheus", "--role", "viewer")
	audit := auditOn(t, dbURL)
	if out := audit("chain"); out != "linked 4 entries\n" {
		t.Errorf("audit chain printed %q", out)
	}
	today := time.Now().UTC()
	file := filepath.Join(t.TempDir(), "export.jsonl")
	audit("export", "--from", today.AddDate(0, 0, -1).Format(time.DateOnly), "--to", today.Format(time.DateOnly), "--file", file)

	// verify --file reads the file alone: the database given cannot be
	// reached.
	verify := func(path string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := dispatch(t.Context(), []string{"audit", "verify", "--file", path,
			"--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "--log-level", "warn"}, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	out, err := verify(file)
	if err != nil || !regexp.MustCompile(`^audit export intact: 4 links \(1 to 4\) from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d; the chain's last link then was 4:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("audit verify --file of an intact export: %v\n%s", err, out)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("the export has %d lines, want a header and 4 links:\n%s", len(lines), data)
	}
	// One byte of one field of the third link's entry.
	var link postgres.AuditLink
	if err := json.Unmarshal([]byte(lines[3]), &link); err != nil {
		t.Fatal(err)
	}
	altered := -1
	for i, f := range link.Fields {
		if f != nil && *f != "" {
			altered = i
			break
		}
	}
	if altered < 0 {
		t.Fatalf("link %d has no field to alter: %s", link.Seq, lines[3])
	}
	field := *link.Fields[altered]
	changed := string(field[0]^0x01) + field[1:]
	i := strings.Index(lines[3], jsString(field))
	if i < 0 {
		t.Fatalf("the field %q is not written as such in %s", field, lines[3])
	}
	tampered := slicesReplace(lines, 3, lines[3][:i]+jsString(changed)+lines[3][i+len(jsString(field)):])
	out, err = verify(writeLines(t, tampered))
	want := fmt.Sprintf("audit chain broken at link %d (%s entry %d): its entry or its hash was altered", link.Seq, link.Kind, link.ID)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("audit verify --file with %q changed to %q in link %d: %v\n%s; want it to fail with %q", field, changed, link.Seq, err, out, want)
	}

	// A link taken out, the header left as it was.
	if out, err := verify(writeLines(t, append(append([]string(nil), lines[:2]...), lines[3:]...))); err == nil {
		t.Errorf("audit verify --file of an export without its second link passed:\n%s", out)
	}
}

// slicesReplace is a copy of lines with line i replaced by s.
func slicesReplace(lines []string, i int, s string) []string {
	out := append([]string(nil), lines...)
	out[i] = s
	return out
}

// writeLines writes lines to a new file and returns its path.
func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRun_MakesAFirstOperatorAndPrintsItsSetupLinkUntilItsPasswordIsSet
// runs the all-in-one with its demo desk as `spotflow run` on the local
// cluster does: it makes the operator "admin" and prints where to set its
// password; once it is set, a restart prints no link and makes no other
// operator.
func TestRun_MakesAFirstOperatorAndPrintsItsSetupLinkUntilItsPasswordIsSet(t *testing.T) {
	t.Parallel()
	dbURL, dataDir := pgtest.Schema(t), t.TempDir()
	start := func(t *testing.T) (*Main, string) {
		t.Helper()
		var out lockedBuffer
		m := &Main{
			Config: Config{DataDir: dataDir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DatabaseURL: dbURL,
				Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32)},
			Roles: allRoles, Embed: true, DemoDesk: true, Stdout: &out,
		}
		runMain(t, m)
		return m, out.String()
	}
	linkLine := regexp.MustCompile(`first operator "admin": set its password at (\S+)\n`)
	const password = "the first operator's password"

	t.Run("the first start prints the setup link", func(t *testing.T) {
		m, out := start(t)
		found := linkLine.FindStringSubmatch(out)
		base := "http://" + m.HTTPAddr()
		if found == nil || !strings.HasPrefix(found[1], base+"/desk/ops/setup?code=") {
			t.Fatalf("spotflow run printed no setup link for admin under %s:\n%s", base, out)
		}
		link, err := url.Parse(found[1])
		if err != nil {
			t.Fatal(err)
		}
		code := link.Query().Get("code")
		if info, err := os.Stat(filepath.Join(dataDir, "first-operator.setup")); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("the setup code is kept in %v (%v), want a file only its owner reads", info, err)
		}
		c := newFormClient(t, base)
		p := c.get(link.RequestURI())
		if !strings.Contains(p.body, `value="`+code+`"`) {
			t.Errorf("the setup page does not hold the code of the link:\n%.1500s", p.body)
		}
		c.post("/desk/ops/setup", p, url.Values{"code": {code}, "password": {password}, "password-again": {password}})
		p = c.post("/desk/ops/sign-in", c.get("/desk/ops/sign-in"), url.Values{"username": {"admin"}, "password": {password}, "next": {"/desk/ops/"}})
		if !strings.Contains(p.body, `action="/desk/ops/sign-out"`) {
			t.Errorf("admin is not signed in with the password set by the link:\n%.1500s", p.body)
		}
	})
	if t.Failed() {
		return
	}
	t.Run("a restart prints none", func(t *testing.T) {
		_, out := start(t)
		if strings.Contains(out, "first operator") || strings.Contains(out, "setup?code=") {
			t.Errorf("spotflow run printed a setup link again once admin's password was set:\n%s", out)
		}
		if !strings.Contains(out, "/desk/ops/") {
			t.Errorf("spotflow run does not say where the console is:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "first-operator.setup")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the used setup code is still kept (%v)", err)
		}
		list, err := postgres.NewStore(pgtest.Pool(t, dbURL), nil).Operators(t.Context())
		if err != nil || len(list) != 1 || list[0].Username != "admin" || list[0].Role != events.RoleOperator || !list[0].PasswordSet {
			t.Errorf("the operators after a restart: %+v (%v), want admin alone, of the operator role, with its password", list, err)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for concurrent use: what a process
// prints while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
