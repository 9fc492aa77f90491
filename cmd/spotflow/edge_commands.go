package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/deskapi"
	"github.com/spotflow/spotflow/workers/deskapp"
	"github.com/spotflow/spotflow/workers/edge"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// edgeBundle is what `edge issue` writes for a desk's edge: the desk, the
// edge's credential at the hub, and the SHA-256 of the desk's tokens in
// force, which the edge checks submissions against while offline.
type edgeBundle struct {
	DeskID       string   `json:"desk_id"`
	Municipality string   `json:"municipality"`
	DeskName     string   `json:"desk_name"`
	Seed         string   `json:"seed"`
	TokenSHA256  []string `json:"token_sha256"`
	// Mediators may sign in to the edge's desk application while the desk
	// is offline, with the passwords they had when the bundle was issued.
	Mediators []events.EdgeMediator `json:"mediators"`
}

// edgeCommand manages desks' edges at the hub (issue, list, revoke) and
// runs one at a desk (run).
func edgeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "edge issue --desk ID --out FILE | edge list [--json] | edge revoke --desk ID |\n" +
		"       edge run --bundle FILE --hub nats-leaf://HUB:7422 [--hub-ca FILE] [--hub-api URL] [--http 127.0.0.1:8081]"
	about := "A desk's edge keeps the desk working while its link to the hub is down: run at the desk or in\n" +
		"the town hall, it runs a NATS leaf node with JetStream in a domain of its own and serves the desk\n" +
		"API; submissions are checked, stored there and answered 202 (stored_at: desk), then forwarded\n" +
		"to the hub in order, once, when the link is up. At the hub (started with --leaf-listen), issue\n" +
		"writes the edge's bundle (its credential, shown nowhere else; the desk's token hashes in force:\n" +
		"issue it again after rotating the desk's tokens), list shows the edges, revoke cuts an edge off\n" +
		"within seconds. Issuing and revoking are in the audit log under --operator."
	verb, err := verbOf("edge", []string{"issue", "list", "revoke", "run"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	if verb == "run" {
		return edgeRun(ctx, args[1:], stdout, stderr, line, about)
	}
	var cfg Config
	var deskID, out, operatorName string
	var asJSON bool
	fs := newFlagSet("edge "+verb, line, about, stderr)
	fs.StringVar(&deskID, "desk", "", "issue, revoke: the desk whose edge it is")
	fs.StringVar(&out, "out", "", "issue: the file to write the edge's bundle to (mode 0600; never overwritten)")
	fs.BoolVar(&asJSON, "json", false, "list: print JSON instead of a table")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "who is acting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case verb == "issue" && (deskID == "" || out == ""):
		return usageError(fs, "issue needs --desk and --out")
	case verb == "revoke" && deskID == "":
		return usageError(fs, "revoke needs --desk")
	}
	by := events.By{Actor: operatorActor(operatorName)}
	return withDatabase(ctx, &cfg, stderr, func(s *postgres.Store) error {
		switch verb {
		case "issue":
			return issueEdge(ctx, s, deskID, out, by, stdout)
		case "revoke":
			n, err := s.RevokeEdgeCredentials(ctx, deskID, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %d credential(s) of the edge of %s\n", n, deskID)
			return nil
		}
		list, err := s.EdgeCredentials(ctx, true)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DESK\tMUNICIPALITY\tPUBLIC KEY\tISSUED\tSTATE")
		for _, e := range list {
			state := "in force"
			if e.RevokedAt != nil {
				state = "revoked " + e.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.DeskID, e.Municipality, e.PublicKey, e.CreatedAt.UTC().Format(time.RFC3339), state)
		}
		return tw.Flush()
	})
}

// issueEdge makes an edge's credential for deskID and writes its bundle.
func issueEdge(ctx context.Context, s *postgres.Store, deskID, out string, by events.By, stdout io.Writer) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("edge bundle: %w", err)
	}
	defer f.Close()
	seed, err := natsbus.NewSeed()
	if err != nil {
		return err
	}
	pub, err := seed.PublicKey()
	if err != nil {
		return err
	}
	desk, hashes, err := s.AddEdgeCredential(ctx, deskID, pub, by)
	if err != nil {
		_ = os.Remove(out)
		return err
	}
	mediators, err := s.EdgeMediators(ctx, deskID)
	if err != nil {
		_ = os.Remove(out)
		return err
	}
	b := edgeBundle{DeskID: desk.ID, Municipality: desk.Municipality, DeskName: desk.Name, Seed: string(seed), Mediators: mediators}
	for _, h := range hashes {
		b.TokenSHA256 = append(b.TokenSHA256, hex.EncodeToString(h))
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"desk_id": desk.ID, "municipality": desk.Municipality, "public_key": pub,
		"bundle": out, "desk_tokens": len(hashes), "mediators": len(mediators)})
}

