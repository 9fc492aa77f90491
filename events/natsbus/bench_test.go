package natsbus_test

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// benchWindow is how many publishes the async benchmarks keep in flight: one
// PublishAll call, as if that many desks submitted at once.
const benchWindow = 256

// BenchmarkPublish measures what storing a desk's request in JetStream costs,
// with the server syncing to disk before every acknowledgement (durable,
// spotflow's default) and on the OS's schedule instead (no-sync,
// --nats-no-sync). One op is one ~700-byte request, JSON-encoded by the
// Publisher and stored under its own Nats-Msg-Id; BENCHMARKS.md records the
// figures and what they mean.
func BenchmarkPublish(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(mode.name, func(b *testing.B) {
			// What one desk waits for: each request is acknowledged before
			// the next is sent.
			b.Run("sync-one-at-a-time", func(b *testing.B) {
				js, pub := benchJetStream(b, mode.noSync)
				reqs := newBenchRequests(b)
				ctx := b.Context()
				b.ResetTimer()
				for range b.N {
					if err := pub.Publish(ctx, reqs.next()); err != nil {
						b.Fatalf("publish: %v", err)
					}
				}
				reqs.report(b, js)
			})
			// Many desks at once: benchWindow requests in flight, every one
			// of them acknowledged before the next window is sent.
			b.Run("async-window-"+strconv.Itoa(benchWindow), func(b *testing.B) {
				js, pub := benchJetStream(b, mode.noSync)
				reqs := newBenchRequests(b)
				ctx := b.Context()
				window := make([]natsbus.Outgoing, 0, benchWindow)
				b.ResetTimer()
				for sent := 0; sent < b.N; sent += len(window) {
					window = window[:0]
					for range min(benchWindow, b.N-sent) {
						window = append(window, reqs.next())
					}
					if err := pub.PublishAll(ctx, window); err != nil {
						b.Fatalf("publish all: %v", err)
					}
				}
				reqs.report(b, js)
			})
		})
	}
}

// syncModes are the two settings every JetStream benchmark runs under: the
// server syncing to disk before every acknowledgement (spotflow's default)
// and on the OS's schedule (--nats-no-sync).
var syncModes = []struct {
	name   string
	noSync bool
}{
	{"durable", false},
	{"no-sync", true},
}

// benchJetStream starts an embedded server storing in the benchmark's
// temporary directory, connects, provisions spotflow's topology and returns
// a publisher; the server stops when the benchmark run ends. Unlike
// natstest.JetStream it lets the caller turn off the sync before every ack.
func benchJetStream(b *testing.B, noSync bool) (jetstream.JetStream, *natsbus.Publisher) {
	b.Helper()
	ns, err := natsbus.RunServer(natsbus.ServerConfig{Anonymous: true, StoreDir: b.TempDir(), Port: -1, NoSync: noSync})
	if err != nil {
		b.Fatalf("start nats-server: %v", err)
	}
	b.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, js, err := natsbus.Connect(ns.ClientURL(), b.Name(), natsbus.Credential{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(nc.Close)
	if err := natsbus.Provision(b.Context(), js, natsbus.Topology{Agencies: []string{"civil-registry", "tax"}}); err != nil {
		b.Fatalf("provision: %v", err)
	}
	return js, natsbus.NewPublisher(js)
}

// benchRequests hands out copies of one realistic request, each with an ID
// (and so a Nats-Msg-Id) of its own.
type benchRequests struct {
	template events.Request
	prefix   string // unique per benchmark run, so IDs never repeat across desks or runs
	sent     int
}

func newBenchRequests(b *testing.B) *benchRequests {
	b.Helper()
	mustJSON := func(v any) json.RawMessage {
		raw, err := json.Marshal(v)
		if err != nil {
			b.Fatalf("encode benchmark request: %v", err)
		}
		return raw
	}
	r := &benchRequests{
		prefix: events.NewID(time.Now()) + "-",
		template: events.Request{
			Schema:       events.SchemaRequest,
			ID:           events.NewID(time.Now()),
			DeskID:       "desk-1",
			Municipality: "lisboa",
			Mediator:     "mediator-0042",
			ServiceCode:  "change-of-address",
			VisitID:      events.NewID(time.Now()),
			Citizen:      events.Citizen{NationalID: "123456789ZZ4", Name: "Maria da Conceição Fernandes Albuquerque"},
			Attributes: map[string]json.RawMessage{
				"street":               mustJSON("Rua Professor Doutor Augusto Abreu Lopes, 27, 3.º Esquerdo"),
				"postal_code":          mustJSON("1600-123"),
				"locality":             mustJSON("Lisboa"),
				"effective_date":       mustJSON("2026-12-01"),
				"previous_street":      mustJSON("Avenida da República, 1032, 5.º Direito, Escritório B"),
				"previous_postal_code": mustJSON("1050-194"),
				"notes":                mustJSON("Proof of address (lease agreement) checked at the desk."),
			},
			SubmittedAt: time.Date(2026, 11, 23, 10, 15, 42, 123456789, time.UTC),
		},
	}
	size := len(mustJSON(r.next().Value))
	r.sent = 0
	if size < 600 || size > 800 {
		b.Fatalf("a benchmark request encodes to %d bytes, want about 700", size)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	return r
}

// next returns the next request to publish, on desk-1's subject.
func (r *benchRequests) next() natsbus.Outgoing {
	req := r.template
	req.ID = r.prefix + strconv.Itoa(r.sent)
	r.sent++
	return natsbus.Outgoing{
		Subject: events.RequestSubject(req.Municipality, req.DeskID),
		ID:      events.MsgID(req.ID, req.Round),
		Value:   req,
	}
}

// report stops the timer, reports the throughput and checks that every
// request was stored once: none lost, none deduplicated away.
func (r *benchRequests) report(b *testing.B, js jetstream.JetStream) {
	b.Helper()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if n := natstest.StreamMessages(b, js, events.EventsStream); n != uint64(b.N) {
		b.Fatalf("the events stream holds %d messages after %d publishes, want %d", n, b.N, b.N)
	}
}
