package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// RouterConfig configures a Router.
type RouterConfig struct {
	// JetStream the router consumes from and publishes to. Required.
	JetStream jetstream.JetStream
	// Catalog resolves a service's agencies, as it stands when each request
	// is routed. Required.
	Catalog Catalogs
	// Concurrency is how many requests one process routes at once. Many:
	// their publishes are gathered into shared atomic batches, so each
	// waits on the disk far less than on its own. Default 1024.
	Concurrency int
	// DeadLetters records requests that cannot be routed. Optional: without
	// it they are only marked failed.
	DeadLetters DeadLetters
	// Publisher stores what the router publishes; roles of one process that
	// share one have their messages stored in the same batches. Default: a
	// publisher of its own.
	Publisher *natsbus.Publisher
	// Metrics counts routed requests and the consumer's outcomes. Optional.
	Metrics *Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Router consumes submitted requests and fans each out: one work item per
// responsible agency on that agency's work queue, and a routed event. It is
// stateless; several processes share the router's durable consumer.
type Router struct {
	cfg RouterConfig
	pub *natsbus.Publisher
}

// NewRouter validates cfg and returns a router.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.JetStream == nil || cfg.Catalog == nil {
		return nil, errors.New("new router: JetStream and Catalog are required")
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 1024)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Router{cfg: cfg, pub: cmp.Or(cfg.Publisher, natsbus.NewPublisher(cfg.JetStream))}, nil
}

// Run routes requests until ctx ends, then returns nil once in-flight
// requests are settled.
func (r *Router) Run(ctx context.Context) error {
	cons, err := r.cfg.JetStream.Consumer(ctx, events.EventsStream, events.RouterConsumer)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return natsbus.Consume(ctx, cons, natsbus.Settings{
		Concurrency: r.cfg.Concurrency,
		Logger:      r.cfg.Logger.With("role", "router"),
		DeadLetter:  r.deadLetter,
	}, r.cfg.Metrics.Handler(events.RouterConsumer, func(ctx context.Context, msg jetstream.Msg) error {
		req, err := decodeRequest(msg.Data())
		if err != nil {
			return err
		}
		return r.Route(ctx, req)
	}))
}

// Route publishes req's routed event and then its work items. Publishing
// again is harmless: every message carries a deterministic ID.
func (r *Router) Route(ctx context.Context, req *events.Request) error {
	svc, ok := r.cfg.Catalog.Current().Service(req.ServiceCode)
	if !ok {
		return events.Permanent(fmt.Errorf("route request %s: unknown service %q", req.ID, req.ServiceCode))
	}
	// The routed event goes first, so that the projection knows the work
	// items before any agency reports on them.
	routed := events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.RoundEventID(req.ID, "", events.StatusRouted, req.Round),
		RequestID: req.ID,
		Status:    events.StatusRouted,
		At:        time.Now().UTC(),
		Actor:     events.SourceRouter,
		Agencies:  svc.Agencies,
		Round:     req.Round,
	}
	if err := r.pub.Publish(ctx, natsbus.Outgoing{
		Subject: events.StatusSubject(events.SourceRouter), ID: routed.ID, Value: routed,
	}); err != nil {
		return fmt.Errorf("route request %s: %w", req.ID, err)
	}
	outs := make([]natsbus.Outgoing, len(svc.Agencies))
	for i, agency := range svc.Agencies {
		item := req.WorkItemFor(agency)
		outs[i] = natsbus.Outgoing{Subject: events.WorkSubject(agency), ID: events.MsgID(item.ID, item.Round), Value: item}
	}
	if err := r.pub.PublishAll(ctx, outs); err != nil {
		return fmt.Errorf("route request %s: %w", req.ID, err)
	}
	r.cfg.Metrics.wasRouted(req.ServiceCode)
	return nil
}

// deadLetter records a request that cannot be routed, and marks it failed.
func (r *Router) deadLetter(ctx context.Context, msg jetstream.Msg, reason error) error {
	dl := deadLetterOf(msg, events.ReasonPermanent, reason)
	req, err := decodeRequest(msg.Data())
	if err == nil {
		dl.RequestID = req.ID
	}
	if err := record(ctx, r.cfg.DeadLetters, dl); err != nil {
		return err
	}
	if err != nil {
		// Not a request at all: nothing to attach a status to.
		r.cfg.Logger.Error("router: dropping a message that is not a request", "subject", msg.Subject(), "reason", reason.Error())
		return nil
	}
	failed := events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.RoundEventID(req.ID, "", events.StatusFailed, req.Round),
		RequestID: req.ID,
		Status:    events.StatusFailed,
		At:        time.Now().UTC(),
		Actor:     events.SourceRouter,
		Note:      reason.Error(),
		Round:     req.Round,
	}
	return r.pub.Publish(ctx, natsbus.Outgoing{
		Subject: events.StatusSubject(events.SourceRouter), ID: failed.ID, Value: failed,
	})
}

func decodeRequest(data []byte) (*events.Request, error) {
	var req events.Request
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, events.Permanent(fmt.Errorf("decode request: %w", err))
	}
	if req.Schema != events.SchemaRequest || req.ID == "" {
		return nil, events.Permanent(fmt.Errorf("decode request: unexpected schema %q or missing id", req.Schema))
	}
	return &req, nil
}
