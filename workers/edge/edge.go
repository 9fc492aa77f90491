// Package edge keeps a desk working while its link to the hub is down. A
// desk's edge (spotflow edge run) runs a NATS leaf node with JetStream in a
// domain of its own, at the desk or in the town hall, and serves the desk
// API there: a submission is checked against the catalogue as intake
// checks it, stored in the edge's outbox and answered 202 at once, "stored
// at the desk"; the forwarder then carries the outbox to the hub's events
// stream over the leaf connection, one request at a time and in the order
// they were accepted, whenever the link is up.
//
// The outbox is a stream with limits retention: it keeps every request for
// OutboxAge whether forwarded or not (a work queue across a leaf link is a
// known trap), and the forwarder's durable consumer says how far it got. A
// request is forwarded with its ID as JetStream's deduplication ID, and
// whatever the hub receives twice (after the edge restarted between the
// hub's acknowledgement and its own) changes nothing: the pipeline applies
// every request, event and work item once by ID.
package edge

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
)

// The edge's streams and buckets, in its own JetStream domain.
const (
	// OutboxStream holds the desk's accepted requests, forwarded or not.
	OutboxStream = "EDGE_OUTBOX"
	// forwarder is the outbox's durable consumer: how far forwarding got.
	forwarder = "forwarder"
	// keysBucket binds the desk's idempotency keys to requests.
	keysBucket = "EDGE_KEYS"
	// requestsBucket says, per request, what the desk reads of it while
	// the hub cannot tell: its service, when it was accepted, and when it
	// was forwarded.
	requestsBucket = "EDGE_REQUESTS"
)

// outboxSubject is the subject of a desk's outbox; it never crosses the
// leaf link.
func outboxSubject(desk string) string { return "spotflow.outbox." + desk }

// Catalogs gives the service catalogue in force.
type Catalogs interface {
	Current() *events.Catalog
}

// Config configures an edge.
type Config struct {
	// JetStream of the edge's own server (its domain). Required.
	JetStream jetstream.JetStream
	// Desk the edge serves. Required.
	Desk events.Desk
	// TokenHashes are the SHA-256 of the desk's tokens the edge accepts.
	// Required.
	TokenHashes [][]byte
	// Catalog checks submissions. Required.
	Catalog Catalogs
	// OutboxAge is how long the outbox keeps a request: longer than the
	// longest outage the desk must ride out. Default 30 days.
	OutboxAge time.Duration
	// OutboxBytes caps the outbox on disk; once full, submissions are
	// refused (503) rather than old requests dropped. Default 1 GiB.
	OutboxBytes int64
	// HubAPI, when set, is the hub's HTTP address: a forwarded request is
	// read there, with the desk's own token. Optional.
	HubAPI string
	// Retry bounds the wait between attempts to forward while the link is
	// down. Default 2 seconds.
	Retry time.Duration
	// Accepted, when set, is told of every request stored at the desk for
	// the first time: the edge's desk application records it in its own
	// database, to list it and show it. Its failure is logged; the request
	// stays stored and is forwarded all the same.
	Accepted func(ctx context.Context, req *events.Request) error
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Edge is a desk's edge: the intake and store the desk API
// (workers/deskapi) needs, and the forwarder. Safe for concurrent use.
type Edge struct {
	cfg      Config
	outbox   jetstream.Stream
	keys     jetstream.KeyValue
	requests jetstream.KeyValue
	client   *http.Client
}

// New provisions the edge's outbox and buckets and returns the edge.
func New(ctx context.Context, cfg Config) (*Edge, error) {
	if cfg.JetStream == nil || cfg.Desk.ID == "" || cfg.Desk.Municipality == "" || len(cfg.TokenHashes) == 0 || cfg.Catalog == nil {
		return nil, errors.New("new edge: JetStream, Desk, TokenHashes and Catalog are required")
	}
	cfg.OutboxAge = cmp.Or(cfg.OutboxAge, 30*24*time.Hour)
	cfg.OutboxBytes = cmp.Or(cfg.OutboxBytes, 1<<30)
	cfg.Retry = cmp.Or(cfg.Retry, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	e := &Edge{cfg: cfg, client: &http.Client{Timeout: 5 * time.Second}}
	var err error
	e.outbox, err = cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        OutboxStream,
		Description: "spotflow edge: the desk's accepted requests, kept until forwarded and for the outbox's age",
		Subjects:    []string{outboxSubject(cfg.Desk.ID)},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.OutboxAge,
		MaxBytes:    cfg.OutboxBytes,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("new edge: outbox: %w", err)
	}
	if _, err := cfg.JetStream.CreateOrUpdateConsumer(ctx, OutboxStream, jetstream.ConsumerConfig{
		Durable:       forwarder,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1, // one at a time: the hub gets them in order
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return nil, fmt.Errorf("new edge: forwarder: %w", err)
	}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{keysBucket, &e.keys}, {requestsBucket, &e.requests}} {
		*b.kv, err = cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b.name, TTL: cfg.OutboxAge, Storage: jetstream.FileStorage, History: 1,
		})
		if err != nil {
			return nil, fmt.Errorf("new edge: %s: %w", b.name, err)
		}
	}
	return e, nil
}

