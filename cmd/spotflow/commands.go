package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
)

func newFlagSet(name, usageLine, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("spotflow "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: spotflow %s\n\n%s\n\nFlags:\n", usageLine, about)
		fs.PrintDefaults()
	}
	return fs
}

// verbOf returns the verb args start with, one of command's verbs.
// Otherwise it prints command's usage and returns no verb: with a nil error
// when help was asked for, or a usage error that lists the verbs.
func verbOf(command string, verbs, args []string, usageLine, about string, stderr io.Writer) (string, error) {
	if len(args) > 0 && slices.Contains(verbs, args[0]) {
		return args[0], nil
	}
	newFlagSet(command, usageLine, about, stderr).Usage()
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return "", nil
	}
	list := verbs[len(verbs)-1]
	if len(verbs) > 1 {
		list = strings.Join(verbs[:len(verbs)-1], ", ") + " or " + list
	}
	return "", fmt.Errorf("%w: %s needs %s", errUsage, command, list)
}

// usageError shows fs's usage and returns the usage error format says,
// which the command's caller reports as such.
func usageError(fs *flag.FlagSet, format string, a ...any) error {
	fs.Usage()
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func runAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	m := &Main{Roles: allRoles, Embed: true, Stdout: stdout}
	fs := newFlagSet("run", "run [flags]",
		"Starts the whole system: an embedded NATS server with JetStream on disk (unless NATS_URL\n"+
			"is set), the local Postgres cluster under the data directory (unless DATABASE_URL is\n"+
			"set), simulated agencies, and every role, with the desk API on --http. On the local\n"+
			"cluster it also registers a demo desk and writes its token to <data-dir>/demo-desk.token.", stderr)
	m.Config.flags(fs, "127.0.0.1:8080")
	if err := parse(fs, args); err != nil {
		return err
	}
	m.Logger = m.Config.logger(stderr)
	m.DemoDesk = m.Config.DatabaseURL == ""
	return m.Run(ctx)
}

// roleCommand runs one role alone against NATS_URL and DATABASE_URL.
func roleCommand(role, _ string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		httpDefault := ""
		if role == roleIntake {
			httpDefault = "127.0.0.1:8080"
		}
		m := &Main{Roles: []string{role}, Stdout: stdout}
		fs := newFlagSet(role, role+" [flags]",
			"Runs the "+role+" role alone against NATS_URL (default nats://127.0.0.1:4222) and\n"+
				"DATABASE_URL (default: the local cluster under the data directory). Run as many\n"+
				"processes of it as the load needs: they share the role's durable consumer.", stderr)
		m.Config.flags(fs, httpDefault)
		if err := parse(fs, args); err != nil {
			return err
		}
		m.Logger = m.Config.logger(stderr)
		return m.Run(ctx)
	}
}

// withDatabase connects to DATABASE_URL or the local cluster (starting it
// for the duration of fn if it is not running) and runs fn.
func withDatabase(ctx context.Context, cfg *Config, stderr io.Writer, fn func(*postgres.Store) error) error {
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		cluster, err := localpg.Open(ctx, localpg.Config{DataDir: cfg.DataDir, Logger: cfg.logger(stderr)})
		if err != nil {
			return err
		}
		if cluster.Started() {
			defer cluster.Stop(context.WithoutCancel(ctx))
		}
		dbURL = cluster.URL()
	}
	pool, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	key, err := cfg.citizenKey()
	if err != nil {
		return err
	}
	return fn(postgres.NewStore(pool, key))
}

func migrateCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := newFlagSet("migrate", "migrate [flags]", "Applies the database migrations that DATABASE_URL (or the local cluster) lacks.", stderr)
	cfg.flags(fs, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withDatabase(ctx, &cfg, stderr, func(*postgres.Store) error {
		fmt.Fprintln(stdout, "database is up to date")
		return nil
	})
}

