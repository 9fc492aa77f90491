package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a run of the suite. Zero values take the defaults
// documented on each field.
type Config struct {
	// Spotflow is the path of the spotflow binary to run. Required.
	Spotflow string
	// Requests is how many requests are submitted in all, shared among the
	// scenarios (the burst scenario makes at least 125, over a desk's burst of 50).
	// Default 2,100, or 210 when Reduced.
	Requests int
	// Desks is how many desks submit them. Default 10.
	Desks int
	// Reduced runs the short form: every fault once, outages of seconds.
	Reduced bool
	// Keep leaves the data directory in place after a passing run; after a
	// failing run it is always kept, for its logs.
	Keep bool
	// Seed seeds the random choices (victims, moments). Default: the clock.
	Seed int64
	// DataDir is where the run's data directory is created. Default: the
	// system's temporary directory.
	DataDir string
	// Scenarios, when not empty, runs only the scenarios of these names
	// (a run of some scenarios can pass but is not the suite's acceptance).
	Scenarios []string
	// LogLevel is the level the roles log at, to their files under the
	// data directory's logs/. Default warn.
	LogLevel string
	// Cluster runs spotflow on a three-node NATS cluster (nats-server
	// nodes with NATSConf, TLS, streams of three replicas) with the
	// cluster's faults: the stream leader killed, quorum lost, rolling
	// restarts in lame-duck mode.
	Cluster bool
	// NATSServer is the nats-server binary a cluster run starts. Default:
	// built from spotflow's go.mod into the data directory.
	NATSServer string
	// NATSConf is the nodes' configuration file. Default
	// deploy/nats/cluster.conf.
	NATSConf string
	// NationalDay, with Cluster, runs no fault but a country's day of
	// desks compressed (nationalDay), with three processes of every role,
	// and checks the dashboard's figures against Postgres's.
	NationalDay bool
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

// ScenarioResult is one row of the ledger.
type ScenarioResult struct {
	Name string
	// Fault says what was injected.
	Fault string
	// Requests that got 202.
	Requests int
	// Lost requests: not completed or rejected when the deadline passed, or
	// with a work item its agency never applied.
	Lost int
	// AppliedTwice counts work items applied more than once, repeated
	// timeline entries and keys answered with two request IDs.
	AppliedTwice int
	// DeadLettered counts dead letters of the scenario's requests, plus, in
	// the poison scenario, those of the poison messages.
	DeadLettered int
	// Drained reports whether the backlog drained before the deadline, and
	// Drain how long after the fault and the load ended it did.
	Drained bool
	Drain   time.Duration
	// Notes say what happened, for people; Problems are failures.
	Notes    []string
	Problems []string

	poisonExpected int
	poisonDead     int
	requestDead    int
	unavailable    int // 503 answers the load got
}

// Report is the outcome of a run.
type Report struct {
	Scenarios []ScenarioResult
	// Problems are failures that belong to no one scenario.
	Problems []string
	Notes    []string
	// DataDir holds the run's logs, journals and stores, if kept.
	DataDir  string
	Logs     []string
	Seed     int64
	Duration time.Duration
	// Complete reports whether every scenario ran.
	Complete bool
}

// Failures lists why the run fails; none when it passes.
func (r Report) Failures() []string {
	var out []string
	if !r.Complete {
		out = append(out, "not every scenario ran")
	}
	for _, s := range r.Scenarios {
		if s.Lost > 0 {
			out = append(out, fmt.Sprintf("%s: %d requests lost", s.Name, s.Lost))
		}
		if s.AppliedTwice > 0 {
			out = append(out, fmt.Sprintf("%s: %d applied twice", s.Name, s.AppliedTwice))
		}
		if s.requestDead > 0 {
			out = append(out, fmt.Sprintf("%s: %d dead letters of good requests", s.Name, s.requestDead))
		}
		if s.Name == "quorum-loss" && s.unavailable == 0 {
			out = append(out, "quorum-loss: intake never answered 503 while the streams could store nothing")
		}
		if s.poisonDead != s.poisonExpected {
			out = append(out, fmt.Sprintf("%s: %d of %d poison messages dead-lettered", s.Name, s.poisonDead, s.poisonExpected))
		}
		switch {
		case !s.Drained:
			out = append(out, fmt.Sprintf("%s: backlog not drained", s.Name))
		case s.Drain > maxDrain:
			out = append(out, fmt.Sprintf("%s: backlog took %v to drain, more than %v", s.Name, s.Drain.Round(100*time.Millisecond), maxDrain))
		}
		for _, p := range s.Problems {
			out = append(out, s.Name+": "+p)
		}
	}
	return append(out, r.Problems...)
}

// Pass reports whether the run met every criterion.
func (r Report) Pass() bool { return len(r.Failures()) == 0 }

// Table renders the ledger, the notes and the verdict.
func (r Report) Table() string {
	var b strings.Builder
	header := []string{"scenario", "requests", "lost", "applied twice", "dead-lettered", "time to drain"}
	rows := [][]string{}
	var total ScenarioResult
	for _, s := range r.Scenarios {
		drain := "not drained"
		if s.Drained {
			drain = fmt.Sprintf("%.1fs", s.Drain.Seconds())
		}
		rows = append(rows, []string{s.Name, fmt.Sprint(s.Requests), fmt.Sprint(s.Lost), fmt.Sprint(s.AppliedTwice), fmt.Sprint(s.DeadLettered), drain})
		total.Requests += s.Requests
		total.Lost += s.Lost
		total.AppliedTwice += s.AppliedTwice
		total.DeadLettered += s.DeadLettered
	}
	rows = append(rows, []string{"total", fmt.Sprint(total.Requests), fmt.Sprint(total.Lost), fmt.Sprint(total.AppliedTwice), fmt.Sprint(total.DeadLettered), ""})
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(cells []string) {
		for i, c := range cells {
			if i == 0 {
				fmt.Fprintf(&b, "| %-*s ", widths[i], c)
			} else {
				fmt.Fprintf(&b, "| %*s ", widths[i], c)
			}
		}
		b.WriteString("|\n")
	}
	b.WriteString("\n")
	line(header)
	for i, w := range widths {
		if i == 0 {
			fmt.Fprintf(&b, "|%s", strings.Repeat("-", w+2))
		} else {
			fmt.Fprintf(&b, "|%s:", strings.Repeat("-", w+1))
		}
	}
	b.WriteString("|\n")
	for _, row := range rows {
		line(row)
	}
	b.WriteString("\n")
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "%s: %s\n", s.Name, s.Fault)
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "    %s\n", n)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
	fmt.Fprintf(&b, "seed %d, %v in all\n", r.Seed, r.Duration.Round(time.Second))
	if failures := r.Failures(); len(failures) > 0 {
		b.WriteString("\nFAIL\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
		if r.DataDir != "" {
			fmt.Fprintf(&b, "data kept in %s; process logs:\n", r.DataDir)
			for _, l := range r.Logs {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
	} else {
		b.WriteString("\nPASS: 0 lost, 0 applied twice, dead letters exactly the poison set, every backlog drained within 60s\n")
		if r.DataDir != "" {
			fmt.Fprintf(&b, "data kept in %s\n", r.DataDir)
		}
	}
	return b.String()
}

// plan is how hard and how long each fault is.
type plan struct {
	kills        int
	killEvery    time.Duration    // the load's window holds one kill per this much
	killPause    [2]time.Duration // between a kill and the restart
	natsRestarts int
	natsEvery    time.Duration
	natsPause    [2]time.Duration
	pgDown       time.Duration
	agencyDown   time.Duration
	slow         time.Duration // how long the slow agency stays slow
	slowLatency  time.Duration
	lead, tail   time.Duration // load before a fault starts and after it ends
	poison       int
	poisonWindow time.Duration
	dupWindow    time.Duration
	// On a NATS cluster: the stream leader killed leaderKills times, one
	// every leaderEvery, each restarted after leaderDown; two nodes down
	// for quorumDown; lameRounds rounds of restarting every node in turn
	// in lame-duck mode.
	leaderKills int
	leaderEvery time.Duration
	leaderDown  [2]time.Duration
	quorumDown  time.Duration
	lameRounds  int
}

func planFor(reduced bool) plan {
	if reduced {
		return plan{
			kills: 2, killEvery: 2500 * time.Millisecond,
			killPause:    [2]time.Duration{200 * time.Millisecond, 600 * time.Millisecond},
			natsRestarts: 1, natsEvery: 3 * time.Second,
			natsPause: [2]time.Duration{500 * time.Millisecond, time.Second},
			pgDown:    5 * time.Second, agencyDown: 5 * time.Second,
			slow: 5 * time.Second, slowLatency: 8 * time.Second,
			lead: time.Second, tail: time.Second,
			poison: 50, poisonWindow: 3 * time.Second, dupWindow: 3 * time.Second,
			leaderKills: 2, leaderEvery: 8 * time.Second, leaderDown: [2]time.Duration{time.Second, 2 * time.Second},
			quorumDown: 8 * time.Second, lameRounds: 1,
		}
	}
	return plan{
		kills: 6, killEvery: 6 * time.Second,
		killPause:    [2]time.Duration{500 * time.Millisecond, 1500 * time.Millisecond},
		natsRestarts: 2, natsEvery: 8 * time.Second,
		natsPause: [2]time.Duration{time.Second, 2 * time.Second},
		pgDown:    30 * time.Second, agencyDown: 60 * time.Second,
		slow: 20 * time.Second, slowLatency: 8 * time.Second,
		lead: 3 * time.Second, tail: 3 * time.Second,
		poison: 50, poisonWindow: 12 * time.Second, dupWindow: 12 * time.Second,
		leaderKills: 8, leaderEvery: 15 * time.Second, leaderDown: [2]time.Duration{2 * time.Second, 5 * time.Second},
		quorumDown: 30 * time.Second, lameRounds: 3,
	}
}

// killSlot is the part of the kill-workers window that holds one kill and
// its restart.
func (p plan) killSlot() time.Duration { return max(p.killEvery, p.killPause[1]+2*time.Second) }

// natsSlot is the part of the nats-restart window that holds one restart.
func (p plan) natsSlot() time.Duration { return max(p.natsEvery, p.natsPause[1]+2*time.Second) }

// The agencies hit by the agency faults. Tax also takes a share of every
// change of address, as does sns.
const (
	transientAgency = "tax"
	slowAgency      = "sns"
)

// harness is one run: the cluster, the desks' load and the ledger.
type harness struct {
	cfg     Config
	plan    plan
	log     io.Writer
	rng     *rand.Rand
	rngMu   sync.Mutex
	cluster *cluster
	desks   []desk
	loader  *loader
	ledger  *ledger
	run     string // tells this run's message IDs apart

	poison map[streamSeq]bool
	all    []accepted
}

// scenario is one fault under load.
type scenario struct {
	name string
	// agency is the agency the fault hits, if one.
	agency string
	// least is the fewest submissions the scenario makes, whatever its
	// share of the run's.
	least int
	// window is how long the load of the scenario is spread over.
	window func(p plan) time.Duration
	// inject runs alongside the load, returns once the fault has ended,
	// and says what it did.
	inject func(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error)
	// submit replaces the plain load (the duplicates and burst scenarios).
	submit func(ctx context.Context, h *harness, subs []submission, res *ScenarioResult) ([]accepted, time.Time)
	// plan, when set, makes the scenario's submissions, each with its
	// moment, instead of n spread evenly.
	plan func(h *harness) []submission
}

func scenarios() []scenario {
	return []scenario{
		{name: "kill-workers", window: func(p plan) time.Duration { return time.Duration(p.kills) * p.killSlot() }, inject: killWorkers},
		{name: "nats-restart", window: func(p plan) time.Duration { return time.Duration(p.natsRestarts) * p.natsSlot() }, inject: restartNATS},
		{name: "postgres-down", window: func(p plan) time.Duration { return p.lead + p.pgDown + p.tail }, inject: stopPostgres},
		{name: "agency-transient", agency: transientAgency, window: func(p plan) time.Duration { return p.lead + p.agencyDown + p.tail }, inject: agencyDown},
		{name: "agency-slow", agency: slowAgency, window: func(p plan) time.Duration { return p.slow }, inject: agencySlow},
		{name: "poison", window: func(p plan) time.Duration { return p.poisonWindow }, inject: publishPoison},
		{name: "duplicates", window: func(p plan) time.Duration { return p.dupWindow }, submit: submitDuplicates},
		{name: "burst", least: 2*deskBurst + deskBurst/2, window: func(p plan) time.Duration { return 0 }, submit: submitBurst},
	}
}

// Run starts spotflow's processes under a new data directory, runs every
// scenario in turn, checks the ledger, and stops everything it started,
// whether it returns normally, with an error, by a panic or because ctx
// ended. The error is for a run that could not be carried out; a run that
// was carried out and failed its criteria returns a Report whose Pass is
// false.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	started := time.Now()
	if cfg.Spotflow == "" {
		return rep, errors.New("chaos: Config.Spotflow is required")
	}
	cfg.Desks = cmp.Or(cfg.Desks, 10)
	cfg.LogLevel = cmp.Or(cfg.LogLevel, "warn")
	if cfg.Requests == 0 {
		cfg.Requests = 2100
		if cfg.Reduced {
			cfg.Requests = 210
		}
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	sc := scenarios()
	if cfg.NationalDay && !cfg.Cluster {
		return rep, errors.New("chaos: a national day runs on the cluster: add --cluster")
	}
	if cfg.NationalDay {
		sc = []scenario{{name: "national-day", window: func(plan) time.Duration { return nationalDay.Length }, inject: quietDay,
			plan: dayPlan}}
		cfg.Desks, cfg.Requests = nationalDay.Desks, nationalDay.Requests
	}
	if cfg.Cluster {
		if !cfg.NationalDay {
			sc = clusterScenarios()
		}
		cfg.NATSConf = cmp.Or(cfg.NATSConf, filepath.Join("deploy", "nats", "cluster.conf"))
		if _, err := os.Stat(cfg.NATSConf); err != nil {
			return rep, fmt.Errorf("chaos: the nodes' configuration: %w (run from the repository's root, or give --nats-conf)", err)
		}
	}
	if len(cfg.Scenarios) > 0 {
		var chosen []scenario
		for _, s := range sc {
			if slices.Contains(cfg.Scenarios, s.name) {
				chosen = append(chosen, s)
			}
		}
		if len(chosen) != len(cfg.Scenarios) {
			return rep, fmt.Errorf("chaos: unknown scenario among %q", cfg.Scenarios)
		}
		sc = chosen
	}
	if cfg.Requests < len(sc) || cfg.Desks < 1 {
		return rep, fmt.Errorf("chaos: need at least %d requests and one desk", len(sc))
	}
	rep.Seed = cfg.Seed
	defer func() { rep.Duration = time.Since(started) }()

	bin, err := filepath.Abs(cfg.Spotflow)
	if err != nil {
		return rep, err
	}
	dir, err := os.MkdirTemp(cfg.DataDir, "spotflow-chaos-")
	if err != nil {
		return rep, fmt.Errorf("chaos: %w", err)
	}
	// The postgres OS user, which runs the cluster when we are root, must
	// reach the data directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return rep, fmt.Errorf("chaos: %w", err)
	}
	rep.DataDir = dir
	fmt.Fprintf(cfg.Log, "chaos: data directory %s, seed %d, %d requests from %d desks\n", dir, cfg.Seed, cfg.Requests, cfg.Desks)

	h := &harness{
		cfg: cfg, plan: planFor(cfg.Reduced), log: cfg.Log,
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x9e3779b97f4a7c15)),
		poison: make(map[streamSeq]bool),
		run:    fmt.Sprintf("%x", uint64(cfg.Seed)),
	}
	var c *cluster
	defer func() {
		if c != nil {
			fmt.Fprintf(cfg.Log, "chaos: stopping every process\n")
			c.close()
			rep.Problems = append(rep.Problems, c.sup.Unexpected()...)
			rep.Logs = c.sup.LogPaths()
		}
		if h.ledger != nil {
			h.ledger.close()
		}
		if r := recover(); r != nil {
			err = fmt.Errorf("chaos: panic: %v", r)
		}
		if err == nil && rep.Pass() && !cfg.Keep {
			if reloc := c.relocatedPostgres(); reloc != "" {
				_ = os.RemoveAll(reloc)
			}
			_ = os.RemoveAll(dir)
			rep.DataDir = ""
		}
	}()

	var setup natsSetup
	if cfg.NationalDay {
		setup.PerRole = 3
	}
	if cfg.Cluster {
		setup.Conf = cfg.NATSConf
		if setup.Server = cfg.NATSServer; setup.Server == "" {
			setup.Server = filepath.Join(dir, "nats-server")
			fmt.Fprintf(cfg.Log, "chaos: building nats-server\n")
			if err := buildNATSServer(ctx, setup.Server); err != nil {
				return rep, fmt.Errorf("chaos: %w", err)
			}
		}
	}
	c, err = startCluster(ctx, bin, dir, cfg.LogLevel, setup, cfg.Log)
	if err != nil {
		return rep, fmt.Errorf("chaos: start spotflow: %w", err)
	}
	h.cluster = c
	if cfg.NationalDay {
		fmt.Fprintf(cfg.Log, "chaos: registering %d desks in %d municipalities\n", nationalDay.Desks, nationalDay.Municipalities)
		h.desks, err = createDesksFast(ctx, c.pgURL, nationalDay)
	} else {
		h.desks, err = c.createDesks(ctx, cfg.Desks)
	}
	if err != nil {
		return rep, fmt.Errorf("chaos: %w", err)
	}
	h.loader = newLoader(c.intakeURLs, h.desks)
	if h.ledger, err = newLedger(ctx, c.pgURL, filepath.Join(dir, "agencies")); err != nil {
		return rep, fmt.Errorf("chaos: %w", err)
	}

	first := 0
	keys := 0
	for i, s := range sc {
		n := cfg.Requests / len(sc)
		if i < cfg.Requests%len(sc) {
			n++
		}
		n = max(n, s.least)
		subs := makeSubmissions(s.name, first, n, cfg.Desks)
		if s.plan != nil {
			subs = s.plan(h)
		}
		first += n
		res, err := h.runScenario(ctx, s, subs)
		rep.Scenarios = append(rep.Scenarios, res)
		if err != nil {
			return rep, err
		}
		keys += res.Requests
	}
	rep.Complete = true

	problems, notes, err := h.ledger.whole(ctx, h.all, keys, h.poison)
	if err != nil {
		return rep, err
	}
	if cfg.Cluster {
		same, err := c.sameStreams(ctx, maxDrain)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			notes = append(notes, same)
		}
	}
	if cfg.NationalDay {
		// The roll-ups are folded every two seconds.
		var line string
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; {
			if line, err = c.figuresAgree(ctx, c.pgURL); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			notes = append(notes, line)
		}
	}
	rep.Problems = append(rep.Problems, problems...)
	rep.Notes = append(rep.Notes, notes...)
	if applied, dups, err := h.ledger.journalTotals(); err == nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("agencies applied %d work items in all and recognised %d repeated deliveries", applied, dups))
	}
	return rep, nil
}

