// Package natstest runs a real, embedded nats-server with JetStream for a
// test, storing in the test's temporary directory and shut down when the
// test ends.
package natstest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events/natsbus"
)

// Server starts a JetStream server on a random loopback port.
func Server(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsbus.RunServer(natsbus.ServerConfig{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// JetStream starts a server, connects to it, and provisions spotflow's
// streams and consumers for agencies.
func JetStream(t testing.TB, agencies ...string) jetstream.JetStream {
	t.Helper()
	ns := Server(t)
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: agencies}); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return js
}

// StreamMessages returns how many messages a stream holds.
func StreamMessages(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return info.State.Msgs
}
