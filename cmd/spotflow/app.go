package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/simagency"
)

// The roles a process can run.
const (
	roleIntake     = "intake"
	roleRouter     = "router"
	roleDispatcher = "dispatcher"
	roleProjector  = "projector"
)

var allRoles = []string{roleIntake, roleRouter, roleDispatcher, roleProjector}

// Main is one spotflow process: the roles it runs and the infrastructure it
// starts or connects to. Run blocks until its context ends; tests drive it
// with ":0" ports and temporary directories, the way the binary does.
type Main struct {
	Config Config
	// Roles to run; all of them for `spotflow run`.
	Roles []string
	// Embed starts a NATS server in-process when Config.NATSURL is empty.
	Embed bool
	// DemoDesk registers a desk for trying the system out, the first time
	// the process runs on a data directory, and writes its token to
	// DataDir/demo-desk.token.
	DemoDesk bool
	// Stdout receives the addresses the process uses, for people.
	Stdout io.Writer
	// Logger; default JSON on stderr at Config.LogLevel.
	Logger *slog.Logger

	ready    chan struct{}
	httpAddr string
	natsURL  string
	agencies map[string]*simagency.Agency
	js       jetstream.JetStream
	pool     *pgxpool.Pool
	registry *prometheus.Registry
}

// Ready is closed once every role is running and HTTPAddr is known.
func (m *Main) Ready() <-chan struct{} {
	if m.ready == nil {
		m.ready = make(chan struct{})
	}
	return m.ready
}

// HTTPAddr is the address the HTTP server listens on, once Ready.
func (m *Main) HTTPAddr() string { return m.httpAddr }

// NATSURL is the NATS server in use, once Ready.
func (m *Main) NATSURL() string { return m.natsURL }

// Agencies are the simulated agencies of the dispatcher role, once Ready.
func (m *Main) Agencies() map[string]*simagency.Agency { return m.agencies }

// Registry is the process's Prometheus registry, served at /metrics, once
// Ready.
func (m *Main) Registry() *prometheus.Registry { return m.registry }

// JetStream is the process's JetStream handle, once Ready.
func (m *Main) JetStream() jetstream.JetStream { return m.js }

