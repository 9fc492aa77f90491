package natsbus_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

func TestProvision_IsIdempotentAndCreatesStreamsAndConsumers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := natstest.JetStream(t, "tax", "sns")
	pub := natsbus.NewPublisher(js)
	if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.RequestSubject("lisboa", "desk-1"), ID: "r1", Value: "r1"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.WorkSubject("tax"), ID: "w1", Value: "w1"}); err != nil {
		t.Fatalf("publish: %v", err)
	}

	// Every role provisions at start; doing it again, with one more agency,
	// keeps what is stored and adds the new consumer.
	for range 2 {
		if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: []string{"tax", "sns", "imt"}}); err != nil {
			t.Fatalf("provision again: %v", err)
		}
	}
	if n := natstest.StreamMessages(t, js, events.EventsStream); n != 1 {
		t.Errorf("events stream holds %d messages after provisioning again, want 1", n)
	}
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 1 {
		t.Errorf("work stream holds %d messages after provisioning again, want 1", n)
	}

	t.Run("the events stream keeps requests and statuses under limits", func(t *testing.T) {
		cfg := streamConfig(t, js, events.EventsStream)
		if cfg.Retention != jetstream.LimitsPolicy {
			t.Errorf("retention = %v, want limits", cfg.Retention)
		}
		if cfg.Discard != jetstream.DiscardNew {
			t.Errorf("discard = %v, want new", cfg.Discard)
		}
		if want := []string{events.RequestSubjects, events.StatusSubjects}; !slices.Equal(cfg.Subjects, want) {
			t.Errorf("subjects = %v, want %v", cfg.Subjects, want)
		}
		if cfg.MaxAge != 7*24*time.Hour || cfg.Duplicates != 2*time.Minute || cfg.Storage != jetstream.FileStorage {
			t.Errorf("max age %v, duplicates window %v, storage %v; want 168h, 2m, file", cfg.MaxAge, cfg.Duplicates, cfg.Storage)
		}
	})

	t.Run("the work stream is a work queue that refuses rather than drops", func(t *testing.T) {
		cfg := streamConfig(t, js, events.WorkStream)
		if cfg.Retention != jetstream.WorkQueuePolicy {
			t.Errorf("retention = %v, want work queue", cfg.Retention)
		}
		if cfg.Discard != jetstream.DiscardNew {
			t.Errorf("discard = %v, want new", cfg.Discard)
		}
		if want := []string{events.WorkSubjects}; !slices.Equal(cfg.Subjects, want) {
			t.Errorf("subjects = %v, want %v", cfg.Subjects, want)
		}
	})

	t.Run("the advisory stream captures max-deliveries advisories of the work stream", func(t *testing.T) {
		cfg := streamConfig(t, js, events.AdvisoryStream)
		if want := []string{events.MaxDeliveriesAdvisories}; !slices.Equal(cfg.Subjects, want) || cfg.Discard != jetstream.DiscardNew {
			t.Errorf("subjects = %v discard %v, want %v and discard new", cfg.Subjects, cfg.Discard, want)
		}
	})

	// Spotflow's own consumers wait out outages (no delivery limit); an
	// agency's queue dead-letters a work item after MaxDeliveries.
	consumers := []struct {
		stream, name, filter string
		maxDeliver           int
	}{
		{events.EventsStream, events.RouterConsumer, events.RequestSubjects, -1},
		{events.EventsStream, events.ProjectorConsumer, "", -1},
		{events.AdvisoryStream, events.UndeliveredConsumer, "", -1},
		{events.WorkStream, "agency-tax", "spotflow.work.tax", 100},
		{events.WorkStream, "agency-sns", "spotflow.work.sns", 100},
		{events.WorkStream, "agency-imt", "spotflow.work.imt", 100},
	}
	for _, c := range consumers {
		t.Run(fmt.Sprintf("consumer %s acks explicitly and delivers at most %d times", c.name, c.maxDeliver), func(t *testing.T) {
			cons, err := js.Consumer(t.Context(), c.stream, c.name)
			if err != nil {
				t.Fatalf("consumer %s on %s: %v", c.name, c.stream, err)
			}
			cfg := consumerInfo(t, cons).Config
			if cfg.Durable != c.name || cfg.FilterSubject != c.filter {
				t.Errorf("durable %q filter %q, want %q filter %q", cfg.Durable, cfg.FilterSubject, c.name, c.filter)
			}
			if cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.MaxDeliver != c.maxDeliver || cfg.AckWait != 30*time.Second {
				t.Errorf("ack policy %v, max deliver %d, ack wait %v; want explicit, %d, 30s", cfg.AckPolicy, cfg.MaxDeliver, cfg.AckWait, c.maxDeliver)
			}
		})
	}
}

func TestProvision_RefusesPublishesOnceAStreamIsFull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := natstest.Server(t)
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, quiet)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: []string{"tax"}, MaxBytes: 8 << 10}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	pub := natsbus.NewPublisher(js)
	payload := strings.Repeat("x", 1<<10)
	var refused error
	for i := range 100 {
		err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.WorkSubject("tax"), ID: fmt.Sprintf("w%d", i), Value: payload})
		if err != nil {
			refused = err
			break
		}
	}
	if refused == nil {
		t.Fatal("100 KiB of publishes into an 8 KiB stream all succeeded; want a refusal")
	}
	if !strings.Contains(refused.Error(), "maximum bytes exceeded") {
		t.Errorf("refusal = %v, want the stream's maximum bytes exceeded", refused)
	}
	s, err := js.Stream(ctx, events.WorkStream)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	// Discard: New keeps what is stored; Discard: Old would have dropped the
	// first message to make room.
	if _, err := s.GetMsg(ctx, 1); err != nil {
		t.Errorf("the first work item is gone after the stream filled up: %v", err)
	}
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("open stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info %s: %v", name, err)
	}
	return info.Config
}
