package natsbus

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spotflow/spotflow/events"
)

// Topology sizes the pipeline's streams and consumers. Zero values take the
// defaults documented on each field.
type Topology struct {
	// Agencies whose work queues need a durable consumer.
	Agencies []string
	// Replicas per stream: 1 on a single server, 3 on a cluster. Default 1.
	Replicas int
	// MaxAge is how long the events stream keeps requests (which hold the
	// citizen's personal data) and status events, and the advisories
	// stream its advisories; JetStream deletes older messages, consumed or
	// not, so keep it longer than the longest outage of a consumer. It may
	// not be shorter than Duplicates. Default DefaultMaxAge. The work
	// stream has none: a work item leaves it when its agency (or the
	// dead-letter path) acknowledges it, never unhandled.
	MaxAge time.Duration
	// MaxBytes caps each stream; past it, publishes are refused (Discard:
	// New) rather than old messages silently dropped. Default 8 GiB.
	MaxBytes int64
	// Duplicates is the window in which a repeated Nats-Msg-Id is
	// recognised. Default 2 minutes.
	Duplicates time.Duration
	// AckWait is how long a consumer waits for an ack before redelivering.
	// Default 30 seconds; adapters send in-progress during slower calls.
	AckWait time.Duration
	// MaxDeliveries caps how often a work item is delivered to its agency's
	// adapter before it is dead-lettered. Transient failures are NAK'd with
	// a delay growing to a minute, so the default of 100 rides out about an
	// hour and a half of agency outage. Spotflow's own consumers (router,
	// projector) redeliver without limit: an outage of Postgres or NATS is
	// waited out, never dead-lettered.
	MaxDeliveries int
}

// DefaultMaxAge is how long the events and advisories streams keep their
// messages unless Topology.MaxAge says otherwise.
const DefaultMaxAge = 7 * 24 * time.Hour

// Provision creates or updates the streams and durable consumers of the
// pipeline. It is idempotent: every role calls it at start. A changed
// MaxAge applies to the streams as they are: a shorter one deletes the
// messages older than it at once.
func Provision(ctx context.Context, js jetstream.JetStream, t Topology) error {
	replicas := cmp.Or(t.Replicas, 1)
	maxBytes := cmp.Or(t.MaxBytes, 8<<30)
	dups := cmp.Or(t.Duplicates, 2*time.Minute)
	maxAge := cmp.Or(t.MaxAge, DefaultMaxAge)
	if maxAge < dups {
		return fmt.Errorf("provision: the streams' max age (%v) is shorter than their duplicates window (%v)", maxAge, dups)
	}
	ackWait := cmp.Or(t.AckWait, 30*time.Second)
	streams := []jetstream.StreamConfig{{
		Name:        events.EventsStream,
		Description: "spotflow: submitted requests and status events",
		Subjects:    []string{events.RequestSubjects, events.StatusSubjects},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  dups,
		// Group commit: atomic batches share one fsync among many messages.
		AllowAtomicPublish: true,
	}, {
		Name:               events.WorkStream,
		Description:        "spotflow: agencies' work queues",
		Subjects:           []string{events.WorkSubjects},
		Retention:          jetstream.WorkQueuePolicy,
		MaxBytes:           maxBytes,
		Discard:            jetstream.DiscardNew,
		Storage:            jetstream.FileStorage,
		Replicas:           replicas,
		Duplicates:         dups,
		AllowAtomicPublish: true,
	}, {
		Name:        events.AdvisoryStream,
		Description: "spotflow: advisories of work items whose deliveries ran out",
		Subjects:    []string{events.MaxDeliveriesAdvisories},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		MaxBytes:    1 << 30,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}}
	for _, cfg := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	consumer := func(stream, durable, filter string, maxDeliver int) error {
		cfg := jetstream.ConsumerConfig{
			Durable:       durable,
			FilterSubject: filter,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    maxDeliver,
			MaxAckPending: 20000,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
			return fmt.Errorf("provision consumer %s: %w", durable, err)
		}
		return nil
	}
	unlimited := -1
	if err := consumer(events.EventsStream, events.RouterConsumer, events.RequestSubjects, unlimited); err != nil {
		return err
	}
	if err := consumer(events.EventsStream, events.ProjectorConsumer, "", unlimited); err != nil {
		return err
	}
	if err := consumer(events.AdvisoryStream, events.UndeliveredConsumer, "", unlimited); err != nil {
		return err
	}
	// The practice queue: training mode's work items, which only the
	// dispatcher's practice agency consumes.
	for _, a := range append([]string{events.SourcePractice}, t.Agencies...) {
		err := consumer(events.WorkStream, events.AgencyConsumer(a), events.WorkSubject(a), cmp.Or(t.MaxDeliveries, 100))
		if err != nil {
			return err
		}
	}
	return nil
}