// edgeRun runs a desk's edge until ctx ends.
func edgeRun(ctx context.Context, args []string, stdout, stderr io.Writer, line, about string) error {
	var bundlePath, hubs, hubCA, hubAPI, httpAddr, dataDir, catalogFile, logLevel string
	outboxAge := envDays("SPOTFLOW_EDGE_OUTBOX_AGE", 30*24*time.Hour)
	var outboxBytes int64
	var deskApp bool
	fs := newFlagSet("edge run", line, about, stderr)
	fs.StringVar(&bundlePath, "bundle", os.Getenv("SPOTFLOW_EDGE_BUNDLE"), "the edge's bundle, from edge issue at the hub (SPOTFLOW_EDGE_BUNDLE)")
	fs.StringVar(&hubs, "hub", os.Getenv("SPOTFLOW_EDGE_HUB"), "the hub's leaf-node addresses, comma-separated: nats-leaf://hub:7422, or tls://… (SPOTFLOW_EDGE_HUB)")
	fs.StringVar(&hubCA, "hub-ca", os.Getenv("SPOTFLOW_EDGE_HUB_CA"), "CA certificate (PEM) to check the hub's certificate against, for tls:// (SPOTFLOW_EDGE_HUB_CA)")
	fs.StringVar(&hubAPI, "hub-api", os.Getenv("SPOTFLOW_EDGE_HUB_API"), "the hub's HTTP address, where forwarded requests are read with the desk's token; optional (SPOTFLOW_EDGE_HUB_API)")
	fs.StringVar(&httpAddr, "http", env("SPOTFLOW_EDGE_HTTP", "127.0.0.1:8081"), "where the edge serves the desk API (SPOTFLOW_EDGE_HTTP)")
	fs.StringVar(&dataDir, "data-dir", env("SPOTFLOW_DATA_DIR", ".data/edge"), "where the edge keeps its JetStream store (the outbox) and keys (SPOTFLOW_DATA_DIR)")
	fs.StringVar(&catalogFile, "catalog", os.Getenv("SPOTFLOW_CATALOG"), "service catalogue file; default: the built-in one (SPOTFLOW_CATALOG)")
	fs.Var((*days)(&outboxAge), "outbox-age", "how long the outbox keeps a request: longer than the longest outage to ride out, in days (30d) or a Go duration (SPOTFLOW_EDGE_OUTBOX_AGE)")
	fs.Int64Var(&outboxBytes, "outbox-max-bytes", 1<<30, "the outbox's size on disk; once full, submissions are refused (503)")
	fs.BoolVar(&deskApp, "desk-app", true, "also serve the desk application (/desk/) to the bundle's mediators, with a database of the edge's own (a Postgres cluster under --data-dir, from the system's binaries)")
	fs.StringVar(&logLevel, "log-level", env("SPOTFLOW_LOG_LEVEL", "info"), "debug, info, warn or error (SPOTFLOW_LOG_LEVEL)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bundlePath == "" || hubs == "" {
		return usageError(fs, "run needs --bundle and --hub")
	}
	log := (&Config{LogLevel: logLevel}).logger(stderr).With("role", "edge")
	var b edgeBundle
	data, err := os.ReadFile(bundlePath)
	if err != nil {
		return fmt.Errorf("edge bundle: %w", err)
	}
	if err := json.Unmarshal(data, &b); err != nil || b.DeskID == "" || b.Municipality == "" || b.Seed == "" {
		return fmt.Errorf("edge bundle %s: not a bundle of edge issue (%v)", bundlePath, err)
	}
	var hashes [][]byte
	for _, h := range b.TokenSHA256 {
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != 32 {
			return fmt.Errorf("edge bundle %s: bad token hash", bundlePath)
		}
		hashes = append(hashes, raw)
	}
	if len(hashes) == 0 {
		return fmt.Errorf("edge bundle %s: the desk had no token in force when it was issued", bundlePath)
	}
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: catalogFile, Logger: log})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	local, err := readOrCreateSeed(filepath.Join(dataDir, "edge.nk"))
	if err != nil {
		return err
	}
	ns, err := startEdgeServer(dataDir, local, b, strings.Split(hubs, ","), hubCA, log)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	nc, js, err := natsbus.Connect(ns.ClientURL(), "spotflow edge", natsbus.Credential{Identity: natsbus.EdgeIdentity(b.DeskID), Seed: local}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	desk := events.Desk{ID: b.DeskID, Municipality: b.Municipality, Name: b.DeskName}
	ecfg := edge.Config{
		JetStream: js, Desk: desk, TokenHashes: hashes,
		Catalog: catalog, OutboxAge: outboxAge, OutboxBytes: outboxBytes, HubAPI: hubAPI, Logger: log,
	}
	var db *postgres.Store
	if deskApp {
		var stop func()
		if db, stop, err = edgeDatabase(ctx, dataDir, desk, b.Mediators, log); err != nil {
			return err
		}
		defer stop()
		ecfg.Accepted = func(ctx context.Context, req *events.Request) error {
			return errors.Join(db.Project(ctx, []events.Change{{Request: req}})...)
		}
	}
	e, err := edge.New(ctx, ecfg)
	if err != nil {
		return err
	}
	api, err := deskapi.New(deskapi.Config{Intake: e, Store: e, Catalog: catalog, StoredAt: "desk", Logger: log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", edge.WithToken(api))
	var app *deskapp.App
	if db != nil {
		if app, err = deskapp.New(deskapp.Config{Store: db, Intake: e, Catalog: catalog, Screens: db,
			FailedAuth: ratelimit.New(30.0/60, 30), Logger: log.With("component", "desk-app")}); err != nil {
			return err
		}
		mux.Handle("/desk/", app)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := e.Pending(r.Context()); err != nil {
			http.Error(w, "the edge's store cannot be read", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("edge: listen for http: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.Run(gctx) })
	if app != nil {
		g.Go(func() error { return app.Run(gctx) })
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shut, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shut)
	})
	fmt.Fprintf(stdout, "spotflow edge of desk %s (%s) ready\n  HTTP  http://%s  (desk API /v1)\n  hub   %s\n", b.DeskID, b.Municipality, ln.Addr(), hubs)
	return g.Wait()
}

// startEdgeServer runs the edge's NATS server: JetStream in the edge's own
// domain, its store encrypted, on loopback for the edge alone, and a leaf
// node of the hub, connecting with the bundle's credential; the edge's own
// processes connect to it with local.
func startEdgeServer(dataDir string, local natsbus.Seed, b edgeBundle, hubs []string, hubCA string, log *slog.Logger) (*natsbus.Server, error) {
	pub, err := local.PublicKey()
	if err != nil {
		return nil, err
	}
	key, err := secretKey("edge store key", "SPOTFLOW_NATS_STORE_KEY", os.Getenv("SPOTFLOW_NATS_STORE_KEY"), dataDir, "nats-store.key")
	if err != nil {
		return nil, err
	}
	remote := &natsbus.LeafRemote{Seed: natsbus.Seed(b.Seed)}
	for _, h := range hubs {
		if h = strings.TrimSpace(h); h != "" {
			remote.URLs = append(remote.URLs, h)
		}
	}
	if hubCA != "" {
		pem, err := os.ReadFile(hubCA)
		if err != nil {
			return nil, fmt.Errorf("hub CA: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("hub CA %s: no certificate", hubCA)
		}
		remote.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	identity := natsbus.EdgeIdentity(b.DeskID)
	return natsbus.RunServer(natsbus.ServerConfig{
		Name:     identity,
		Domain:   identity,
		StoreDir: filepath.Join(dataDir, "nats"),
		StoreKey: hex.EncodeToString(key),
		Port:     -1,
		// The edge's own processes only; everything it may send the hub is
		// what the hub's grant for the edge lets cross.
		Users:  []natsbus.User{{PublicKey: pub, Grant: natsbus.Grant{Identity: identity, Publish: []string{">"}}}},
		Hub:    remote,
		Logger: log.With("component", "nats-server"),
	})
}

// edgeDatabase starts the edge's own Postgres cluster under dataDir, from
// the system's binaries, migrates it, and makes it know the desk and its
// mediators; stop stops the cluster it started.
func edgeDatabase(ctx context.Context, dataDir string, desk events.Desk, mediators []events.EdgeMediator, log *slog.Logger) (*postgres.Store, func(), error) {
	cluster, err := localpg.Open(ctx, localpg.Config{DataDir: dataDir, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("edge database: %w", err)
	}
	stop := func() {
		if !cluster.Started() {
			return
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			log.Error("edge database: stop", "err", err)
		}
	}
	pool, err := postgres.Connect(ctx, cluster.URL())
	if err != nil {
		stop()
		return nil, nil, err
	}
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		pool.Close()
		stop()
		return nil, nil, err
	}
	key, err := secretKey("edge citizen key", "SPOTFLOW_CITIZEN_KEY", os.Getenv("SPOTFLOW_CITIZEN_KEY"), dataDir, "citizen.key")
	if err != nil {
		pool.Close()
		stop()
		return nil, nil, err
	}
	store := postgres.NewStore(pool, key)
	if err := store.ImportEdgeDesk(ctx, desk, mediators); err != nil {
		pool.Close()
		stop()
		return nil, nil, err
	}
	return store, func() { pool.Close(); stop() }, nil
}
