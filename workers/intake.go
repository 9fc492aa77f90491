package workers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// DeskCredentialStore is what intake needs of the database to authenticate
// desks.
type DeskCredentialStore interface {
	// AuthenticateDesk finds the credential in force that token is, with
	// the generation of revocations it was read at, or
	// events.ErrUnauthenticated.
	AuthenticateDesk(ctx context.Context, token string) (events.DeskAuthentication, error)
	// DeskCredentialGeneration counts the changes to credentials'
	// revocations and expiries so far.
	DeskCredentialGeneration(ctx context.Context) (int64, error)
	// NoteDeskCredentialsUsed records when credentials, by key, were last
	// used.
	NoteDeskCredentialsUsed(ctx context.Context, used map[string]time.Time) error
}

// IntakeStore is what intake needs of the database.
type IntakeStore interface {
	DeskCredentialStore
	ClaimKey(ctx context.Context, c events.KeyClaim) (id string, published bool, err error)
	MarkPublished(ctx context.Context, requestID string, message []byte) error
}

// Publisher stores a message in JetStream and returns once it is stored.
type Publisher interface {
	Publish(ctx context.Context, out natsbus.Outgoing) error
}

// IntakeConfig configures Intake.
type IntakeConfig struct {
	// Store for desks and idempotency keys. Required.
	Store IntakeStore
	// FailedAuth counts failed authentications by source address and
	// refuses an address that failed too often before its credential is
	// looked up (a *ratelimit.Buckets). Optional: without it none is.
	FailedAuth *ratelimit.Buckets
	// Publisher of submitted requests. Required.
	Publisher Publisher
	// Catalog to validate submissions against, as it stands at each
	// request. Required.
	Catalog Catalogs
	// PublishTimeout bounds the wait for JetStream to store a request; past
	// it the desk gets 503 and retries with the same key. Default 5 seconds.
	PublishTimeout time.Duration
	// DeskCacheTTL is how long a desk's credential is trusted without
	// reading it again, unless a revocation comes first (see
	// DeskRevocationCheck). Default 30 seconds.
	DeskCacheTTL time.Duration
	// DeskRevocationCheck is how often intake asks the database whether
	// any desk credential was revoked or shortened since it last asked
	// (one row read, whatever the number of desks); when one was, it
	// forgets every credential it trusted. A revocation takes effect on
	// every intake process within about twice this. Default 1 second.
	DeskRevocationCheck time.Duration
	// Limits keeps each desk within its share. Optional: without it no
	// desk is limited.
	Limits DeskAdmission
	// Metrics counts accepted submissions. Optional.
	Metrics *Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Intake is the path every submission takes, whatever API brought it (the
// desk API, Open311): it authenticates desks,
// validates submissions against the catalogue, binds each to its
// idempotency key, and returns only once JetStream has stored the request.
// It is safe for concurrent use and holds no state that other intake
// processes need; the APIs over HTTP are packages of their own that call
// it.
type Intake struct {
	cfg   IntakeConfig
	desks *deskCache
}

// NewIntake validates cfg and returns the intake.
func NewIntake(cfg IntakeConfig) (*Intake, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Catalog == nil {
		return nil, errors.New("new intake: Store, Publisher and Catalog are required")
	}
	cfg.DeskCacheTTL = cmp.Or(cfg.DeskCacheTTL, 30*time.Second)
	cfg.DeskRevocationCheck = cmp.Or(cfg.DeskRevocationCheck, time.Second)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Intake{cfg: cfg, desks: newDeskCache(cfg.Store, cfg.DeskCacheTTL, cfg.DeskRevocationCheck, cfg.Logger)}, nil
}

// Authenticate returns the desk whose credential token is, for a caller at
// remoteAddr (host and port, as http.Request.RemoteAddr has it), or an
// error wrapping events.ErrUnauthenticated when there is none in force (an
// empty token included), counted against the caller's address; an address
// that failed too often is refused with an *events.Throttled before its
// token is looked at. A credential is trusted for DeskCacheTTL without
// reading it again, as long as no desk credential is revoked or shortened
// meanwhile (checked every DeskRevocationCheck); its use is recorded about
// once a minute, off the request's path.
func (in *Intake) Authenticate(ctx context.Context, remoteAddr, token string) (events.Desk, error) {
	address := ratelimit.Host(remoteAddr)
	if empty, wait := in.cfg.FailedAuth.Empty(address, time.Now()); empty {
		return events.Desk{}, &events.Throttled{Limit: events.LimitFailedAuth, RetryAfter: wait}
	}
	desk := events.Desk{}
	err := fmt.Errorf("authenticate: no credential: %w", events.ErrUnauthenticated)
	if token != "" {
		desk, err = in.desks.authenticate(ctx, token)
	}
	if errors.Is(err, events.ErrUnauthenticated) {
		in.cfg.FailedAuth.Take(address, time.Now())
	}
	return desk, err
}

// Accept is the one path every submission takes, whatever API it came by:
// it validates sub against the catalogue in force, binds it to the desk's
// idempotency key, and publishes it, returning once JetStream has stored it.
// An empty key is derived from the submission itself: the same submission
// from the same desk on the same day (UTC) is the same request.
//
// It returns the request's ID and service. The error is a
// *events.FieldError when the submission does not fit the service,
// events.ErrIdempotencyConflict when the key was bound to another body, and
// wraps events.ErrUnavailable when the request could not be stored now (the
// caller may retry with the same key); any other error is a fault of
// spotflow's.
func (in *Intake) Accept(ctx context.Context, desk events.Desk, key string, sub *events.Submission) (string, *events.Service, error) {
	svc, err := in.cfg.Catalog.Current().Validate(sub)
	if err != nil {
		return "", nil, err
	}
	if in.cfg.Limits != nil {
		if err := in.cfg.Limits.Admit(desk.ID, time.Now()); err != nil {
			return "", nil, err
		}
	}
	canonical, err := canonicalOf(sub)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode submission: %w", err)
	}
	now := time.Now().UTC()
	if key == "" {
		sum := sha256.Sum256(canonical)
		key = "derived:" + now.Format(time.DateOnly) + ":" + hex.EncodeToString(sum[:])
	}
	id, published, err := in.cfg.Store.ClaimKey(ctx, events.KeyClaim{
		DeskID: desk.ID, Key: key, ServiceCode: sub.ServiceCode, Body: canonical, NewID: events.NewID(now),
	})
	switch {
	case errors.Is(err, events.ErrIdempotencyConflict):
		return "", nil, err
	case err != nil:
		in.cfg.Logger.Error("intake: claim idempotency key", "desk", desk.ID, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: %w", err))
	}
	if published {
		in.accepted(desk, sub)
		return id, svc, nil
	}
	req := events.RequestOf(desk, sub, id, now)
	message, err := json.Marshal(req)
	if err != nil {
		return "", nil, fmt.Errorf("accept: encode request: %w", err)
	}
	out := natsbus.Outgoing{Subject: events.RequestSubject(desk.Municipality, desk.ID), ID: id, Value: json.RawMessage(message)}
	publishCtx, cancel := context.WithTimeout(ctx, in.cfg.PublishTimeout)
	err = in.cfg.Publisher.Publish(publishCtx, out)
	cancel()
	if err != nil {
		in.cfg.Logger.Error("intake: publish request", "desk", desk.ID, "request", id, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: publish request %s: %w", id, err))
	}
	if err := in.cfg.Store.MarkPublished(ctx, id, message); err != nil {
		// JetStream has it, but until Postgres knows, the reconciler
		// could not re-drive it: the desk retries with the same key,
		// which publishes it again (deduplicated) and marks it.
		in.cfg.Logger.Error("intake: mark request published", "request", id, "err", err)
		return "", nil, events.Unavailable(fmt.Errorf("accept: mark request %s published: %w", id, err))
	}
	if in.cfg.Limits != nil {
		in.cfg.Limits.Accepted(desk.ID)
	}
	in.accepted(desk, sub)
	return id, svc, nil
}

// accepted counts an accepted submission, unless it is practice, which
// counts nowhere.
func (in *Intake) accepted(desk events.Desk, sub *events.Submission) {
	if sub.Practice == nil {
		in.cfg.Metrics.accepted(desk.Municipality, sub.ServiceCode)
	}
}

// canonicalOf is the body an idempotency key is bound to: the submission
// as its JSON, with the practice scenario of a training request.
func canonicalOf(sub *events.Submission) ([]byte, error) {
	if sub.Practice == nil {
		return json.Marshal(sub)
	}
	return json.Marshal(struct {
		*events.Submission
		Practice *events.Practice `json:"practice"`
	}{sub, sub.Practice})
}

// PublishStatus stores a status event an agency reported over HTTPS on the
// agency's status subject, with its ID as the deduplication ID, and returns
// once JetStream has stored it (or PublishTimeout has passed).
func (in *Intake) PublishStatus(ctx context.Context, ev events.StatusEvent) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.PublishTimeout)
	defer cancel()
	err := in.cfg.Publisher.Publish(ctx, natsbus.Outgoing{Subject: events.StatusSubject(ev.Agency), ID: ev.ID, Value: ev})
	if err != nil {
		return fmt.Errorf("publish %s's status event %s: %w", ev.Agency, ev.ID, err)
	}
	return nil
}

// deskCache keeps the desk credentials intake has checked, so that a
// submission does not read the database to authenticate its desk. It stays
// right without a query per request:
//   - A credential's expiry is kept with it and checked at every use.
//   - Every check interval, one request past it starts a read of the count
//     of revocations and expiry changes (DeskCredentialGeneration) in the
//     background, and goes on; when the count moved, every credential is
//     forgotten and read again at its next use. After a quiet spell longer
//     than two intervals, the first request waits for that read instead.
//   - Uses are noted in memory, at most once a minute per credential, and
//     written by the same background read.
//
// It is safe for concurrent use. Its background work runs only while
// there is something to do, one at a time (like the store's group commits).
type deskCache struct {
	store DeskCredentialStore
	ttl   time.Duration // a credential is read again after it
	every time.Duration // how often the generation is read
	log   *slog.Logger

	check sync.Mutex // one generation read at a time

	mu        sync.Mutex
	entries   map[[sha256.Size]byte]*cachedDesk
	gen       int64     // the generation the entries are good for
	checked   time.Time // when the last successful read of it started
	tried     time.Time // when the last read of it started
	used      map[string]time.Time
	scheduled bool // a background read is scheduled or running
	failing   bool // the last read failed
}

type cachedDesk struct {
	auth  events.DeskAuthentication
	until time.Time // read again from here on
	noted time.Time // use last noted (or recorded in the database)
}

// deskUseEvery is how often a credential's use is recorded.
const deskUseEvery = time.Minute

func newDeskCache(store DeskCredentialStore, ttl, every time.Duration, log *slog.Logger) *deskCache {
	return &deskCache{store: store, ttl: ttl, every: every, log: log, entries: make(map[[sha256.Size]byte]*cachedDesk)}
}

func (c *deskCache) authenticate(ctx context.Context, token string) (events.Desk, error) {
	now := time.Now()
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	// At most one read an interval, even while reads fail.
	if stale, due := now.Sub(c.checked), now.Sub(c.tried) > c.every; due && stale > 2*c.every {
		// Quiet for a while: nobody checked for revocations lately.
		c.mu.Unlock()
		c.refresh(ctx, now)
		c.mu.Lock()
	} else if due && stale > c.every {
		c.schedule(0)
	}
	if e, ok := c.entries[key]; ok && now.Before(e.until) && (e.auth.ExpiresAt.IsZero() || now.Before(e.auth.ExpiresAt)) {
		c.noteUse(e, now)
		c.mu.Unlock()
		return e.auth.Desk, nil
	}
	c.mu.Unlock()

	auth, err := c.store.AuthenticateDesk(ctx, token)
	if err != nil {
		return events.Desk{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if auth.Generation > c.gen {
		// A credential changed since the last check: trust none read before.
		clear(c.entries)
		c.gen = auth.Generation
	}
	if auth.Generation == c.gen {
		if len(c.entries) >= 100000 {
			clear(c.entries)
		}
		e := &cachedDesk{auth: auth, until: now.Add(c.ttl), noted: auth.LastUsedAt}
		c.entries[key] = e
		c.noteUse(e, now)
	}
	return auth.Desk, nil
}

// noteUse notes that e was used at now, if its use was not noted in the
// last minute, to be recorded in the background. c.mu is held.
func (c *deskCache) noteUse(e *cachedDesk, now time.Time) {
	if now.Sub(e.noted) < deskUseEvery {
		return
	}
	e.noted = now
	if c.used == nil {
		c.used = make(map[string]time.Time)
	}
	c.used[e.auth.Key] = now
	c.schedule(c.every)
}

// schedule starts a background refresh after delay unless one is
// scheduled or running. c.mu is held.
func (c *deskCache) schedule(delay time.Duration) {
	if c.scheduled {
		return
	}
	c.scheduled = true
	time.AfterFunc(delay, c.background)
}

// background records the uses noted, then reads the generation.
func (c *deskCache) background() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.mu.Lock()
	used := c.used
	c.used = nil
	c.mu.Unlock()
	if err := c.store.NoteDeskCredentialsUsed(ctx, used); err != nil {
		c.log.Warn("intake: record desk credentials' last use; retrying", "err", err)
		c.mu.Lock()
		for k, at := range used {
			if _, newer := c.used[k]; !newer {
				if c.used == nil {
					c.used = make(map[string]time.Time)
				}
				c.used[k] = at
			}
		}
		c.mu.Unlock()
	}
	c.refresh(ctx, time.Now())
	c.mu.Lock()
	c.scheduled = false
	if len(c.used) > 0 {
		c.schedule(c.every)
	}
	c.mu.Unlock()
}

// refresh reads the generation, unless another read started since asked,
// and forgets every credential when it moved.
func (c *deskCache) refresh(ctx context.Context, asked time.Time) {
	c.check.Lock()
	defer c.check.Unlock()
	c.mu.Lock()
	if !c.tried.Before(asked) {
		c.mu.Unlock()
		return
	}
	start := time.Now()
	c.tried = start
	c.mu.Unlock()
	gen, err := c.store.DeskCredentialGeneration(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if !c.failing {
			c.log.Warn("intake: check desk credentials for revocations; trusting those checked before, retrying every interval", "err", err)
		}
		c.failing = true
		return
	}
	if c.failing {
		c.log.Info("intake: checking desk credentials for revocations again")
		c.failing = false
	}
	if gen != c.gen {
		clear(c.entries)
		c.gen = gen
	}
	c.checked = start
}
