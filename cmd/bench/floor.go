package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// The floor is what the parts spotflow is built on cost per request at a
// fixed rate (after a warm-up at that rate, left out of the figures), with
// none of spotflow's own work (no HTTP, no validation, no projection
// logic), on an embedded server with the same store encryption and
// durability as the all-in-one's:
//   - one message: a message of a request's size published to a stream
//     (waiting for JetStream's acknowledgement), delivered to a durable
//     consumer and acknowledged. Every request costs at least this.
//   - the request's chain, as spotflow's design lays it out: a Postgres
//     commit claiming the request's key, then its message stored in the
//     events stream; a router that reads it and stores a routed event and
//     a work item; an agency that takes the work item from its work queue
//     and stores its answer; and a projector that writes the request's
//     events to Postgres in one commit, lingering 10 ms for them as
//     spotflow's does. Streams and consumers are provisioned as
//     spotflow's.
type floorConfig struct {
	StoreDir    string
	NoSync      bool
	DatabaseURL string
	Rate        int
	Duration    time.Duration
	// Drain bounds the wait for the last requests to complete.
	Drain time.Duration
}

// floorResult is what one floor run cost per completed request.
type floorResult struct {
	What      string // "one message" or "the request's chain"
	Rate      int
	Completed int64
	// ProcessCPU is this process's CPU (the embedded server and its
	// clients) per completed request, PostgresCPU that of this machine's
	// postgres processes, in milliseconds.
	ProcessCPU, PostgresCPU float64
	// P50Ms and P99Ms are how long requests took, from the submission's
	// start until the consumer got the message (one message) or the
	// projector committed the answer (the chain).
	P50Ms, P99Ms float64
}

// latencies collects how long requests took, from their submission's start.
type latencies struct {
	sent sync.Map // request ID → time.Time
	mu   sync.Mutex
	took []time.Duration
}

// reset forgets what was collected.
func (l *latencies) reset() {
	l.sent.Clear()
	l.mu.Lock()
	l.took = nil
	l.mu.Unlock()
}

func (l *latencies) start(id string) { l.sent.Store(id, time.Now()) }

func (l *latencies) done(id string) {
	if at, ok := l.sent.LoadAndDelete(id); ok {
		took := time.Since(at.(time.Time))
		l.mu.Lock()
		l.took = append(l.took, took)
		l.mu.Unlock()
	}
}

// quantileMs is the q quantile of what was collected, in milliseconds.
func (l *latencies) quantileMs(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.took) == 0 {
		return 0
	}
	slices.Sort(l.took)
	return float64(l.took[min(int(q*float64(len(l.took))), len(l.took)-1)]) / float64(time.Millisecond)
}

const (
	floorMessage  = "one message"
	floorChain    = "the request's chain"
	floorAgency   = "floor"
	floorRoles    = 4 // connections: intake, router, agency, projector
	floorLingerMs = 10
	floorWarmUp   = 2 * time.Second
)

