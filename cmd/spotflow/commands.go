package main

import (
	"context"
	"encoding/json"

	"flag"
	"fmt"
	"io"
	"net/url"
	"time"

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

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
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

func deskCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stderr, "Usage: spotflow desk create --municipality CODE --name NAME")
			return nil
		}
		fmt.Fprintln(stderr, "Usage: spotflow desk create --municipality CODE --name NAME")
		return fmt.Errorf("%w: desk needs a subcommand", errUsage)
	}
	var cfg Config
	var municipality, name string
	fs := newFlagSet("desk create", "desk create --municipality CODE --name NAME [flags]",
		"Registers a desk and prints its id and token as JSON. The token is shown only once.", stderr)
	fs.StringVar(&municipality, "municipality", "", "municipality code, e.g. lisboa (required)")
	fs.StringVar(&name, "name", "", "the desk's name, e.g. \"Loja do Cidadão Laranjeiras\" (required)")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if municipality == "" || name == "" {
		fs.Usage()
		return fmt.Errorf("%w: --municipality and --name are required", errUsage)
	}
	return withDatabase(ctx, &cfg, stderr, func(s *postgres.Store) error {
		desk, token, err := s.CreateDesk(ctx, municipality, name)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(map[string]string{
			"desk_id": desk.ID, "municipality": desk.Municipality, "name": desk.Name, "token": token,
		})
	})
}

func postgresCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "postgres start|stop|url [flags]"
	about := "Manages the local Postgres cluster under the data directory: start initialises and\n" +
		"starts it and prints its URL; stop stops it; url prints its URL, starting it if needed."
	if len(args) == 0 || (args[0] != "start" && args[0] != "stop" && args[0] != "url") {
		fs := newFlagSet("postgres", line, about, stderr)
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return fmt.Errorf("%w: postgres needs start, stop or url", errUsage)
	}
	var cfg Config
	fs := newFlagSet("postgres "+args[0], line, about, stderr)
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cluster, err := localpg.Open(ctx, localpg.Config{DataDir: cfg.DataDir, Logger: cfg.logger(stderr)})
	if err != nil {
		return err
	}
	if args[0] == "stop" {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return cluster.Stop(stopCtx)
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