// runScenario runs one scenario: its load and its fault side by side, then
// the ledger's wait for the backlog to drain.
func (h *harness) runScenario(ctx context.Context, s scenario, subs []submission) (ScenarioResult, error) {
	res := ScenarioResult{Name: s.name}
	window := s.window(h.plan)
	fmt.Fprintf(h.log, "chaos: %s: %d submissions over %v\n", s.name, len(subs), window)
	began := time.Now()
	dupsBefore := h.agencyDuplicates(ctx)
	var reqs []accepted
	var faultEnd time.Time
	var faultErr error
	if s.submit != nil {
		reqs, faultEnd = s.submit(ctx, h, subs, &res)
	} else {
		outs := make(chan []outcome, 1)
		go func() { outs <- h.loader.run(ctx, subs, window) }()
		faultEnd, faultErr = s.inject(ctx, h, &res)
		done := <-outs
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		reqs = h.collect(subs, done, &res)
	}
	if faultErr != nil {
		res.Problems = append(res.Problems, "fault injection: "+faultErr.Error())
		if faultEnd.IsZero() {
			faultEnd = time.Now()
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	loadEnd := time.Now()
	res.Requests = len(reqs)
	h.all = append(h.all, reqs...)
	if s.agency != "" {
		n := 0
		for _, r := range reqs {
			if svc, ok := h.ledger.catalog.Service(r.Service); ok && slices.Contains(svc.Agencies, s.agency) {
				n++
			}
		}
		res.Notes = append(res.Notes, fmt.Sprintf("%d of the %d requests have a work item for %s", n, len(reqs), s.agency))
	}

	var poison map[streamSeq]bool
	if s.name == "poison" {
		poison = h.poison
		res.poisonExpected = len(h.poison) // the poison messages and the forgeries
	}
	deadline := faultEnd.Add(maxDrain + drainMargin)
	if d := loadEnd.Add(drainMargin); d.After(deadline) {
		deadline = d
	}
	lk, settledAt, err := h.ledger.drain(ctx, reqs, poison, deadline)
	if err != nil {
		return res, fmt.Errorf("chaos: %s: %w", s.name, err)
	}
	res.Lost = len(lk.Lost)
	res.AppliedTwice += len(lk.Twice)
	res.requestDead = len(lk.DeadLettered)
	res.poisonDead = lk.Poison
	res.DeadLettered = len(lk.DeadLettered) + lk.Poison
	if !settledAt.IsZero() {
		res.Drained = true
		// From when the fault and the load had both ended: nothing can
		// drain while requests still arrive.
		ended := faultEnd
		if loadEnd.After(ended) {
			ended = loadEnd
		}
		res.Drain = max(settledAt.Sub(ended), 0)
	} else {
		res.Problems = append(res.Problems, fmt.Sprintf("not drained %v after the fault ended: %s", time.Since(faultEnd).Round(time.Second), lk.Pending))
	}
	res.Problems = append(res.Problems, limit(lk.Lost, 10)...)
	res.Problems = append(res.Problems, limit(lk.Twice, 10)...)
	dead := make([]string, len(lk.DeadLettered))
	for i, d := range lk.DeadLettered {
		dead[i] = d.String()
	}
	res.Problems = append(res.Problems, limit(dead, 10)...)
	res.Problems = append(res.Problems, limit(lk.Problems, 10)...)
	if after := h.agencyDuplicates(ctx); after >= 0 && dupsBefore >= 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("agencies recognised %d repeated deliveries of work items they had applied", after-dupsBefore))
	}
	fmt.Fprintf(h.log, "chaos: %s: %d accepted, %d lost, %d applied twice, %d dead-lettered, drained %v after the fault and the load ended (%v in all)\n",
		s.name, res.Requests, res.Lost, res.AppliedTwice, res.DeadLettered, res.Drain.Round(100*time.Millisecond), time.Since(began).Round(time.Second))
	return res, nil
}