// measureFloor measures both floors at cfg.Rate, each on a store of its own.
func measureFloor(ctx context.Context, cfg floorConfig) ([]floorResult, error) {
	var out []floorResult
	for _, what := range []string{floorMessage, floorChain} {
		c := cfg
		c.StoreDir = filepath.Join(cfg.StoreDir, strings.ReplaceAll(what, " ", "-")+"-"+strconv.Itoa(cfg.Rate))
		r, err := measureFloorOf(ctx, what, c)
		if err != nil {
			return nil, fmt.Errorf("floor, %s at %d/s: %w", what, cfg.Rate, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func measureFloorOf(ctx context.Context, what string, cfg floorConfig) (floorResult, error) {
	res := floorResult{What: what, Rate: cfg.Rate}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	srv, err := natsbus.RunServer(natsbus.ServerConfig{Anonymous: true, StoreDir: cfg.StoreDir, StoreKey: hex.EncodeToString(key),
		Port: -1, NoSync: cfg.NoSync, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	defer srv.Shutdown()
	js := make([]jetstream.JetStream, floorRoles)
	for i := range js {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			return res, err
		}
		defer nc.Close()
		if js[i], err = jetstream.New(nc); err != nil {
			return res, err
		}
	}
	if err := natsbus.Provision(ctx, js[0], natsbus.Topology{Agencies: []string{floorAgency}}); err != nil {
		return res, err
	}
	var pool *pgxpool.Pool
	if what == floorChain {
		if pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
			return res, err
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, `
			DROP TABLE IF EXISTS bench_floor_keys, bench_floor_events;
			CREATE TABLE bench_floor_keys (id text PRIMARY KEY);
			CREATE TABLE bench_floor_events (id text PRIMARY KEY, request_id text NOT NULL, body bytea NOT NULL)`); err != nil {
			return res, fmt.Errorf("tables: %w", err)
		}
		defer pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_floor_keys, bench_floor_events`)
	}

	runCtx, stop := context.WithCancel(ctx)
	var roles sync.WaitGroup
	defer roles.Wait()
	defer stop()
	var completed atomic.Int64
	var took latencies
	var submit func(ctx context.Context, id string) error
	if what == floorMessage {
		submit, err = floorMessageRoles(runCtx, &roles, js, &completed, &took)
	} else {
		submit, err = floorChainRoles(runCtx, &roles, js, pool, &completed, &took)
	}
	if err != nil {
		return res, err
	}

	// A warm-up at the rate, left out of the figures: the first messages
	// of a new store wait for its first blocks and consumers' first pulls.
	warm, err := paced(runCtx, cfg.Rate, floorWarmUp, func(ctx context.Context, id string) error { return submit(ctx, "warm-"+id) })
	if err != nil {
		return res, err
	}
	if !waitFor(&completed, warm, cfg.Drain) {
		return res, fmt.Errorf("%d of %d warm-up requests completed within %s", completed.Load(), warm, cfg.Drain)
	}
	completed.Store(0)
	took.reset()

	before, err := readCPU(os.Getpid())
	if err != nil {
		return res, err
	}
	submitted, err := paced(runCtx, cfg.Rate, cfg.Duration, submit)
	if err != nil {
		return res, err
	}
	waitFor(&completed, submitted, cfg.Drain)
	own, postgres, err := before.since(os.Getpid())
	if err != nil {
		return res, err
	}
	if res.Completed = completed.Load(); res.Completed < submitted {
		return res, fmt.Errorf("%d of %d requests completed within %s", res.Completed, submitted, cfg.Drain)
	}
	res.ProcessCPU = own * 1000 / float64(res.Completed)
	res.PostgresCPU = postgres * 1000 / float64(res.Completed)
	res.P50Ms, res.P99Ms = took.quantileMs(0.50), took.quantileMs(0.99)
	return res, nil
}

// waitFor waits up to d for n to reach want, and says whether it did.
func waitFor(n *atomic.Int64, want int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for n.Load() < want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// paced calls submit rate times a second for d, each call on its own
// goroutine, waits for them all and returns how many it made, or the first
// error. A tick that comes late makes up for the calls it missed, so the
// rate holds on a busy machine.
func paced(ctx context.Context, rate int, d time.Duration, submit func(ctx context.Context, id string) error) (int64, error) {
	var n int64
	var calls sync.WaitGroup
	var failed atomic.Pointer[error]
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	end := time.After(d)
	for {
		select {
		case now := <-tick.C:
			for due := int64(now.Sub(start).Seconds() * float64(rate)); n < due; {
				n++
				id := "r" + strconv.FormatInt(n, 10)
				calls.Go(func() {
					if err := submit(ctx, id); err != nil {
						failed.CompareAndSwap(nil, &err)
					}
				})
			}
		case <-end:
			calls.Wait()
			if err := failed.Load(); err != nil {
				return n, fmt.Errorf("submit: %w", *err)
			}
			return n, nil
		case <-ctx.Done():
			calls.Wait()
			return n, ctx.Err()
		}
	}
}

// floorMessageRoles starts a consumer that acknowledges every request's
// message, and returns what publishes one.
func floorMessageRoles(ctx context.Context, roles *sync.WaitGroup, js []jetstream.JetStream, completed *atomic.Int64, took *latencies) (func(context.Context, string) error, error) {
	router, err := js[1].Consumer(ctx, events.EventsStream, events.RouterConsumer)
	if err != nil {
		return nil, err
	}
	roles.Go(func() {
		_ = natsbus.Consume(ctx, router, natsbus.Settings{Logger: slog.New(slog.DiscardHandler)}, func(_ context.Context, m jetstream.Msg) error {
			took.done(m.Headers().Get(jetstream.MsgIDHeader))
			completed.Add(1)
			return nil
		})
	})
	pub, body := natsbus.NewPublisher(js[0]), floorBody()
	return func(ctx context.Context, id string) error {
		took.start(id)
		return pub.Publish(ctx, natsbus.Outgoing{Subject: events.RequestSubject("m", "d"), ID: id, Value: natsbus.Raw(body)})
	}, nil
}

// floorChainRoles starts the router, the agency and the projector, each on
// a connection of its own, and returns what submits a request.
func floorChainRoles(ctx context.Context, roles *sync.WaitGroup, js []jetstream.JetStream, pool *pgxpool.Pool, completed *atomic.Int64, took *latencies) (func(context.Context, string) error, error) {
	router, err1 := js[1].Consumer(ctx, events.EventsStream, events.RouterConsumer)
	agency, err2 := js[2].Consumer(ctx, events.WorkStream, events.AgencyConsumer(floorAgency))
	projector, err3 := js[3].Consumer(ctx, events.EventsStream, events.ProjectorConsumer)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	routerPub, agencyPub := natsbus.NewPublisher(js[1]), natsbus.NewPublisher(js[2])
	// Concurrency as spotflow's router and dispatcher have it; the router
	// stores a batch's routed events before its work items, as spotflow's
	// does, so that an answer never comes before its work item is known.
	roles.Go(func() {
		_ = natsbus.ConsumeBatches(ctx, router, natsbus.Settings{Concurrency: 16, Logger: quiet}, func(ctx context.Context, msgs []jetstream.Msg) []error {
			routed, work := make([]natsbus.Outgoing, len(msgs)), make([]natsbus.Outgoing, len(msgs))
			for i, m := range msgs {
				id := m.Headers().Get(jetstream.MsgIDHeader)
				routed[i] = natsbus.Outgoing{Subject: events.StatusSubject(events.SourceRouter), ID: id + ".routed", Value: natsbus.Raw(id)}
				work[i] = natsbus.Outgoing{Subject: events.WorkSubject(floorAgency), ID: id + ".work", Value: natsbus.Raw(m.Data())}
			}
			err := routerPub.PublishAll(ctx, routed)
			if err == nil {
				err = routerPub.PublishAll(ctx, work)
			}
			return sameError(len(msgs), err)
		})
	})
	roles.Go(func() {
		_ = natsbus.Consume(ctx, agency, natsbus.Settings{Concurrency: 256, Logger: quiet}, func(ctx context.Context, m jetstream.Msg) error {
			id := strings.TrimSuffix(m.Headers().Get(jetstream.MsgIDHeader), ".work")
			return agencyPub.Publish(ctx, natsbus.Outgoing{Subject: events.StatusSubject(floorAgency), ID: id + ".done", Value: natsbus.Raw(id)})
		})
	})
	requestOf := func(m jetstream.Msg) string {
		id, _, _ := strings.Cut(m.Headers().Get(jetstream.MsgIDHeader), ".")
		return id
	}
	settings := natsbus.Settings{Concurrency: 2, Linger: floorLingerMs * time.Millisecond, Key: requestOf, Logger: quiet}
	roles.Go(func() {
		_ = natsbus.ConsumeBatches(ctx, projector, settings, func(ctx context.Context, msgs []jetstream.Msg) []error {
			ids, reqs, bodies := make([]string, len(msgs)), make([]string, len(msgs)), make([][]byte, len(msgs))
			var answered []string
			for i, m := range msgs {
				ids[i], reqs[i], bodies[i] = m.Headers().Get(jetstream.MsgIDHeader), requestOf(m), m.Data()
				if strings.HasSuffix(ids[i], ".done") {
					answered = append(answered, reqs[i])
				}
			}
			_, err := pool.Exec(ctx, `
				INSERT INTO bench_floor_events (id, request_id, body)
				SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) ON CONFLICT (id) DO NOTHING`, ids, reqs, bodies)
			if err == nil {
				for _, id := range answered {
					took.done(id)
				}
				completed.Add(int64(len(answered)))
			}
			return sameError(len(msgs), err)
		})
	})
	pub, body := natsbus.NewPublisher(js[0]), floorBody()
	return func(ctx context.Context, id string) error {
		took.start(id)
		if _, err := pool.Exec(ctx, `INSERT INTO bench_floor_keys (id) VALUES ($1)`, id); err != nil {
			return err
		}
		return pub.Publish(ctx, natsbus.Outgoing{Subject: events.RequestSubject("m", "d"), ID: id, Value: natsbus.Raw(body)})
	}, nil
}

// floorBody is a request's message: random bytes of its usual size.
func floorBody() []byte {
	b := make([]byte, requestMessageSize)
	_, _ = rand.Read(b)
	return b
}

func sameError(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