// Authenticate recognises the desk by its token (workers/deskapi.Intake).
func (e *Edge) Authenticate(_ context.Context, _ string, token string) (events.Desk, error) {
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		for _, h := range e.cfg.TokenHashes {
			if subtle.ConstantTimeCompare(sum[:], h) == 1 {
				return e.cfg.Desk, nil
			}
		}
	}
	return events.Desk{}, fmt.Errorf("edge: %w", events.ErrUnauthenticated)
}

// claim is what an idempotency key is bound to: the request and its
// body's SHA-256.
type claim struct {
	ID      string          `json:"id"`
	Body    string          `json:"body_sha256"`
	Request json.RawMessage `json:"request"`
}

// held is what the edge tells the desk of a request.
type held struct {
	ServiceCode string    `json:"service_code"`
	AcceptedAt  time.Time `json:"accepted_at"`
	ForwardedAt time.Time `json:"forwarded_at,omitzero"`
}

// Accept checks sub as intake does, binds it to key and stores it in the
// outbox (workers/deskapi.Intake). The same key with the same body is the
// same request, stored again if it was lost in between; with another body
// it is events.ErrIdempotencyConflict.
func (e *Edge) Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (string, *events.Service, error) {
	svc, err := e.cfg.Catalog.Current().Validate(sub)
	if err != nil {
		return "", nil, err
	}
	body, err := json.Marshal(sub)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode submission: %w", err)
	}
	sum := sha256.Sum256(body)
	now := time.Now().UTC()
	req := events.RequestOf(desk, sub, events.NewID(now), now)
	message, err := json.Marshal(req)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode request: %w", err)
	}
	kh := sha256.Sum256([]byte(key))
	kvKey := hex.EncodeToString(kh[:])
	bodySum := hex.EncodeToString(sum[:])
	c := claim{ID: req.ID, Body: bodySum, Request: message}
	if _, err := e.keys.Create(ctx, kvKey, mustJSON(c)); errors.Is(err, jetstream.ErrKeyExists) {
		entry, err := e.keys.Get(ctx, kvKey)
		if err != nil {
			return "", nil, events.Unavailable(fmt.Errorf("accept: %w", err))
		}
		if err := json.Unmarshal(entry.Value(), &c); err != nil {
			return "", nil, fmt.Errorf("accept: %w", err)
		}
		if c.Body != bodySum {
			return "", nil, events.ErrIdempotencyConflict
		}
		// Recorded as held only once the outbox has it: a retry has nothing
		// more to do.
		if _, err := e.requests.Get(ctx, c.ID); err == nil {
			return c.ID, svc, nil
		}
	} else if err != nil {
		return "", nil, events.Unavailable(fmt.Errorf("accept: %w", err))
	}
	// Stored again if a crash came between the key and the outbox: the
	// outbox recognises its ID within two minutes, and the hub applies a
	// request once however often it arrives.
	if _, err := e.cfg.JetStream.Publish(ctx, outboxSubject(desk.ID), c.Request, jetstream.WithMsgID(c.ID)); err != nil {
		return "", nil, events.Unavailable(fmt.Errorf("accept: store request %s at the desk: %w", c.ID, err))
	}
	_, err = e.requests.Create(ctx, c.ID, mustJSON(held{ServiceCode: sub.ServiceCode, AcceptedAt: now}))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
	case err != nil:
		return "", nil, events.Unavailable(fmt.Errorf("accept: %w", err))
	case e.cfg.Accepted != nil:
		var stored events.Request
		err := json.Unmarshal(c.Request, &stored)
		if err == nil {
			err = e.cfg.Accepted(ctx, &stored)
		}
		if err != nil {
			e.cfg.Logger.Warn("edge: record an accepted request for the desk application", "request", c.ID, "err", err)
		}
	}
	return c.ID, svc, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// RequestForDesk reads request id (workers/deskapi.Store): from the hub,
