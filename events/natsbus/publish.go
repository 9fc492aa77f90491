package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/spotflow/spotflow/events"
)

// Raw is a message body published exactly as it is, not encoded as JSON.
type Raw []byte

// Outgoing is one message to publish: Value is encoded as JSON (unless it is
// Raw) and ID becomes its Nats-Msg-Id, so JetStream stores it once however
// often it is sent.
type Outgoing struct {
	Subject string
	ID      string
	Value   any
}

// Group commit. With JetStream syncing to disk before every acknowledgement,
// each message stored on its own costs an fsync; an atomic batch shares one
// fsync among all its messages. So a Publisher gathers what its callers
// publish at the same time into batches, one stream at a time: whatever
// arrives while a batch is being stored goes into the next, so batches grow
// with the load and a lone message is not held back. Below atomicMin
// messages a batch's fixed cost (about 4-6 ms here, several fsyncs)
// outweighs its gain, and the messages are published side by side instead:
// measured on the benchmark machine, 8 messages took 2.8 ms side by side
// and 5.6 ms as a batch, 16 took 5.6 and 4.0 ms, 32 took 9.3 and 5.7 ms.
// At full load a stream's batches fill up, one commit at a time, so
// atomicMax bounds its throughput; it is nats-server's default limit on an
// atomic batch. Measured on the benchmark machine, raising it from 500 to
// 1,000 raised the all-in-one's completed requests per second at full load
// by about a fifth: at 500, its commits were 90% full and took 100 to 200
// ms each; at 1,000 they held about 600 messages. A server
// configured with a lower limit refuses larger batches, whose messages are
// then stored one by one: correct, but slow.
const (
	atomicMin = 16
	atomicMax = 1000
	// commitTimeout bounds one batch's round trip.
	commitTimeout = 10 * time.Second
)

// Publisher publishes JSON messages to JetStream and returns only once they
// are stored, gathering concurrent publishes into atomic batches (group
// commit). It is safe for concurrent use and needs no closing: a stream's
// committer runs only while there is something to store.
type Publisher struct {
	js jetstream.JetStream

	mu     sync.Mutex
	groups map[string]*group
}

// NewPublisher returns a publisher over js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, groups: make(map[string]*group)}
}

// Publish stores one message and waits until JetStream has acknowledged it.
func (p *Publisher) Publish(ctx context.Context, out Outgoing) error {
	return p.PublishAll(ctx, []Outgoing{out})
}

// PublishAll stores every message and returns once all are acknowledged, or
// with the first failure. On error some may have been stored; publishing all
// again is safe, since their IDs deduplicate.
func (p *Publisher) PublishAll(ctx context.Context, outs []Outgoing) error {
	byStream := make(map[string]*call)
	var calls []*call
	for _, out := range outs {
		msg, err := encode(out)
		if err != nil {
			return err
		}
		stream := streamOf(out.Subject)
		c := byStream[stream]
		if c == nil {
			c = &call{done: make(chan struct{})}
			byStream[stream] = c
			calls = append(calls, c)
		}
		c.msgs = append(c.msgs, msg)
	}
	for stream, c := range byStream {
		p.group(stream).submit(c)
	}
	for _, c := range calls {
		select {
		case <-c.done:
			if c.err != nil {
				return c.err
			}
		case <-ctx.Done():
			return fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	return nil
}

// streamOf names the stream a subject is stored in.
func streamOf(subject string) string {
	if events.IsWorkSubject(subject) {
		return events.WorkStream
	}
	return events.EventsStream
}

func (p *Publisher) group(stream string) *group {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.groups[stream]
	if g == nil {
		g = &group{js: p.js}
		p.groups[stream] = g
	}
	return g
}

// call is one caller's messages for one stream, and its outcome.
type call struct {
	msgs []*nats.Msg
	err  error
	done chan struct{}
}

// group commits one stream's calls, a batch at a time.
type group struct {
	js jetstream.JetStream

	mu      sync.Mutex
	queue   []*call
	running bool
}

// submit queues c, starting the committer if it is not running.
func (g *group) submit(c *call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue = append(g.queue, c)
	if !g.running {
		g.running = true
		go g.commitAll()
	}
}

// commitAll stores batches until the queue is empty.
func (g *group) commitAll() {
	for {
		g.mu.Lock()
		n, size := 0, 0
		for n < len(g.queue) && (n == 0 || size+len(g.queue[n].msgs) <= atomicMax) {
			size += len(g.queue[n].msgs)
			n++
		}
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		g.commit(batch, size)
	}
}

// commit stores the calls' messages, as one atomic batch when there are
// enough of them, and settles each call.
func (g *group) commit(calls []*call, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	msgs := make([]*nats.Msg, 0, size)
	for _, c := range calls {
		msgs = append(msgs, c.msgs...)
	}
	if size >= atomicMin {
		_, err := jetstreamext.PublishMsgBatch(ctx, g.js, msgs)
		if err == nil {
			settle(calls, nil)
			return
		}
		// A batch is refused whole if any of its IDs is stored already
		// (a retry), or if the server cannot take it now. Store its
		// messages one by one instead: duplicates are then just skipped,
		// and no caller's message sinks its neighbours'.
		for _, m := range msgs {
			m.Reply = ""
			m.Header.Del(jetstreamext.BatchIDHeader)
			m.Header.Del(jetstreamext.BatchSeqHeader)
			m.Header.Del(jetstreamext.BatchCommitHeader)
		}
	}
	g.publishEach(ctx, calls)
}

// publishEach stores every message on its own, all at once, and settles
// each call with its first failure.
func (g *group) publishEach(ctx context.Context, calls []*call) {
	futures := make([][]jetstream.PubAckFuture, len(calls))
	errs := make([]error, len(calls))
	for i, c := range calls {
		for _, m := range c.msgs {
			f, err := g.js.PublishMsgAsync(m)
			if err != nil {
				errs[i] = fmt.Errorf("publish %s: %w", m.Subject, err)
				break
			}
			futures[i] = append(futures[i], f)
		}
	}
	for i, fs := range futures {
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				errs[i] = cmpErr(errs[i], fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
			case <-ctx.Done():
				errs[i] = cmpErr(errs[i], fmt.Errorf("publish %s: %w", f.Msg().Subject, ctx.Err()))
			}
		}
	}
	for i, c := range calls {
		c.err = errs[i]
		close(c.done)
	}
}

func settle(calls []*call, err error) {
	for _, c := range calls {
		c.err = err
		close(c.done)
	}
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

func encode(out Outgoing) (*nats.Msg, error) {
	data, ok := out.Value.(Raw)
	if !ok {
		var err error
		if data, err = json.Marshal(out.Value); err != nil {
			return nil, fmt.Errorf("encode %s: %w", out.Subject, err)
		}
	}
	msg := &nats.Msg{Subject: out.Subject, Data: data, Header: nats.Header{}}
	if out.ID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, out.ID)
	}
	return msg, nil
}
