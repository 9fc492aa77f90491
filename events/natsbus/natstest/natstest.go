// Package natstest runs a real, embedded nats-server with JetStream for a
// test, storing in the test's temporary directory and shut down when the
// test ends.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events/natsbus"
)

// Server starts a JetStream server on a random loopback port.
func Server(t testing.TB) *natsbus.Server {
	t.Helper()
	ns, err := natsbus.RunServer(natsbus.ServerConfig{Anonymous: true, StoreDir: t.TempDir(), Port: -1})
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
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: agencies}); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return js
}

// StreamMessages returns how many messages a stream holds.
func StreamMessages(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
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

// Messages reads every message a stream holds, in order.
func Messages(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natstest: open stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream info %s: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("natstest: read %s message %d: %v", stream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// Refused waits, for up to ten seconds, for the server to refuse what (a
// "publish" or a "subscription") on subject, as the connection's error
// handler reports to errs, and fails the test otherwise.
func Refused(t testing.TB, errs <-chan error, what, subject string) {
	t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", what, subject))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
		case <-deadline:
			t.Fatalf("natstest: the server did not refuse the %s to %s", what, subject)
		}
	}
}
