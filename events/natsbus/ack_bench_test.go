package natsbus_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// BenchmarkAck measures what acknowledging a consumed message costs the
// server: on the agencies' work queue, where an ack deletes the message,
// by one agency's consumer and by two agencies' consumers at once; and on
// the events stream, where an ack only moves the consumer's ack floor. One
// op is one message fetched (in batches of 500) and acknowledged; the
// messages are stored before the clock starts, and it stops once the
// server has applied every ack. BENCHMARKS.md records the figures.
func BenchmarkAck(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(mode.name, func(b *testing.B) {
			b.Run("work-queue", func(b *testing.B) {
				js, pub := benchJetStream(b, mode.noSync)
				benchAcks(b, pub, agencyQueue(b, js, "tax"))
			})
			b.Run("work-queue-2-agencies", func(b *testing.B) {
				js, pub := benchJetStream(b, mode.noSync)
				benchAcks(b, pub, agencyQueue(b, js, "tax"), agencyQueue(b, js, "civil-registry"))
			})
			b.Run("events-stream", func(b *testing.B) {
				js, pub := benchJetStream(b, mode.noSync)
				cons, err := js.CreateOrUpdateConsumer(b.Context(), events.EventsStream, jetstream.ConsumerConfig{
					Durable: "bench", FilterSubject: events.StatusSubject("tax"),
					AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
				})
				if err != nil {
					b.Fatalf("consumer: %v", err)
				}
				benchAcks(b, pub, queue{events.StatusSubject("tax"), cons})
			})
		})
	}
}

// queue is a subject and the consumer that reads it.
type queue struct {
	subject string
	cons    jetstream.Consumer
}

func agencyQueue(b *testing.B, js jetstream.JetStream, agency string) queue {
	b.Helper()
	cons, err := js.Consumer(b.Context(), events.WorkStream, events.AgencyConsumer(agency))
	if err != nil {
		b.Fatalf("consumer of %s: %v", agency, err)
	}
	return queue{events.WorkSubject(agency), cons}
}

// benchAcks stores b.N messages spread over the queues, then times
// draining every queue at once, each by its own consumer.
func benchAcks(b *testing.B, pub *natsbus.Publisher, queues ...queue) {
	b.Helper()
	ctx := b.Context()
	body := natsbus.Raw(make([]byte, 700))
	prefix := events.NewID(time.Now()) + "-"
	share := func(i int) int { return b.N/len(queues) + min(1, max(0, b.N%len(queues)-i)) }
	for i, q := range queues {
		for sent := 0; sent < share(i); {
			outs := make([]natsbus.Outgoing, 0, 1000)
			for ; sent < share(i) && len(outs) < cap(outs); sent++ {
				outs = append(outs, natsbus.Outgoing{Subject: q.subject, ID: prefix + q.subject + strconv.Itoa(sent), Value: body})
			}
			if err := pub.PublishAll(ctx, outs); err != nil {
				b.Fatalf("store messages: %v", err)
			}
		}
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	var g errgroup.Group
	for i, q := range queues {
		g.Go(func() error { return drain(b, q.cons, share(i)) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
}

// drain fetches and acknowledges n messages of cons and waits until the
// server has applied every ack.
func drain(b *testing.B, cons jetstream.Consumer, n int) error {
	for acked := 0; acked < n; {
		batch, err := cons.Fetch(min(500, n-acked), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			if err := msg.Ack(); err != nil {
				return err
			}
			acked++
		}
		if err := batch.Error(); err != nil {
			return err
		}
	}
	for {
		info, err := cons.Info(b.Context())
		if err != nil {
			return err
		}
		if info.AckFloor.Consumer >= uint64(n) && info.NumAckPending == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}
