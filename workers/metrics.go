package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// Metrics are spotflow's Prometheus metrics, per stage of the pipeline.
// Labels are bounded sets: services, municipalities, agencies, consumers,
// refusal reasons and outcomes; never a request, a desk's key or a citizen.
// A nil *Metrics records nothing, so every role runs without it. Its methods
// are safe for concurrent use.
type Metrics struct {
	intakeAccepted       *prometheus.CounterVec
	intakeByMunicipality *prometheus.CounterVec
	intakeRefused        *prometheus.CounterVec
	routed               *prometheus.CounterVec
	dispatched           *prometheus.CounterVec
	adapterCalls         *prometheus.CounterVec
	adapterSeconds       *prometheus.HistogramVec
	projectorBatch       prometheus.Histogram
	projectorLag         prometheus.Histogram
	handled              *prometheus.CounterVec
	redelivered          *prometheus.CounterVec
	deadLetters          *prometheus.CounterVec
	statusRefused        *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		intakeAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_intake_accepted_total", Help: "Submissions answered 202 (stored in JetStream), by service.",
		}, []string{"service"}),
		intakeByMunicipality: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_intake_accepted_by_municipality_total", Help: "Submissions answered 202, by the desk's municipality.",
		}, []string{"municipality"}),
		intakeRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_intake_refused_total", Help: "Submissions refused, by the error code of the answer.",
		}, []string{"reason"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_routed_total", Help: "Requests routed to their agencies, by service.",
		}, []string{"service"}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_dispatched_total", Help: "Work items handed to their agency's adapter, by agency.",
		}, []string{"agency"}),
		adapterCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_adapter_calls_total", Help: "Calls to agencies' adapters, by agency and outcome: the status the agency reached, transient_error or permanent_error.",
		}, []string{"agency", "outcome"}),
		adapterSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spotflow_adapter_call_seconds", Help: "Duration of calls to agencies' adapters, by agency.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"agency"}),
		projectorBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spotflow_projector_batch_size", Help: "Events the projector applied in one transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		projectorLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spotflow_projector_lag_seconds", Help: "Time from an event's storing in JetStream to the projector's handling of the batch that holds it (the batch's oldest event).",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 14),
		}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_messages_handled_total", Help: "Messages settled by spotflow's consumers, by consumer and outcome: ack, retry, outage or dead_letter.",
		}, []string{"consumer", "outcome"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_redeliveries_total", Help: "Messages settled after more than one delivery, by consumer.",
		}, []string{"consumer"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_dead_letters_total", Help: "Dead letters recorded, by agency ('' for none) and reason.",
		}, []string{"agency", "reason"}),
		statusRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotflow_status_events_refused_total", Help: "Status events the projector refused and dead-lettered, by the rule they broke: source, id, round, terminal, time or note.",
		}, []string{"rule"}),
	}
	for _, c := range []prometheus.Collector{m.intakeAccepted, m.intakeByMunicipality, m.intakeRefused, m.routed,
		m.dispatched, m.adapterCalls, m.adapterSeconds, m.projectorBatch, m.projectorLag, m.handled, m.redelivered, m.deadLetters, m.statusRefused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) accepted(municipality, service string) {
	if m != nil {
		m.intakeAccepted.WithLabelValues(service).Inc()
		m.intakeByMunicipality.WithLabelValues(municipality).Inc()
	}
}

func (m *Metrics) wasRouted(service string) {
	if m != nil {
		m.routed.WithLabelValues(service).Inc()
	}
}

func (m *Metrics) wasDispatched(agency string) {
	if m != nil {
		m.dispatched.WithLabelValues(agency).Inc()
	}
}

// StatusRefused counts a status event refused for breaking rule.
func (m *Metrics) StatusRefused(rule string) {
	if m != nil {
		m.statusRefused.WithLabelValues(rule).Inc()
	}
}

// Refused counts a submission refused with the error code of its answer.
func (m *Metrics) Refused(code string) {
	if m != nil {
		m.intakeRefused.WithLabelValues(code).Inc()
	}
}

// Settled returns the hook that counts, for consumer, how its consume loop
// settled each message (natsbus.Settings.Settled), and the messages that
// came again after an earlier delivery. A nil *Metrics returns nil.
func (m *Metrics) Settled(consumer string) func(jetstream.Msg, natsbus.Outcome) {
	if m == nil {
		return nil
	}
	return func(msg jetstream.Msg, o natsbus.Outcome) {
		m.handled.WithLabelValues(consumer, string(o)).Inc()
		if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 1 {
			m.redelivered.WithLabelValues(consumer).Inc()
		}
	}
}

