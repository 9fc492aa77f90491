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
	// MaxBatch caps how many requests are routed together: their routed
	// events are published at once, then their work items. Default 500.
	MaxBatch int
	// Concurrency is how many batches one process routes at once: while
	// some wait for their routed events to be stored, others wait for their
	// work items. Default 16.
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
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 500)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 16)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Router{cfg: cfg, pub: cmp.Or(cfg.Publisher, natsbus.NewPublisher(cfg.JetStream))}, nil
}

// Run routes requests until ctx ends, then returns nil once in-flight
// requests are settled. It takes whatever requests have arrived as one
// batch, so that publishing costs a few round trips per batch rather than
// per request.
func (r *Router) Run(ctx context.Context) error {
	cons, err := r.cfg.JetStream.Consumer(ctx, events.EventsStream, events.RouterConsumer)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{
		MaxBatch:    r.cfg.MaxBatch,
		Concurrency: r.cfg.Concurrency,
		Logger:      r.cfg.Logger.With("role", "router"),
		DeadLetter:  r.deadLetter,
		Settled:     r.cfg.Metrics.Settled(events.RouterConsumer),
	}, r.routeBatch)
}

// routeBatch routes the requests of msgs together: all their routed events
// first, then all their work items. A message that is not a routable
// request fails alone; a failed publish fails every request that waited on
// it, and publishing them again is harmless.
func (r *Router) routeBatch(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	var routed, items []natsbus.Outgoing
	var planned []int     // the messages whose requests are in routed
	var services []string // and the services of those that count, for the metrics
	for i, msg := range msgs {
		req, err := decodeRequestOn(msg.Subject(), msg.Data())
		if err == nil {
			var ev natsbus.Outgoing
			var its []natsbus.Outgoing
			if ev, its, err = r.plan(req); err == nil {
				routed, items, planned = append(routed, ev), append(items, its...), append(planned, i)
				if req.Practice == nil {
					services = append(services, req.ServiceCode)
				}
			}
		}
		errs[i] = err
	}
	if err := r.publish(ctx, routed, items); err != nil {
		for _, i := range planned {
			errs[i] = err
		}
		return errs
	}
	for _, svc := range services {
		r.cfg.Metrics.wasRouted(svc)
	}
	return errs
}

// Route publishes req's routed event and then its work items. Publishing
// again is harmless: every message carries a deterministic ID.
func (r *Router) Route(ctx context.Context, req *events.Request) error {
	routed, items, err := r.plan(req)
	if err != nil {
		return err
	}
	if err := r.publish(ctx, []natsbus.Outgoing{routed}, items); err != nil {
		return fmt.Errorf("route request %s: %w", req.ID, err)
	}
	if req.Practice == nil {
		r.cfg.Metrics.wasRouted(req.ServiceCode)
	}
	return nil
}

// publish stores routed events and then work items. The routed events go
// first, so that the projection knows a request's work items before any
// agency reports on them.
func (r *Router) publish(ctx context.Context, routed, items []natsbus.Outgoing) error {
	if err := r.pub.PublishAll(ctx, routed); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	if err := r.pub.PublishAll(ctx, items); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	return nil
}

// plan works out what routing req publishes: its routed event and one work
// item per responsible agency, on that agency's queue, or on the practice
// queue for a request made in training mode, which no agency consumes.
func (r *Router) plan(req *events.Request) (routed natsbus.Outgoing, items []natsbus.Outgoing, err error) {
	svc, ok := r.cfg.Catalog.Current().Service(req.ServiceCode)
	if !ok {
		return routed, nil, events.Permanent(fmt.Errorf("route request %s: unknown service %q", req.ID, req.ServiceCode))
	}
	ev := events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.RoundEventID(req.ID, "", events.StatusRouted, req.Round),
		RequestID: req.ID,
		Status:    events.StatusRouted,
		At:        time.Now().UTC(),
		Actor:     events.SourceRouter,
		Agencies:  svc.Agencies,
		Round:     req.Round,
	}
	routed = natsbus.Outgoing{Subject: events.StatusSubject(events.SourceRouter), ID: ev.ID, Value: ev}
	items = make([]natsbus.Outgoing, len(svc.Agencies))
	for i, agency := range svc.Agencies {
		item := req.WorkItemFor(agency)
		items[i] = natsbus.Outgoing{Subject: item.Queue(), ID: events.MsgID(item.ID, item.Round), Value: item}
	}
	return routed, items, nil
}

// deadLetter records a request that cannot be routed, and marks it failed.
func (r *Router) deadLetter(ctx context.Context, msg jetstream.Msg, reason error) error {
	dl := deadLetterOf(msg, events.ReasonPermanent, reason)
	if events.RefusedRule(reason) != "" {
		dl.Reason = events.ReasonRefused
	}
	req, err := decodeRequestOn(msg.Subject(), msg.Data())
	if err == nil {
		dl.RequestID = req.ID
	}
	if err := record(ctx, r.cfg.DeadLetters, dl); err != nil {
		return err
	}
	if err != nil {
		// Not a request at all, or one of another desk's: nothing to attach
		// a status to.
		r.cfg.Logger.Error("router: dropping a message that is not a request of its subject's desk", "subject", msg.Subject(), "reason", reason.Error())
		return nil
	}
	failed := events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.RoundEventID(req.ID, "", events.StatusFailed, req.Round),
		RequestID: req.ID,
		Status:    events.StatusFailed,
		At:        time.Now().UTC(),
		Actor:     events.SourceRouter,
		Note:      events.CleanNote(reason.Error()),
		Round:     req.Round,
	}
	return r.pub.Publish(ctx, natsbus.Outgoing{
		Subject: events.StatusSubject(events.SourceRouter), ID: failed.ID, Value: failed,
	})
}

// decodeRequestOn decodes the request published on subject, which must be
// its desk's: each desk, and its edge, may publish on its own subject only,
// and a request that claims another desk is forged.
func decodeRequestOn(subject string, data []byte) (*events.Request, error) {
	req, err := decodeRequest(data)
	if err != nil {
		return nil, err
	}
	if want := events.RequestSubject(req.Municipality, req.DeskID); subject != want {
		return nil, events.Refuse(events.RuleSource, "request %s of desk %s of %s published on %s", req.ID, req.DeskID, req.Municipality, subject)
	}
	return req, nil
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
