package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/simagency"
)

// natsCommand runs the embedded NATS server alone, for deployments and tests
// that want it in a process of its own.
func natsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs := newFlagSet("nats", "nats [flags]",
		"Runs a NATS server with JetStream storing under <data-dir>/nats, encrypted, listening on\n"+
			"--nats-listen, syncing to disk before every acknowledgement unless --nats-no-sync. It lets\n"+
			"in spotflow's own identities (their seeds in --nats-identities, created when missing) and\n"+
			"the agencies' credentials in force in the database, following their changes, and\n"+
			"provisions the streams and consumers of the catalogue's agencies.", stderr)
	cfg.flags(fs, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	log := cfg.logger(stderr)
	catalog, err := loadCatalog(cfg.CatalogFile)
	if err != nil {
		return err
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		m := &Main{Config: cfg}
		own, err := cfg.ownUsers(catalog)
		if err != nil {
			return err
		}
		ns, err := m.embedNATS(own, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		users, err := newUsers(ctx, ns, own, store, log)
		if err != nil {
			return err
		}
		if err := provisionAs(ctx, &cfg, ns.ClientURL(), m.topology(catalog), log); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "NATS %s (JetStream in %s; identities in %s)\n", ns.ClientURL(), filepath.Join(cfg.DataDir, "nats"), cfg.identityDir())
		return users.Run(ctx)
	})
}