// deskCommand registers desks and manages their credentials: create,
// issue, rotate, expire, revoke and list. Every change is in the audit log
// under --operator.
func deskCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "desk create --municipality CODE --name NAME [--expires WHEN] | desk list [--municipality CODE] [--json] |\n" +
		"       desk issue --desk ID [--expires WHEN] | desk rotate --desk ID [--grace 24h] [--expires WHEN] |\n" +
		"       desk expire --desk ID [--key KEY] --expires WHEN | desk revoke --desk ID [--key KEY] --reason WHY"
	about := "Registers desks and manages their credentials. A desk may hold several credentials at once;\n" +
		"each is a token printed once, when it is made, and kept only as a hash. create registers a desk\n" +
		"with its first credential. issue gives a desk another. rotate issues a new one and sets the\n" +
		"desk's others to end after --grace (0: at once), so that the desk can switch. expire sets when\n" +
		"credentials end. revoke ends one credential (--key, as list shows it) or all of a desk's now,\n" +
		"and needs --reason. A revocation or a shorter expiry takes effect on every intake process within\n" +
		"about two seconds. list shows every desk with its credentials: created, expires, revoked, last\n" +
		"used (recorded about once a minute). WHEN is a number of days (90d), a Go duration (36h), a date\n" +
		"(2027-01-31: the credential ends as that day starts, UTC) or an RFC 3339 time. Every change is\n" +
		"in the audit log under --operator, with --reason when given."
	verb, err := verbOf("desk", []string{"create", "list", "issue", "rotate", "expire", "revoke"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var municipality, name, deskID, key, expires, operatorName, reason string
	var grace time.Duration
	var asJSON bool
	fs := newFlagSet("desk "+verb, line, about, stderr)
	fs.StringVar(&municipality, "municipality", "", "create: the desk's municipality code, e.g. lisboa (required); list: only its desks")
	fs.StringVar(&name, "name", "", "create: the desk's name, e.g. \"Loja do Cidadão Laranjeiras\" (required)")
	fs.StringVar(&deskID, "desk", "", "issue, rotate, expire, revoke: the desk's id (required)")
	fs.StringVar(&key, "key", "", "expire, revoke: the key of one credential, as list shows it; default: every one of the desk's in force")
	fs.StringVar(&expires, "expires", "", "create, issue, rotate: when the new credential ends (default: never); expire: when the credentials end (required)")
	fs.DurationVar(&grace, "grace", 24*time.Hour, "rotate: how long the desk's other credentials keep working; 0 ends them at once")
	fs.BoolVar(&asJSON, "json", false, "list: print JSON instead of a table")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "who is acting, for the audit log")
	fs.StringVar(&reason, "reason", "", "why, for the audit log (required by revoke)")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case verb == "create" && (municipality == "" || name == ""):
		return usageError(fs, "--municipality and --name are required")
	case verb != "create" && verb != "list" && deskID == "":
		return usageError(fs, "%s needs --desk", verb)
	case verb == "expire" && expires == "":
		return usageError(fs, "expire needs --expires")
	case verb == "revoke" && strings.TrimSpace(reason) == "":
		return usageError(fs, "revoke needs --reason: say why, for the audit log")
	}
	var until time.Time
	if expires != "" {
		var err error
		if until, err = parseExpiry(expires, time.Now()); err != nil {
			return usageError(fs, "--expires: %v", err)
		}
	}
	by := events.By{Actor: operatorActor(operatorName), Reason: reason}
	return withDatabase(ctx, &cfg, stderr, func(s *postgres.Store) error {
		switch verb {
		case "create":
			desk, cred, err := s.RegisterDesk(ctx, municipality, name, until, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, issuedDesk{
				DeskID: desk.ID, Municipality: desk.Municipality, Name: desk.Name,
				Key: cred.Key, Token: cred.Token, ExpiresAt: cred.ExpiresAt,
			})
		case "issue":
			cred, err := s.IssueDeskCredential(ctx, deskID, until, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, issuedDesk{DeskID: deskID, Key: cred.Key, Token: cred.Token, ExpiresAt: cred.ExpiresAt})
		case "rotate":
			if grace < 0 {
				return fmt.Errorf("%w: --grace %s is negative", errUsage, grace)
			}
			endingAt := time.Now().Add(grace).UTC()
			cred, ending, err := s.RotateDeskCredentials(ctx, deskID, until, endingAt, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, issuedDesk{DeskID: deskID, Key: cred.Key, Token: cred.Token, ExpiresAt: cred.ExpiresAt, Ending: ending, EndingAt: &endingAt})
		case "expire":
			changed, err := s.ExpireDeskCredentials(ctx, deskID, key, until, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "credential(s) %s of desk %s end at %s\n", strings.Join(changed, ", "), deskID, until.UTC().Format(time.RFC3339))
			return nil
		case "revoke":
			revoked, err := s.RevokeDeskCredentials(ctx, deskID, key, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked credential(s) %s of desk %s\n", strings.Join(revoked, ", "), deskID)
			return nil
		}
		desks, err := s.Desks(ctx, municipality)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, desks)
		}
		return printDesks(stdout, desks)
	})
}

