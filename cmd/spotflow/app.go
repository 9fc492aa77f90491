package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/access"
	"github.com/spotflow/spotflow/workers/agencyapi"
	"github.com/spotflow/spotflow/workers/dashboard"
	"github.com/spotflow/spotflow/workers/deskapi"
	"github.com/spotflow/spotflow/workers/deskapp"
	"github.com/spotflow/spotflow/workers/open311"
	"github.com/spotflow/spotflow/workers/opendata"
	"github.com/spotflow/spotflow/workers/opsapi"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/localpg"
	"github.com/spotflow/spotflow/workers/ratelimit"
	"github.com/spotflow/spotflow/workers/receipts"
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

	readyOnce sync.Once
	ready     chan struct{}
	httpAddr  string
	natsURL   string
	leafURL   string
	agencies  map[string]*simagency.Agency
	js        jetstream.JetStream
	pool      *pgxpool.Pool
	registry  *prometheus.Registry
}

// Ready is closed once every role is running and HTTPAddr is known.
// Run and its caller may both ask first.
func (m *Main) Ready() <-chan struct{} {
	m.readyOnce.Do(func() { m.ready = make(chan struct{}) })
	return m.ready
}

// HTTPAddr is the address the HTTP server listens on, once Ready.
func (m *Main) HTTPAddr() string { return m.httpAddr }

// NATSURL is the NATS server in use, once Ready.
func (m *Main) NATSURL() string { return m.natsURL }

// LeafURL is where the embedded NATS server accepts desks' edges, once
// Ready; empty when it accepts none.
func (m *Main) LeafURL() string { return m.leafURL }

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
	log := cmp.Or(m.Logger, cfg.logger(os.Stderr))
	stdout := cmp.Or[io.Writer](m.Stdout, io.Discard)

	catalogs, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: cfg.CatalogFile, Logger: log.With("component", "catalogue")})
	if err != nil {
		return err
	}
	// The agencies' queues and adapters are those of the catalogue at start.
	catalog := catalogs.Current()

	dbURL, stopPostgres, err := m.startPostgres(ctx, log)
	if err != nil {
		return err
	}
	defer stopPostgres()
	store, err := m.openStore(ctx, dbURL, catalog)
	if err != nil {
		return err
	}
	defer m.pool.Close()
	bus, err := m.openBus(ctx, catalog, store, log)
	if err != nil {
		return err
	}
	defer bus.close()
	metrics, err := m.newMetrics(log)
	if err != nil {
		return err
	}

	// Unless HTTP is bound to loopback, the dashboard, /metrics and
	// profiles take the configured operator
	// token, a named machine credential, or a signed-in operator's session.
	// The configured token is a machine credential like the named ones:
	// looked up, listed, revocable.
	if cfg.OperatorToken != "" {
		if err := store.RegisterOperatorToken(ctx, "operator-token", cfg.OperatorToken); err != nil {
			return err
		}
	}
	tokens := access.NewLookup(func(ctx context.Context, token string) (bool, error) {
		_, err := store.OperatorByToken(ctx, token)
		if errors.Is(err, events.ErrUnauthenticated) {
			return false, nil
		}
		return err == nil, err
	}, 0)
	// Guessed tokens count against their address as on the APIs.
	tokens.Failures = ratelimit.New(float64(cfg.AuthFailures)/60, cfg.AuthFailures)
	gate := access.NewPolicy(cfg.HTTPAddr, access.Any{
		tokens, deskapp.Sessions{Accounts: store, Idle: cfg.DeskSessionIdle},
	})
	g, gctx := errgroup.WithContext(ctx)
	p := &process{
		Main: m, ctx: gctx, g: g, log: log, catalogs: catalogs, catalog: catalog,
		store: store, bus: bus, metrics: metrics, access: gate,
		deadLetters: metrics.DeadLetters(store), mux: m.baseMux(bus, log, gate),
	}
	g.Go(func() error { return catalogs.Run(gctx) })
	if bus.users != nil {
		p.run(bus.users)
	}
	// Registered before anything else can start: from here on a SIGHUP
	// reloads the catalogue and no longer ends the process.
	hangup := make(chan os.Signal, 1)
	signal.Notify(hangup, syscall.SIGHUP)
	defer signal.Stop(hangup)
	g.Go(func() error { return reloadOnHangup(gctx, hangup, catalogs) })
	for _, role := range m.Roles {
		start, ok := roles[role]
		if !ok {
			return fmt.Errorf("unknown role %q", role)
		}
		if err := start(p); err != nil {
			return err
		}
	}
	if err := p.serveHTTP(); err != nil {
		return err
	}
	if m.DemoDesk {
		path, err := demoDesk(ctx, store, cfg.DataDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  demo desk token in %s\n", path)
		link, err := firstOperator(ctx, store, cfg.DataDir)
		if err != nil {
			return err
		}
		if link != "" && m.httpAddr != "" {
			scheme := "http"
			if cfg.TLSCert != "" {
				scheme = "https"
			}
			fmt.Fprintf(stdout, "  Console   first operator \"admin\": set its password at %s://%s%s\n", scheme, m.httpAddr, link)
		}
	}
	m.announce(stdout, log, dbURL)
	close(m.ready)
	return g.Wait()
}

