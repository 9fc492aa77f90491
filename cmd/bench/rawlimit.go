package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events/natsbus"
)

// rawConfig is the bare composition spotflow is compared with: messages of
// spotflow's size published to JetStream (group commit, atomic batches),
// consumed in batches and upserted into Postgres one statement per batch,
// with nothing else.
type rawConfig struct {
	StoreDir    string
	NoSync      bool
	DatabaseURL string
	MessageSize int
	Publishers  int
	Duration    time.Duration
}

// rawLimit runs the bare composition for cfg.Duration and returns the
// messages per second that made it into Postgres.
func rawLimit(ctx context.Context, cfg rawConfig) (float64, error) {
	srv, err := natsbus.RunServer(natsbus.ServerConfig{Anonymous: true, StoreDir: cfg.StoreDir, Port: -1, NoSync: cfg.NoSync,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage,
		AllowAtomicPublish: true, Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return 0, fmt.Errorf("raw limit: stream: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
	})
	if err != nil {
		return 0, fmt.Errorf("raw limit: consumer: %w", err)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		DROP TABLE IF EXISTS bench_raw;
		CREATE TABLE bench_raw (id text PRIMARY KEY, payload bytea NOT NULL)`); err != nil {
		return 0, fmt.Errorf("raw limit: table: %w", err)
	}
	defer pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_raw`)

	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	payload := make([]byte, cfg.MessageSize)
	rand.Read(payload)
	pub := natsbus.NewPublisher(js)
	var wg sync.WaitGroup
	for p := range cfg.Publishers {
		wg.Go(func() {
			for n := 0; runCtx.Err() == nil; n++ {
				id := fmt.Sprintf("%d-%d", p, n)
				_ = pub.Publish(runCtx, natsbus.Outgoing{Subject: "raw.m", ID: id, Value: natsbus.Raw(payload)})
			}
		})
	}
	var stored atomic.Int64
	begin := time.Now()
	consumeErr := make(chan error, 1)
	go func() {
		for runCtx.Err() == nil {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(250*time.Millisecond))
			if err != nil {
				continue
			}
			var msgs []jetstream.Msg
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			if len(msgs) == 0 {
				continue
			}
			ids, data := make([]string, len(msgs)), make([][]byte, len(msgs))
			for i, m := range msgs {
				ids[i], data[i] = m.Headers().Get(jetstream.MsgIDHeader), m.Data()
			}
			if _, err := pool.Exec(context.WithoutCancel(runCtx), `
				INSERT INTO bench_raw (id, payload) SELECT * FROM unnest($1::text[], $2::bytea[])
				ON CONFLICT (id) DO NOTHING`, ids, data); err != nil {
				consumeErr <- err
				return
			}
			for _, m := range msgs {
				_ = m.Ack()
			}
			stored.Add(int64(len(msgs)))
		}
		consumeErr <- nil
	}()
	wg.Wait()
	if err := <-consumeErr; err != nil {
		return 0, fmt.Errorf("raw limit: upsert: %w", err)
	}
	return float64(stored.Load()) / time.Since(begin).Seconds(), nil
}
