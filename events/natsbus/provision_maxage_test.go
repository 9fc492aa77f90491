package natsbus_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// TestProvision_TakesTheStreamsMaxAgeFromTheTopology provisions the events
// and advisories streams with the topology's max age, changes it on streams
// that exist, and refuses one shorter than the duplicates window.
func TestProvision_TakesTheStreamsMaxAgeFromTheTopology(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := t.Context()
	for _, maxAge := range []time.Duration{36 * time.Hour, 0, 30 * 24 * time.Hour} {
		if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: []string{"tax"}, MaxAge: maxAge}); err != nil {
			t.Fatalf("provision with max age %v: %v", maxAge, err)
		}
		want := maxAge
		if want == 0 {
			want = natsbus.DefaultMaxAge
		}
		for _, stream := range []string{events.EventsStream, events.AdvisoryStream} {
			if got := streamConfig(t, js, stream).MaxAge; got != want {
				t.Errorf("max age %v: stream %s keeps messages %v, want %v", maxAge, stream, got, want)
			}
		}
		if got := streamConfig(t, js, events.WorkStream).MaxAge; got != 0 {
			t.Errorf("the work queue has max age %v, want none: a work item leaves it only when handled", got)
		}
	}
	err = natsbus.Provision(ctx, js, natsbus.Topology{MaxAge: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "duplicates window") {
		t.Errorf("provision with a max age of a minute: %v, want a refusal naming the duplicates window", err)
	}
}