// roles are what each role of a process starts: its workers, and the HTTP
// surfaces it serves.
var roles = map[string]func(*process) error{
	roleIntake:     (*process).startIntake,
	roleRouter:     (*process).startRouter,
	roleDispatcher: (*process).startDispatcher,
	roleProjector:  (*process).startProjector,
}

// process is what the roles of one process share: the infrastructure Run
// opened, the group their workers run in, and the HTTP routes they add to.
type process struct {
	*Main
	ctx         context.Context
	g           *errgroup.Group
	log         *slog.Logger
	catalogs    *workers.CatalogFile
	catalog     *events.Catalog // the catalogue at start
	store       *postgres.Store
	bus         *bus
	metrics     *workers.Metrics
	deadLetters workers.DeadLetters
	mux         *http.ServeMux
	access      access.Policy
	onShutdown  []func()
}

// run starts w in the process's group.
func (p *process) run(w interface{ Run(context.Context) error }) {
	p.g.Go(func() error { return w.Run(p.ctx) })
}

// startIntake serves the desk API, Open311, agencies' status reports, the
// dashboard, the open data and, when an operator token is set, the operator
// API.
func (p *process) startIntake() error {
	log := p.log.With("role", roleIntake)
	limits, err := workers.NewDeskLimits(workers.DeskLimitsConfig{
		Rate: p.Config.DeskRate, Burst: p.Config.DeskBurst, MaxOpen: p.Config.DeskMaxOpen, Store: p.store, Logger: log,
	})
	if err != nil {
		return err
	}
	p.run(limits)
	// One count of failed authentications per address for every API.
	failedAuth := ratelimit.New(float64(p.Config.AuthFailures)/60, p.Config.AuthFailures)
	intake, err := workers.NewIntake(workers.IntakeConfig{
		Store: p.store, Publisher: p.bus.pub(roleIntake), Catalog: p.catalogs, Limits: limits,
		FailedAuth: failedAuth, Metrics: p.metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	desks, err := deskapi.New(deskapi.Config{Intake: intake, Store: p.store, Catalog: p.catalogs, Refused: p.metrics.Refused, Logger: log})
	if err != nil {
		return err
	}
	p.mux.Handle("/v1/", desks)
	geo, err := open311.New(open311.Config{Intake: intake, Store: p.store, Catalog: p.catalogs, Logger: log})
	if err != nil {
		return err
	}
	p.mux.Handle("/open311/", geo)
	reports, err := agencyapi.New(agencyapi.Config{Store: p.store, Publisher: intake, FailedAuth: failedAuth, Logger: p.log.With("role", "agency-api")})
	if err != nil {
		return err
	}
	p.mux.Handle("/v1/agency/", reports)
	keys, err := receipts.OpenKeys(p.Config.receiptKeys())
	if err != nil {
		return err
	}
	replayer := workers.NewReplayer(p.store, p.bus.js(roleIntake))
	desk, err := deskapp.New(deskapp.Config{
		Store: p.store, Intake: intake, Catalog: p.catalogs, FailedAuth: failedAuth,
		Receipts: keys, PublicURL: p.Config.PublicURL, Screens: p.store,
		SessionIdle: p.Config.DeskSessionIdle, Logger: p.log.With("role", "desk-app"),
		Console: p.console(replayer),
	})
	if err != nil {
		return err
	}
	p.run(desk)
	p.mux.Handle("/desk/", desk)
	p.mux.Handle("/receipts/", desk)
	board, err := dashboard.New(dashboard.Config{
		Store: p.store, Catalog: p.catalog, Operators: p.access.Operators, Logger: p.log.With("role", "dashboard"),
		Backlog: func(ctx context.Context) ([]events.QueueBacklog, error) {
			return natsbus.Backlog(ctx, p.bus.js(roleIntake))
		},
	})
	if err != nil {
		return err
	}
	p.onShutdown = append(p.onShutdown, board.Close)
	guarded := p.access.Require(board)
	p.mux.Handle("/dashboard", guarded)
	p.mux.Handle("/dashboard/", guarded)
	openData, err := opendata.New(opendata.Config{
		Store: p.store, Catalog: p.catalogs, License: p.Config.OpenDataLicense,
		PublisherName: p.Config.OpenDataPublisher, PublisherURL: p.Config.OpenDataPublisherURL, BaseURL: p.Config.PublicURL,
		Logger: p.log.With("role", "open-data"),
	})
	if err != nil {
		return err
	}
	p.mux.Handle("/open-data", openData)
	p.mux.Handle("/open-data/", openData)
	ops, err := opsapi.New(opsapi.Config{
		Store: p.store, Replayer: replayer, Tokens: p.store, Logger: p.log.With("role", "ops"),
	})
	if err != nil {
		return err
	}
	p.mux.Handle("/v1/ops/", ops)
	return nil
}

// console is the operator's console's configuration: the store, the
// replayer, and the pipeline's health read from JetStream and Postgres.
func (p *process) console(replayer *workers.Replayer) deskapp.ConsoleConfig {
	return deskapp.ConsoleConfig{
		Accounts: p.store, Work: p.store, Replayer: replayer, Audit: p.store,
		People: consolePeople{p.store},
		VerifyAudit: func(ctx context.Context) (events.AuditChainState, error) {
			return p.store.VerifyAudit(ctx)
		},
		ExportAudit: func(ctx context.Context, w io.Writer, from, to time.Time) error {
			return exportAudit(ctx, p.store, w, from, to)
		},
		Health: func(ctx context.Context) events.Health {
			return workers.ReadHealth(ctx, p.bus.js(roleIntake), p.store, p.catalogs.Current().AgencyCodes())
		},
	}
}

// startRouter runs the router and the reconciler, which re-drives accepted
// requests that stalled.
func (p *process) startRouter() error {
	router, err := workers.NewRouter(workers.RouterConfig{
		JetStream: p.bus.js(roleRouter), Catalog: p.catalogs, DeadLetters: p.deadLetters, Publisher: p.bus.pub(roleRouter), Metrics: p.metrics, Logger: p.log,
	})
	if err != nil {
		return err
	}
	reconciler, err := workers.NewReconciler(workers.ReconcilerConfig{
		JetStream: p.bus.js(roleRouter), Store: p.store, After: p.Config.ReconcileAfter, Every: p.Config.ReconcileEvery, Logger: p.log.With("role", "reconciler"),
	})
	if err != nil {
		return err
	}
	p.run(router)
	p.run(reconciler)
	return nil
}

// startDispatcher runs the dispatcher, with an adapter per agency of the
// catalogue that does not consume its own queue and the practice agency of
// training mode, and Undelivered, which
// dead-letters work items whose deliveries ran out, whoever consumes them.
func (p *process) startDispatcher() error {
	adapters, err := p.adapters(p.catalog)
	if err != nil {
		return err
	}
	for agency, a := range adapters {
		adapters[agency] = p.metrics.Adapter(agency, a)
	}
	// Training mode's simulated agency, counted nowhere.
	adapters[events.SourcePractice] = workers.PracticeAgency{}
	dispatcher, err := workers.NewDispatcher(workers.DispatcherConfig{
		JetStream: p.bus.js(roleDispatcher), Adapters: adapters, DeadLetters: p.deadLetters, Metrics: p.metrics,
		KeepAlive: p.Config.AckWait / 3, Publisher: p.bus.pub(roleDispatcher), Logger: p.log,
	})
	if err != nil {
		return err
	}
	p.run(dispatcher)
	undelivered, err := workers.NewUndelivered(workers.UndeliveredConfig{JetStream: p.bus.js(roleDispatcher), Store: p.deadLetters, Logger: p.log})
	if err != nil {
		return err
	}
	p.run(undelivered)
	return nil
}

// startProjector runs the projector, the pruner (of old roll-ups, of sealed
// copies nothing needs and of requests past their retention), the folder of
// the dashboard's roll-ups and the chainer of the audit log.
func (p *process) startProjector() error {
	projector, err := workers.NewProjector(workers.ProjectorConfig{
		JetStream: p.bus.js(roleProjector), Store: p.store, UnknownRequestFor: p.Config.UnknownEventFor,
		DeadLetters: p.deadLetters, Metrics: p.metrics, Logger: p.log,
	})
	if err != nil {
		return err
	}
	if err := p.Config.checkRetention(); err != nil {
		return err
	}
	pruner, err := workers.NewPruner(workers.PrunerConfig{
		Store: p.store, RequestRetention: p.Config.RequestRetention, TrainingRetention: p.Config.TrainingRetention, ReconcileAfter: p.Config.ReconcileAfter,
		Logger: p.log.With("role", "pruner"),
	})
	if err != nil {
		return err
	}
	folder, err := workers.NewFolder(workers.FolderConfig{Store: p.store, Logger: p.log.With("role", "folder")})
	if err != nil {
		return err
	}
	chainer, err := workers.NewAuditChainer(workers.AuditChainerConfig{Store: p.store, Logger: p.log.With("role", "audit-chainer")})
	if err != nil {
		return err
	}
	p.run(projector)
	p.run(pruner)
	p.run(folder)
	p.run(chainer)
	return nil
}

// serveHTTP serves the process's routes on Config.HTTPAddr, if set, until
// the process stops.
func (p *process) serveHTTP() error {
	if p.Config.Pprof {
		p.mux.Handle("/debug/pprof/", p.access.Require(http.HandlerFunc(pprof.Index)))
		p.mux.Handle("/debug/pprof/profile", p.access.Require(http.HandlerFunc(pprof.Profile)))
		p.mux.Handle("/debug/pprof/symbol", p.access.Require(http.HandlerFunc(pprof.Symbol)))
		p.mux.Handle("/debug/pprof/trace", p.access.Require(http.HandlerFunc(pprof.Trace)))
	}
	if p.Config.HTTPAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", p.Config.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for http: %w", err)
	}
	p.httpAddr = ln.Addr().String()
	limits := p.Config.httpLimits()
	ln = limits.listen(ln)
	srv := limits.server(p.mux, slog.NewLogLogger(p.log.Handler(), slog.LevelWarn))
	for _, f := range p.onShutdown {
		srv.RegisterOnShutdown(f)
	}
	p.g.Go(func() error {
		serve := func() error { return srv.Serve(ln) }
		if p.Config.TLSCert != "" {
			serve = func() error { return srv.ServeTLS(ln, p.Config.TLSCert, p.Config.TLSKey) }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	p.g.Go(func() error {
		<-p.ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	return nil
}

// startPostgres returns the database to use: the configured server, or the
// local cluster, started if need be. stop stops what it started.
func (m *Main) startPostgres(ctx context.Context, log *slog.Logger) (url string, stop func(), err error) {
	if m.Config.DatabaseURL != "" {
		return m.Config.DatabaseURL, func() {}, nil
	}
	cluster, err := localpg.Open(ctx, localpg.Config{DataDir: m.Config.DataDir, Logger: log})
	if err != nil {
		return "", nil, fmt.Errorf("start local postgres: %w", err)
	}
	stop = func() {}
	if cluster.Started() {
		stop = func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := cluster.Stop(stopCtx); err != nil {
				log.Error("stop local postgres", "err", err)
			}
		}
	}
	return cluster.URL(), stop, nil
}

// openStore connects to Postgres, migrates it, and returns the store; the
// caller closes its pool, m.pool.
func (m *Main) openStore(ctx context.Context, dbURL string, catalog *events.Catalog) (*postgres.Store, error) {
	pool, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	key, err := m.Config.citizenKey()
	if err != nil {
		pool.Close()
		return nil, err
	}
	m.pool = pool
	return postgres.NewStore(pool, key, postgres.ServiceLevels(serviceLevels(catalog))), nil
}

// bus is the process's NATS: the server it embeds, if any, with what keeps
// that server's users, and one connection per identity it uses.
type bus struct {
	server *natsbus.Server // nil when the server is another's
	users  *workers.Users  // nil when the server is another's
	conns  map[string]busConn
	order  []string // the identities connected, in order
}

type busConn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	pub *natsbus.Publisher
}

// js is identity's JetStream; the identity is one the bus connected.
func (b *bus) js(identity string) jetstream.JetStream { return b.conns[identity].js }

// pub is identity's publisher: what the identity publishes at the same
// time is stored in the same batches.
func (b *bus) pub(identity string) *natsbus.Publisher { return b.conns[identity].pub }

// connected reports whether every connection is up.
func (b *bus) connected() bool {
	for _, c := range b.conns {
		if !c.nc.IsConnected() {
			return false
		}
	}
	return true
}

// close flushes and closes the connections, then stops the server, if any.
func (b *bus) close() {
	for _, identity := range slices.Backward(b.order) {
		nc := b.conns[identity].nc
		// Flush the last acknowledgements before the connection goes.
		_ = nc.FlushTimeout(5 * time.Second)
		nc.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}

// openBus starts the embedded NATS server when there is no other to use,
// letting in spotflow's own identities and the agencies' credentials of
// store; connects as admin to provision the streams and consumers of
// catalog's agencies when the admin seed is at hand; and connects each role
// of the process as its own identity.
func (m *Main) openBus(ctx context.Context, catalog *events.Catalog, store *postgres.Store, log *slog.Logger) (*bus, error) {
	b := &bus{conns: make(map[string]busConn)}
	opened := false
	defer func() {
		if !opened {
			b.close()
		}
	}()
	m.natsURL = m.Config.NATSURL
	if m.natsURL == "" && m.Embed {
		own, err := m.Config.ownUsers(catalog)
		if err != nil {
			return nil, err
		}
		if b.server, err = m.embedNATS(own, log); err != nil {
			return nil, err
		}
		if b.users, err = newUsers(ctx, b.server, own, store, log); err != nil {
			return nil, err
		}
		m.natsURL = b.server.ClientURL()
		if port := b.server.LeafPort(); port > 0 {
			host, _, _ := net.SplitHostPort(m.Config.LeafListen)
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			m.leafURL = "nats-leaf://" + net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	m.natsURL = cmp.Or(m.natsURL, nats.DefaultURL)
	identities := slices.Clone(m.Roles)
	if _, err := m.Config.credential(natsbus.Admin); err == nil {
		identities = append([]string{natsbus.Admin}, identities...)
	}
	for _, identity := range identities {
		cred, err := m.Config.credential(identity)
		if err != nil {
			return nil, err
		}
		opts := m.Config.natsOptions(b.server != nil)
		if b.server != nil && m.Config.TLSCert == "" {
			// The embedded server's own roles talk to it in memory rather
			// than through loopback TCP: each message saves a write, a
			// read and a wake-up on either side. Each still signs in
			// with its own credential and gets its own permissions.
			opts = append(opts, nats.InProcessServer(b.server))
		}
		nc, js, err := natsbus.Connect(m.natsURL, "spotflow "+identity, cred, log, opts...)
		if err != nil {
			return nil, err
		}
		b.conns[identity], b.order = busConn{nc: nc, js: js, pub: natsbus.NewPublisher(js)}, append(b.order, identity)
	}
	if admin, ok := b.conns[natsbus.Admin]; ok {
		provisionCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := natsbus.Provision(provisionCtx, admin.js, m.topology(catalog)); err != nil {
			return nil, err
		}
	}
	m.js = b.conns[b.order[0]].js
	opened = true
	return b, nil
}

// topology is what provisioning creates for catalog.
func (m *Main) topology(catalog *events.Catalog) natsbus.Topology {
	return natsbus.Topology{
		Agencies: catalog.AgencyCodes(), Replicas: m.Config.Replicas, AckWait: m.Config.AckWait, MaxDeliveries: m.Config.MaxDeliveries,
		MaxAge: m.Config.StreamMaxAge,
	}
}

// newMetrics makes the process's Prometheus registry, served at /metrics:
// Go's and the process's collectors, the pipeline's metrics, and the
// consumers' state read from JetStream at each scrape.
func (m *Main) newMetrics(log *slog.Logger) (*workers.Metrics, error) {
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := workers.NewMetrics(m.registry)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.registry.MustRegister(workers.NewQueueCollector(func(ctx context.Context) ([]natsbus.ConsumerState, error) {
		return natsbus.ConsumerStates(ctx, m.js)
	}, log))
	return metrics, nil
}

// baseMux serves what every process serves: /metrics, /healthz and /readyz.
func (m *Main) baseMux(b *bus, log *slog.Logger, gate access.Policy) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", gate.Require(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		pingCtx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		switch {
		case !b.connected():
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
		case m.pool.Ping(pingCtx) != nil:
			http.Error(w, "postgres: not reachable", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	return mux
}

// announce tells people where the process listens.
func (m *Main) announce(stdout io.Writer, log *slog.Logger, dbURL string) {
	fmt.Fprintf(stdout, "spotflow running %v\n", m.Roles)
	if m.httpAddr != "" {
		scheme := "http"
		if m.Config.TLSCert != "" {
			scheme = "https"
		}
		fmt.Fprintf(stdout, "  HTTP      %s://%s  (desk API /v1, agency reports /v1/agency, Open311 /open311/v2, /dashboard, /open-data, /metrics, /healthz, /readyz)\n", scheme, m.httpAddr)
		fmt.Fprintf(stdout, "  Desk      %s://%s/desk/  (mediators sign in here: spotflow mediator create gives them a setup link)\n", scheme, m.httpAddr)
		fmt.Fprintf(stdout, "  Console   %s://%s/desk/ops/  (operators sign in here: spotflow operator create gives them a setup link)\n", scheme, m.httpAddr)
	}
	fmt.Fprintf(stdout, "  NATS      %s\n", m.natsURL)
	fmt.Fprintf(stdout, "  Postgres  %s\n", redactURL(dbURL))
	log.Info("spotflow running", "roles", m.Roles, "http", m.httpAddr, "nats", m.natsURL)
}

func (m *Main) embedNATS(users []natsbus.User, log *slog.Logger) (*natsbus.Server, error) {
	host, port, err := hostPort(m.Config.NATSListen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address: %w", err)
	}
	key, err := m.Config.natsStoreKey()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := m.Config.serverTLS()
	if err != nil {
		return nil, err
	}
	cfg := natsbus.ServerConfig{
		Users:    users,
		StoreDir: filepath.Join(m.Config.DataDir, "nats"),
		StoreKey: hex.EncodeToString(key),
		TLS:      tlsConfig,
		Host:     host,
		Port:     port,
		NoSync:   m.Config.NATSNoSync,
		Logger:   log.With("component", "nats-server"),
	}
	if m.Config.LeafListen != "" {
		if cfg.LeafHost, cfg.LeafPort, err = hostPort(m.Config.LeafListen); err != nil {
			return nil, fmt.Errorf("leaf listen address: %w", err)
		}
	}
	return natsbus.RunServer(cfg)
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

// firstOperator makes, when there is no operator yet, the account "admin"
// of the operator role, and returns the path where its password is set
// with its setup code, kept in the data directory (0600) until used; ""
// once the password is set.
func firstOperator(ctx context.Context, store *postgres.Store, dataDir string) (string, error) {
	path := filepath.Join(dataDir, "first-operator.setup")
	operators, err := store.Operators(ctx)
	if err != nil {
		return "", fmt.Errorf("first operator: %w", err)
	}
	if len(operators) == 0 {
		setup, err := store.CreateOperator(ctx, events.Operator{Username: "admin", Name: "Administrator", Role: events.RoleOperator, Language: "en"},
			events.By{Actor: "system:spotflow"})
		if err != nil {
			return "", fmt.Errorf("first operator: %w", err)
		}
		if err := os.WriteFile(path, []byte(setup.Code+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("first operator: %w", err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil // made elsewhere
	}
	code := strings.TrimSpace(string(data))
	if _, ok, err := store.OperatorSetupCodeValid(ctx, code); err != nil || !ok {
		_ = os.Remove(path) // used, or expired: spotflow operator reset gives another
		return "", err
	}
	return "/desk/ops/setup?code=" + url.QueryEscape(code), nil
}

// hostPort splits a listen address; port 0 becomes -1, nats-server's any
// free port.
func hostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}