// Run starts the roles and blocks until ctx ends, then stops everything it
// started, in reverse order, and returns nil; it returns an error if a role
// or a piece of infrastructure fails.
func (m *Main) Run(ctx context.Context) (err error) {
	m.Ready()
	cfg := &m.Config
	log := m.Logger
	if log == nil {
		log = cfg.logger(os.Stderr)
	}
	stdout := m.Stdout
	if stdout == nil {
		stdout = io.Discard
	}

	catalogs, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: cfg.CatalogFile, Logger: log.With("component", "catalogue")})
	if err != nil {
		return err
	}
	// The agencies' queues and adapters are those of the catalogue at start.
	catalog := catalogs.Current()

	// Postgres: the configured server, or the local cluster.
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		cluster, err := localpg.Open(ctx, localpg.Config{DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			return fmt.Errorf("start local postgres: %w", err)
		}
		if cluster.Started() {
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if err := cluster.Stop(stopCtx); err != nil {
					log.Error("stop local postgres", "err", err)
				}
			}()
		}
		dbURL = cluster.URL()
	}
	m.pool, err = postgres.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer m.pool.Close()
	if _, err := postgres.Migrate(ctx, m.pool); err != nil {
		return err
	}
	key, err := cfg.citizenKey()
	if err != nil {
		return err
	}
	store := postgres.NewStore(m.pool, key, postgres.ServiceLevels(serviceLevels(catalog)))

	// NATS: the configured server, or an embedded one.
	m.natsURL = cfg.NATSURL
	if m.natsURL == "" && m.Embed {
		ns, err := m.embedNATS(log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		m.natsURL = ns.ClientURL()
	}
	m.natsURL = cmpOr(m.natsURL, nats.DefaultURL)
	nc, js, err := natsbus.Connect(m.natsURL, "spotflow "+fmt.Sprint(m.Roles), log)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the last acknowledgements before the connection goes.
		_ = nc.FlushTimeout(5 * time.Second)
		nc.Close()
	}()
	m.js = js
	provisionCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = natsbus.Provision(provisionCtx, js, natsbus.Topology{
		Agencies: catalog.AgencyCodes(), Replicas: cfg.Replicas, AckWait: cfg.AckWait, MaxDeliveries: cfg.MaxDeliveries,
	})
	cancel()
	if err != nil {
		return err
	}

	// Metrics: one registry per process, served at /metrics.
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := workers.NewMetrics(m.registry)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	m.registry.MustRegister(workers.NewQueueCollector(func(ctx context.Context) ([]natsbus.ConsumerState, error) {
		return natsbus.ConsumerStates(ctx, js)
	}, log))
	deadLetters := metrics.DeadLetters(store)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return catalogs.Run(gctx) })
	// Registered before anything else can start: from here on a SIGHUP
	// reloads the catalogue and no longer ends the process.
	hangup := make(chan os.Signal, 1)
	signal.Notify(hangup, syscall.SIGHUP)
	defer signal.Stop(hangup)
	g.Go(func() error { return reloadOnHangup(gctx, hangup, catalogs) })
	var onShutdown []func()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		pingCtx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		switch {
		case !nc.IsConnected():
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
		case m.pool.Ping(pingCtx) != nil:
			http.Error(w, "postgres: not reachable", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	// One publisher for every role of the process: what they publish at the
	// same time is stored in the same batches.
	pub := natsbus.NewPublisher(js)
	for _, role := range m.Roles {
		switch role {
		case roleIntake:
			intake, err := workers.NewIntake(workers.IntakeConfig{
				Store: store, Publisher: pub, Catalog: catalogs, Metrics: metrics, Logger: log.With("role", roleIntake),
			})
			if err != nil {
				return err
			}
			mux.Handle("/v1/", intake)
			mux.Handle("/open311/", intake)
			dashboard, err := workers.NewDashboard(workers.DashboardConfig{
				Store: store, Catalog: catalog, Logger: log.With("role", "dashboard"),
				Backlog: func(ctx context.Context) ([]events.QueueBacklog, error) { return natsbus.Backlog(ctx, js) },
			})
			if err != nil {
				return err
			}
			onShutdown = append(onShutdown, dashboard.Close)
			mux.Handle("/dashboard", dashboard)
			mux.Handle("/dashboard/", dashboard)
			if cfg.OperatorToken != "" {
				ops, err := workers.NewOps(workers.OpsConfig{
					Store: store, Replayer: workers.NewReplayer(store, js), Token: cfg.OperatorToken, Logger: log.With("role", "ops"),
				})
				if err != nil {
					return err
				}
				mux.Handle("/v1/ops/", ops)
			}
		case roleRouter:
			router, err := workers.NewRouter(workers.RouterConfig{JetStream: js, Catalog: catalogs, DeadLetters: deadLetters, Publisher: pub, Metrics: metrics, Logger: log})
			if err != nil {
				return err
			}
			reconciler, err := workers.NewReconciler(workers.ReconcilerConfig{
				JetStream: js, Store: store, After: cfg.ReconcileAfter, Every: cfg.ReconcileEvery, Logger: log.With("role", "reconciler"),
			})
			if err != nil {
				return err
			}
			g.Go(func() error { return router.Run(gctx) })
			g.Go(func() error { return reconciler.Run(gctx) })
		case roleDispatcher:
			adapters, err := m.adapters(catalog)
			if err != nil {
				return err
			}
			for agency, a := range adapters {
				adapters[agency] = metrics.Adapter(agency, a)
			}
			d, err := workers.NewDispatcher(workers.DispatcherConfig{
				JetStream: js, Adapters: adapters, DeadLetters: deadLetters, Metrics: metrics, KeepAlive: cfg.AckWait / 3, Publisher: pub, Logger: log,
			})
			if err != nil {
				return err
			}
			undelivered, err := workers.NewUndelivered(workers.UndeliveredConfig{JetStream: js, Store: deadLetters, Logger: log})
			if err != nil {
				return err
			}
			g.Go(func() error { return d.Run(gctx) })
			g.Go(func() error { return undelivered.Run(gctx) })
		case roleProjector:
			p, err := workers.NewProjector(workers.ProjectorConfig{JetStream: js, Store: store, DeadLetters: deadLetters, Metrics: metrics, Logger: log})
			if err != nil {
				return err
			}
			pruner, err := workers.NewPruner(workers.PrunerConfig{Store: store, Logger: log.With("role", "pruner")})
			if err != nil {
				return err
			}
			folder, err := workers.NewFolder(workers.FolderConfig{Store: store, Logger: log.With("role", "folder")})
			if err != nil {
				return err
			}
			g.Go(func() error { return p.Run(gctx) })
			g.Go(func() error { return pruner.Run(gctx) })
			g.Go(func() error { return folder.Run(gctx) })
		default:
			return fmt.Errorf("unknown role %q", role)
		}
	}
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen for http: %w", err)
		}
		m.httpAddr = ln.Addr().String()
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		for _, f := range onShutdown {
			srv.RegisterOnShutdown(f)
		}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
			defer cancel()
			return srv.Shutdown(shutdownCtx)
		})
	}

	if m.DemoDesk {
		path, err := demoDesk(ctx, store, cfg.DataDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  demo desk token in %s\n", path)
	}
	fmt.Fprintf(stdout, "spotflow running %v\n", m.Roles)
	if m.httpAddr != "" {
		fmt.Fprintf(stdout, "  HTTP      http://%s  (desk API /v1, Open311 /open311/v2, /dashboard, /metrics, /healthz, /readyz)\n", m.httpAddr)
	}
	fmt.Fprintf(stdout, "  NATS      %s\n", m.natsURL)
	fmt.Fprintf(stdout, "  Postgres  %s\n", redactURL(dbURL))
	log.Info("spotflow running", "roles", m.Roles, "http", m.httpAddr, "nats", m.natsURL)
	close(m.ready)
	return g.Wait()
}

