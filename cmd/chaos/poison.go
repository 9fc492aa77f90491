package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// streamSeq names one stored message.
type streamSeq struct {
	Stream string
	Seq    uint64
}

// poisonMessage is one message that no role can decode.
type poisonMessage struct {
	Subject string
	ID      string
	Data    []byte
}

// poisonMessages returns n malformed messages spread over the three kinds of
// subject spotflow consumes (requests, work items, status events) and over
// the agencies, in turn: bytes that are not JSON, JSON that is not an
// object, and JSON objects that lack required fields or carry an unknown
// schema. None names a real request. run makes their Nats-Msg-Ids unique.
func poisonMessages(n int, run string, agencies []string, desks []desk) []poisonMessage {
	bodies := []func(i int, kind string) []byte{
		func(i int, _ string) []byte { return []byte(fmt.Sprintf("\x00\xff poison %d: not JSON at all {", i)) },
		func(i int, _ string) []byte { return []byte(fmt.Sprintf("[%d, \"a JSON array, not an object\"]", i)) },
		func(i int, kind string) []byte {
			// The right schema, but no ids.
			return []byte(fmt.Sprintf(`{"schema":"spotflow.%s.v1","note":"poison %d without ids"}`, kind, i))
		},
		func(i int, kind string) []byte {
			return []byte(fmt.Sprintf(`{"schema":"spotflow.%s.v99","id":"poison-%d","request_id":"poison-%d","agency":"tax","status":"completed"}`, kind, i, i))
		},
		func(i int, _ string) []byte { return []byte(`"a JSON string"`) },
	}
	out := make([]poisonMessage, n)
	for i := range out {
		var subject, kind string
		agency := agencies[i%len(agencies)]
		switch i % 3 {
		case 0:
			d := desks[i%len(desks)]
			subject, kind = events.RequestSubject(d.Municipality, d.ID), "request"
		case 1:
			subject, kind = events.WorkSubject(agency), "work_item"
		default:
			// Status events come from the agencies and from the router.
			source := agency
			if i%5 == 2 {
				source = "router"
			}
			subject, kind = events.StatusSubject(source), "status"
		}
		out[i] = poisonMessage{
			Subject: subject,
			ID:      fmt.Sprintf("chaos-poison-%s-%d", run, i),
			Data:    bodies[(i/3)%len(bodies)](i, kind),
		}
	}
	return out
}

// poisoner publishes poison messages with a JetStream publish, so that they
// are stored, and remembers where each was stored.
type poisoner struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// newPoisoner connects to url as intake, whose identity may publish
// requests, work items and status events (for the operator's replays): the
// poison comes from inside, since nothing from outside gets in.
func newPoisoner(url, identities string) (*poisoner, error) {
	seed, err := natsbus.ReadSeed(filepath.Join(identities, natsbus.Intake+".nk"))
	if err != nil {
		return nil, err
	}
	auth, err := natsbus.Credential{Identity: natsbus.Intake, Seed: seed}.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(auth, nats.Name("spotflow chaos poisoner"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	return &poisoner{nc: nc, js: js}, nil
}

func (p *poisoner) close() { p.nc.Close() }

// publish stores m and returns its stream and sequence. It retries for up to
// 30 seconds; m's Nats-Msg-Id makes a retry of a stored message come back
// with the first copy's sequence.
func (p *poisoner) publish(ctx context.Context, m poisonMessage) (streamSeq, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := p.js.Publish(pctx, m.Subject, m.Data, jetstream.WithMsgID(m.ID))
		cancel()
		if err == nil {
			return streamSeq{ack.Stream, ack.Sequence}, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return streamSeq{}, fmt.Errorf("publish poison %s on %s: %w", m.ID, m.Subject, err)
		}
		if !sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
			return streamSeq{}, ctx.Err()
		}
	}
}