// ProjectorBatches measures the batches h handles for the projector: their
// sizes, and the lag of each batch's oldest event.
func (m *Metrics) ProjectorBatches(h natsbus.BatchHandler) natsbus.BatchHandler {
	if m == nil {
		return h
	}
	return func(ctx context.Context, msgs []jetstream.Msg) []error {
		m.projectorBatch.Observe(float64(len(msgs)))
		var oldest time.Time
		for _, msg := range msgs {
			if meta, err := msg.Metadata(); err == nil && (oldest.IsZero() || meta.Timestamp.Before(oldest)) {
				oldest = meta.Timestamp
			}
		}
		if !oldest.IsZero() {
			m.projectorLag.Observe(time.Since(oldest).Seconds())
		}
		return h(ctx, msgs)
	}
}

// Adapter counts and times a's calls for agency, by outcome.
func (m *Metrics) Adapter(agency string, a Adapter) Adapter {
	if m == nil {
		return a
	}
	return &measuredAdapter{agency: agency, next: a, m: m}
}

type measuredAdapter struct {
	agency string
	next   Adapter
	m      *Metrics
}

func (a *measuredAdapter) Deliver(ctx context.Context, item events.WorkItem) (Receipt, error) {
	start := time.Now()
	r, err := a.next.Deliver(ctx, item)
	a.m.adapterSeconds.WithLabelValues(a.agency).Observe(time.Since(start).Seconds())
	result := string(r.Status)
	switch {
	case events.IsPermanent(err):
		result = "permanent_error"
	case err != nil:
		result = "transient_error"
	case !r.Status.Valid():
		result = "invalid_status"
	}
	a.m.adapterCalls.WithLabelValues(a.agency, result).Inc()
	return r, err
}

// DeadLetters counts the dead letters store records, by agency and reason.
func (m *Metrics) DeadLetters(store DeadLetters) DeadLetters {
	if m == nil || store == nil {
		return store
	}
	return &countedDeadLetters{next: store, m: m}
}

type countedDeadLetters struct {
	next DeadLetters
	m    *Metrics
}

func (c *countedDeadLetters) RecordDeadLetter(ctx context.Context, d events.DeadLetter) (bool, error) {
	fresh, err := c.next.RecordDeadLetter(ctx, d)
	if err == nil && fresh {
		c.m.deadLetters.WithLabelValues(d.Agency, d.Reason).Inc()
	}
	return fresh, err
}

// QueueCollector exports JetStream's state of spotflow's consumers as
// gauges, read when Prometheus scrapes.
type QueueCollector struct {
	read                                      func(ctx context.Context) ([]natsbus.ConsumerState, error)
	logger                                    *slog.Logger
	pending, ackPending, redelivered, waiting *prometheus.Desc
}

// NewQueueCollector returns a collector that calls read on every scrape,
// waiting for it at most five seconds.
func NewQueueCollector(read func(ctx context.Context) ([]natsbus.ConsumerState, error), logger *slog.Logger) *QueueCollector {
	labels := []string{"stream", "consumer"}
	return &QueueCollector{
		read: read, logger: logger,
		pending:     prometheus.NewDesc("spotflow_consumer_pending_messages", "Messages of a JetStream consumer not yet delivered.", labels, nil),
		ackPending:  prometheus.NewDesc("spotflow_consumer_ack_pending_messages", "Messages of a JetStream consumer delivered and not yet acknowledged.", labels, nil),
		redelivered: prometheus.NewDesc("spotflow_consumer_redelivered_messages", "Messages of a JetStream consumer delivered more than once and not yet acknowledged.", labels, nil),
		waiting:     prometheus.NewDesc("spotflow_consumer_waiting_pulls", "Pull requests waiting on a JetStream consumer.", labels, nil),
	}
}

// Describe sends the gauges' descriptions.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.waiting
}

// Collect reads the consumers' state and sends it.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	states, err := c.read(ctx)
	if err != nil {
		c.logger.Warn("metrics: read consumer state", "err", err)
		return
	}
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending), s.Stream, s.Consumer)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(s.AckPending), s.Stream, s.Consumer)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(s.Redelivered), s.Stream, s.Consumer)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.Waiting), s.Stream, s.Consumer)
	}
}