// with the token the desk presented, once forwarded and while the hub can
// be reached; otherwise as the edge holds it, submitted and marked held at
// the desk until forwarded.
func (e *Edge) RequestForDesk(ctx context.Context, _ string, id string) (*events.RequestView, error) {
	entry, err := e.requests.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, events.ErrNotFound
	}
	if err != nil {
		return nil, events.Unavailable(err)
	}
	var h held
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		return nil, err
	}
	if !h.ForwardedAt.IsZero() && e.cfg.HubAPI != "" {
		if token, ok := tokenOf(ctx); ok {
			if v, err := e.fromHub(ctx, id, token); err == nil {
				return v, nil
			}
		}
	}
	return &events.RequestView{ID: id, ServiceCode: h.ServiceCode, Status: events.StatusSubmitted, HeldAtDesk: h.ForwardedAt.IsZero(),
		CreatedAt: h.AcceptedAt, UpdatedAt: cmpTime(h.ForwardedAt, h.AcceptedAt), WorkItems: []events.WorkItemView{}, Timeline: []events.TimelineEntry{}}, nil
}

func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

// fromHub reads a forwarded request at the hub.
func (e *Edge) fromHub(ctx context.Context, id, token string) (*events.RequestView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(e.cfg.HubAPI, "/")+"/v1/requests/"+id, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s", resp.Status)
	}
	var v events.RequestView
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return nil, err
	}
	return &v, nil
}

type tokenKey struct{}

// WithToken keeps the desk's token of an HTTP request in its context, for
// reads the edge makes at the hub on the desk's behalf.
func WithToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, token))
		}
		h.ServeHTTP(w, r)
	})
}

func tokenOf(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tokenKey{}).(string)
	return t, ok && t != ""
}

// Pending counts the requests accepted and not forwarded yet.
func (e *Edge) Pending(ctx context.Context) (uint64, error) {
	cons, err := e.cfg.JetStream.Consumer(ctx, OutboxStream, forwarder)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Run forwards the outbox to the hub until ctx ends, then returns nil: each
// request in turn is published on its desk's request subject, which the
// leaf link carries to the hub's events stream, with its ID as the
// deduplication ID; it is acknowledged in the outbox only once the hub's
// JetStream has stored it, and tried again, in the same place in the line,
// while the link is down.
func (e *Edge) Run(ctx context.Context) error {
	cons, err := e.cfg.JetStream.Consumer(ctx, OutboxStream, forwarder)
	if err != nil {
		return fmt.Errorf("edge forwarder: %w", err)
	}
	subject := events.RequestSubject(e.cfg.Desk.Municipality, e.cfg.Desk.ID)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("edge forwarder: read the outbox", "err", err)
				sleep(ctx, e.cfg.Retry)
			}
			continue
		}
		for msg := range batch.Messages() {
			id := msg.Headers().Get(jetstream.MsgIDHeader)
			if err := e.forward(ctx, subject, id, msg.Data()); err != nil {
				if ctx.Err() != nil {
					_ = msg.Nak()
					break
				}
				e.cfg.Logger.Info("edge forwarder: the hub cannot be reached; the request waits at the desk", "request", id, "err", err)
				// Back in line, first: nothing behind it goes before.
				_ = msg.NakWithDelay(wait)
				wait = min(wait*2, e.cfg.Retry)
				continue
			}
			wait = 100 * time.Millisecond
			if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
				// Forwarded again later, which the hub recognises.
				e.cfg.Logger.Warn("edge forwarder: acknowledge in the outbox", "request", id, "err", err)
			}
		}
	}
	return nil
}

// forward stores one request at the hub and notes that it was.
func (e *Edge) forward(ctx context.Context, subject, id string, data []byte) error {
	pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := e.cfg.JetStream.Publish(pubCtx, subject, data, jetstream.WithMsgID(id), jetstream.WithExpectStream(events.EventsStream))
	if err != nil {
		return err
	}
	e.cfg.Logger.Debug("edge forwarder: forwarded", "request", id, "stream_seq", ack.Sequence, "duplicate", ack.Duplicate)
	entry, err := e.requests.Get(ctx, id)
	if err != nil {
		return nil // the desk's view is only late to say it was forwarded
	}
	var h held
	if json.Unmarshal(entry.Value(), &h) == nil && h.ForwardedAt.IsZero() {
		h.ForwardedAt = time.Now().UTC()
		_, _ = e.requests.Update(ctx, id, mustJSON(h), entry.Revision())
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