// adapters connects the dispatcher to every agency of the catalogue: over
// HTTP when AgencyURL is set, else to simulated agencies in this process.
func (m *Main) adapters(catalog *events.Catalog) (map[string]workers.Adapter, error) {
	adapters := make(map[string]workers.Adapter)
	if m.Config.AgencyURL != "" {
		client, err := httpadapter.New(httpadapter.Config{Endpoint: m.Config.AgencyURL})
		if err != nil {
			return nil, err
		}
		for _, code := range catalog.AgencyCodes() {
			adapters[code] = client
		}
		return adapters, nil
	}
	profiles, err := simagency.ParseProfiles(m.Config.Agencies)
	if err != nil {
		return nil, err
	}
	m.agencies = make(map[string]*simagency.Agency)
	for _, code := range catalog.AgencyCodes() {
		a := simagency.New(code, simagency.For(profiles, code))
		adapters[code], m.agencies[code] = a, a
	}
	return adapters, nil
}

func (m *Main) embedNATS(log *slog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(m.Config.NATSListen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", m.Config.NATSListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", m.Config.NATSListen, err)
	}
	if port == 0 {
		port = -1 // any free port
	}
	return natsbus.RunServer(natsbus.ServerConfig{
		StoreDir: filepath.Join(m.Config.DataDir, "nats"),
		Host:     host,
		Port:     port,
		NoSync:   m.Config.NATSNoSync,
		Logger:   log.With("component", "nats-server"),
	})
}

// loadCatalog loads the catalogue file at path, or the built-in one.
func loadCatalog(path string) (*events.Catalog, error) {
	f, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: path})
	if err != nil {
		return nil, err
	}
	return f.Current(), nil
}

// reloadOnHangup reloads the catalogue file on every signal from hup until
// ctx ends. A file that does not load is logged and the last good catalogue
// stays.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, catalogs *workers.CatalogFile) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			_ = catalogs.Reload()
		}
	}
}

// serviceLevels are the catalogue's expected completion times by service.
func serviceLevels(catalog *events.Catalog) map[string]time.Duration {
	slas := make(map[string]time.Duration, len(catalog.Services))
	for _, s := range catalog.Services {
		slas[s.Code] = s.SLA()
	}
	return slas
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// demoDesk makes sure a demo desk exists and its token is in
// dataDir/demo-desk.token, and returns that path.
func demoDesk(ctx context.Context, store *postgres.Store, dataDir string) (string, error) {
	path := filepath.Join(dataDir, "demo-desk.token")
	if data, err := os.ReadFile(path); err == nil {
		if _, err := store.DeskByToken(ctx, strings.TrimSpace(string(data))); err == nil {
			return path, nil
		}
	}
	_, token, err := store.CreateDesk(ctx, "demo", "Demo desk")
	if err != nil {
		return "", fmt.Errorf("demo desk: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("demo desk: %w", err)
	}
	return path, nil
}