// forge plays an agency gone rogue, and an outsider. With a credential that
// `spotflow agency issue` gives tax, it publishes on tax's own subject events
// that the projector must refuse, and records where each was stored, as
// poison: an answer for another agency's work item, one with a time decades
// off, one whose note holds control characters, one whose ID lies outside
// its work item's, and, for a request of an earlier scenario whose tax work
// item completed, another end of that round and answers in rounds no replay
// opened. It checks that the server refuses tax a publish on another agency's
// subject, and an anonymous connection. It returns how many events it
// stored.
func forge(ctx context.Context, h *harness, res *ScenarioResult) (int, error) {
	c := h.cluster
	seedFile := filepath.Join(c.dir, "tax.nk")
	if _, err := os.Stat(seedFile); err != nil {
		if _, err := c.spotflow(ctx, 2*time.Minute, "agency", "issue", "--agency", "tax", "--out", seedFile,
			"--operator", "chaos", "--data-dir", c.dir, "--log-level", "warn"); err != nil {
			return 0, err
		}
	}
	seed, err := natsbus.ReadSeed(seedFile)
	if err != nil {
		return 0, err
	}
	auth, err := natsbus.Credential{Identity: natsbus.AgencyIdentity("tax"), Seed: seed}.Options()
	if err != nil {
		return 0, err
	}
	refusals := make(chan error, 16)
	var nc *nats.Conn
	for deadline := time.Now().Add(30 * time.Second); ; { // the server lets a new credential in within seconds
		nc, err = nats.Connect(c.natsURL, append(auth, nats.Name("spotflow chaos forger"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refusals <- err }))...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
			return 0, fmt.Errorf("connect as tax: %w", err)
		}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}

	now := time.Now().UTC()
	forgedItem := events.WorkItemID(h.run+".forged", "tax")
	forged := []events.StatusEvent{
		{ID: forgedItem + ".source", RequestID: h.run + ".forged", Agency: "sns", Status: events.StatusCompleted, At: now},
		{ID: forgedItem + ".time", RequestID: h.run + ".forged", Agency: "tax", Status: events.StatusCompleted, At: now.AddDate(-30, 0, 0)},
		{ID: forgedItem + ".note", RequestID: h.run + ".forged", Agency: "tax", Status: events.StatusAccepted, At: now, Note: "ok\x00\x1b[2J"},
		// An ID that would shadow the request's own completion.
		{ID: events.EventID(h.run+".forged", "", events.StatusCompleted), RequestID: h.run + ".forged", Agency: "tax", Status: events.StatusAccepted, At: now},
	}
	for _, a := range h.all {
		if svc, ok := h.ledger.catalog.Service(a.Service); ok && slices.Contains(svc.Agencies, "tax") {
			forged = append(forged,
				events.StatusEvent{ID: events.EventID(a.ID, "tax", events.StatusRejected),
					RequestID: a.ID, Agency: "tax", Status: events.StatusRejected, At: now},
				// Rounds no operator's replay opened.
				events.StatusEvent{ID: events.RoundEventID(a.ID, "tax", events.StatusRejected, 99),
					RequestID: a.ID, Agency: "tax", Status: events.StatusRejected, At: now, Round: 99},
				events.StatusEvent{ID: events.RoundEventID(a.ID, "tax", events.StatusAccepted, 1),
					RequestID: a.ID, Agency: "tax", Status: events.StatusAccepted, At: now, Round: 1})
			break
		}
	}
	p := &poisoner{nc: nc, js: js}
	for _, ev := range forged {
		ev.Schema = events.SchemaStatus
		data, err := json.Marshal(ev)
		if err != nil {
			return 0, err
		}
		seq, err := p.publish(ctx, poisonMessage{Subject: events.StatusSubject("tax"), ID: ev.ID, Data: data})
		if err != nil {
			return 0, err
		}
		h.poison[seq] = true
	}

	// Refused by the server, so stored nowhere.
	if err := nc.Publish(events.StatusSubject("sns"), []byte(`{"schema":"spotflow.status.v1"}`)); err != nil {
		return 0, err
	}
	select {
	case err := <-refusals:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			res.Problems = append(res.Problems, fmt.Sprintf("tax publishing on sns's subject: %v, want a permissions violation", err))
		}
	case <-time.After(10 * time.Second):
		res.Problems = append(res.Problems, "the server did not refuse tax a publish on sns's status subject")
	}
	if anon, err := nats.Connect(c.natsURL, nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
		anon.Close()
		res.Problems = append(res.Problems, "an anonymous connection to NATS was accepted")
	}
	return len(forged), nil
}