// collect turns outcomes into accepted requests, noting retries and
// recording every submission that got no 202 as a problem.
func (h *harness) collect(subs []submission, outs []outcome, res *ScenarioResult) []accepted {
	var reqs []accepted
	retried, attempts, unavailable := 0, 0, 0
	for i, o := range outs {
		attempts += o.Attempts
		unavailable += o.Unavailable
		if o.Attempts > 1 {
			retried++
		}
		if o.Status == 202 && o.ID != "" {
			reqs = append(reqs, accepted{ID: o.ID, Key: subs[i].Key, Service: subs[i].Service})
			continue
		}
		res.Problems = append(res.Problems, fmt.Sprintf("submission %s got no 202: HTTP %d %s %v", subs[i].Key, o.Status, o.Code, o.Err))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d of %d submissions needed retries (%d attempts in all, %d answered 503)", retried, len(subs), attempts, unavailable))
	res.unavailable = unavailable
	return reqs
}

// agencyDuplicates sums the agencies' counts of repeated deliveries, or -1.
func (h *harness) agencyDuplicates(ctx context.Context) int {
	n := 0
	for _, a := range h.ledger.catalog.AgencyCodes() {
		st, err := h.cluster.agencyState(ctx, a)
		if err != nil {
			return -1
		}
		n += st.Duplicates
	}
	return n
}

// between returns a random duration in [r[0], r[1]].
func (h *harness) between(r [2]time.Duration) time.Duration {
	h.rngMu.Lock()
	defer h.rngMu.Unlock()
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(h.rng.Int64N(int64(r[1]-r[0])))
}

func (h *harness) intN(n int) int {
	h.rngMu.Lock()
	defer h.rngMu.Unlock()
	return h.rng.IntN(n)
}

// limit returns the first n lines of s, and a line saying how many more
// there are.
func limit(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("… and %d more like these", len(s)-n))
}