// issuedDesk is what desk create, issue and rotate print.
type issuedDesk struct {
	DeskID       string     `json:"desk_id"`
	Municipality string     `json:"municipality,omitempty"`
	Name         string     `json:"name,omitempty"`
	Key          string     `json:"key"`
	Token        string     `json:"token"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	// Ending are the keys of the desk's credentials a rotation set to end
	// at EndingAt.
	Ending   []string   `json:"ending,omitempty"`
	EndingAt *time.Time `json:"ending_at,omitempty"`
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printDesks prints a table of desks, a line per credential.
func printDesks(w io.Writer, desks []events.DeskListing) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DESK\tMUNICIPALITY\tNAME\tKEY\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, d := range desks {
		if len(d.Credentials) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\n", d.ID, d.Municipality, d.Name)
		}
		for _, c := range d.Credentials {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Municipality, d.Name, c.Key,
				when(&c.CreatedAt), when(c.ExpiresAt), when(c.RevokedAt), when(c.LastUsedAt))
		}
	}
	return tw.Flush()
}

// parseExpiry reads when a credential ends: a number of days ("90d"), a Go
// duration ("36h"), both from now, a date ("2027-01-31", the start of that
// day in UTC) or an RFC 3339 time. It must be after now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	var at time.Time
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return time.Time{}, fmt.Errorf("%q: want a positive number of days, like 90d", s)
		}
		at = now.AddDate(0, 0, n)
	} else if d, err := time.ParseDuration(s); err == nil {
		at = now.Add(d)
	} else if t, err := time.Parse(time.DateOnly, s); err == nil {
		at = t
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		at = t
	} else {
		return time.Time{}, fmt.Errorf("%q: want days (90d), a duration (36h), a date (2027-01-31) or an RFC 3339 time", s)
	}
	if !at.After(now) {
		return time.Time{}, fmt.Errorf("%q: %s has passed", s, at.UTC().Format(time.RFC3339))
	}
	return at, nil
}

func postgresCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "postgres start|stop|url [flags]"
	about := "Manages the local Postgres cluster under the data directory: start initialises and\n" +
		"starts it and prints its URL; stop stops it; url prints its URL, starting it if needed."
	if verb, err := verbOf("postgres", []string{"start", "stop", "url"}, args, line, about, stderr); verb == "" {
		return err
	}
	var cfg Config
	fs := newFlagSet("postgres "+args[0], line, about, stderr)
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	pgConfig := localpg.Config{DataDir: cfg.DataDir, Logger: cfg.logger(stderr)}
	if args[0] == "stop" {
		// Stopping opens nothing: a cluster that cannot be opened (its
		// password file lost, say) can still be stopped.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return localpg.Stop(stopCtx, pgConfig)
	}
	cluster, err := localpg.Open(ctx, pgConfig)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, cluster.URL())
	return nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}
