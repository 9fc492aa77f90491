package main

import (
	"context"
	"fmt"
	"path/filepath"
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