// provisionAs connects to url as admin and provisions t.
func provisionAs(ctx context.Context, cfg *Config, url string, t natsbus.Topology, log *slog.Logger) error {
	cred, err := cfg.credential(natsbus.Admin)
	if err != nil {
		return err
	}
	nc, js, err := natsbus.Connect(url, "spotflow provision", cred, log, cfg.natsOptions(true)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	provisionCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return natsbus.Provision(provisionCtx, js, t)
}

// agenciesCommand runs the simulated agencies as an HTTP service with a
// durable journal, for HTTP delivery.
func agenciesCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	var dir, secretFile string
	fs := newFlagSet("agencies", "agencies [flags]",
		"Serves the catalogue's agencies as simulated back offices over HTTP at\n"+
			"POST /agencies/{agency}/work-items (deliver to them with --delivery\n"+
			"'{\"*\": {\"delivery\": \"http\", \"url\": \".../agencies/{agency}/work-items\", ...}}'),\n"+
			"journalling every work item applied under --journal-dir. With --signing-secret-file\n"+
			"only deliveries signed with that secret are taken. Faults can be switched at run\n"+
			"time with PUT /control/{agency} {\"down\": true, \"latency\": \"5s\"}.", stderr)
	cfg.flags(fs, "127.0.0.1:9090")
	fs.StringVar(&dir, "journal-dir", "", "journal directory; default <data-dir>/agencies")
	fs.StringVar(&secretFile, "signing-secret-file", "", "take only deliveries signed with the secret in this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	log := cfg.logger(stderr)
	catalog, err := loadCatalog(cfg.CatalogFile)
	if err != nil {
		return err
	}
	profiles, err := simagency.ParseProfiles(cfg.Agencies)
	if err != nil {
		return err
	}
	srv, err := simagency.NewServer(simagency.ServerConfig{
		Dir: cmp.Or(dir, filepath.Join(cfg.DataDir, "agencies")), Profiles: profiles, Agencies: catalog.AgencyCodes(), Logger: log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stdout, "simulated agencies on http://%s/agencies/{agency}/work-items\n", ln.Addr())
	handler := srv.Handler()
	if secretFile != "" {
		raw, err := secret("signing secret", "", secretFile)
		if err != nil {
			return err
		}
		key, err := httpadapter.ParseSigningSecret(raw)
		if err != nil {
			return err
		}
		// Deliveries must be signed; the fault controls are the tests' own.
		mux := http.NewServeMux()
		mux.Handle("/control/", handler)
		mux.Handle("/", httpadapter.RequireSignature(key, handler))
		handler = mux
	}
	limits := cfg.httpLimits()
	hs := limits.server(handler, slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
	}()
	if err := hs.Serve(limits.listen(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// deadCommand lists, shows and replays dead letters.
func deadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "dead list [--agency A] [--municipality M] [--pending] | dead show ID --reason WHY | dead replay (ID | --all [--agency A] [--municipality M]) [flags]"
	about := "Inspects and replays dead letters: work items and messages that left their queue\n" +
		"unhandled. A replay keeps the work item's idempotency key, starts a new round in the\n" +
		"request's timeline, and is recorded in the audit log under --operator; so is each show,\n" +
		"with its --reason."
	verb, err := verbOf("dead", []string{"list", "show", "replay"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var agency, municipality, operatorName, reason string
	var pending, all bool
	fs := newFlagSet("dead "+verb, line, about, stderr)
	fs.StringVar(&agency, "agency", "", "only this agency's dead letters")
	fs.StringVar(&municipality, "municipality", "", "only the dead letters of this municipality's requests")
	fs.BoolVar(&pending, "pending", false, "list: only dead letters never replayed")
	fs.BoolVar(&all, "all", false, "replay: every dead letter never replayed (of --agency and --municipality, if given)")
	fs.StringVar(&operatorName, "operator", os.Getenv("USER"), "who is acting, for the audit log")
	fs.StringVar(&reason, "reason", "", "why, for the audit log (required by show)")
	cfg.flags(fs, "")
	// Accept the ID before or after the flags.
	var id int64
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, _ = strconv.ParseInt(rest[0], 10, 64)
		rest = rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		id, _ = strconv.ParseInt(fs.Arg(0), 10, 64)
	}
	if (verb == "show" || (verb == "replay" && !all)) && id <= 0 {
		return usageError(fs, "%s needs a dead letter ID", verb)
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		switch verb {
		case "list":
			return listDeadLetters(ctx, store, stdout, events.DeadLetterQuery{Agency: agency, Municipality: municipality, Pending: pending})
		case "show":
			return showDeadLetter(ctx, store, id, events.By{Actor: operatorActor(operatorName), Reason: reason}, stdout)
		}
		ids := []int64{id}
		if all {
			dead, err := store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: agency, Municipality: municipality, Pending: true, Limit: 10000})
			if err != nil {
				return err
			}
			ids = ids[:0]
			for _, d := range dead {
				ids = append(ids, d.ID)
			}
		}
		return replayDeadLetters(ctx, &cfg, store, ids, events.By{Actor: operatorActor(operatorName), Reason: reason}, stdout, stderr)
	})
}

// listDeadLetters prints a table of the dead letters q selects.
func listDeadLetters(ctx context.Context, store *postgres.Store, stdout io.Writer, q events.DeadLetterQuery) error {
	dead, err := store.ListDeadLetters(ctx, q)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tAGENCY\tWORK ITEM\tREASON\tATTEMPTS\tREPLAYS\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.CreatedAt.Format(time.RFC3339), d.Agency,
			cmp.Or(d.WorkItemID, cmp.Or(d.RequestID, d.Subject)), d.Reason, d.Attempts, d.Replays, truncate(d.LastError, 80))
	}
	return tw.Flush()
}

// replayDeadLetters puts the dead letters ids back in their queues on
// behalf of by, in order, stopping at the first that fails.
func replayDeadLetters(ctx context.Context, cfg *Config, store *postgres.Store, ids []int64, by events.By, stdout, stderr io.Writer) error {
	cred, err := cfg.credential(natsbus.Intake)
	if err != nil {
		return err
	}
	nc, js, err := natsbus.Connect(cmp.Or(cfg.NATSURL, nats.DefaultURL), "spotflow dead replay", cred, cfg.logger(stderr), cfg.natsOptions(false)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	replayer := workers.NewReplayer(store, js)
	for _, id := range ids {
		if err := replayer.Replay(ctx, id, by); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed dead letter %d\n", id)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
