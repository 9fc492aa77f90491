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
)

// IntakeStore is what intake needs of the database.
type IntakeStore interface {
	DeskByToken(ctx context.Context, token string) (events.Desk, error)
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
	// Publisher of submitted requests. Required.
	Publisher Publisher
	// Catalog to validate submissions against, as it stands at each
	// request. Required.
	Catalog Catalogs
	// PublishTimeout bounds the wait for JetStream to store a request; past
	// it the desk gets 503 and retries with the same key. Default 5 seconds.
	PublishTimeout time.Duration
	// DeskCacheTTL is how long a desk's credential is trusted without asking
	// the database again. Default 30 seconds.
	DeskCacheTTL time.Duration
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
	cfg IntakeConfig

	mu    sync.Mutex
	desks map[string]cachedDesk
}

type cachedDesk struct {
	desk    events.Desk
	expires time.Time
}

// NewIntake validates cfg and returns the intake.
func NewIntake(cfg IntakeConfig) (*Intake, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Catalog == nil {
		return nil, errors.New("new intake: Store, Publisher and Catalog are required")
	}
	cfg.DeskCacheTTL = cmp.Or(cfg.DeskCacheTTL, 30*time.Second)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Intake{cfg: cfg, desks: make(map[string]cachedDesk)}, nil
}

// Authenticate returns the desk whose credential token is, or an error
// wrapping events.ErrUnauthenticated when there is none. A desk is trusted
// for DeskCacheTTL without asking the database again.
func (in *Intake) Authenticate(ctx context.Context, token string) (events.Desk, error) {
	now := time.Now()
	in.mu.Lock()
	c, ok := in.desks[token]
	in.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.desk, nil
	}
	desk, err := in.cfg.Store.DeskByToken(ctx, token)
	if err != nil {
		return desk, err
	}
	in.mu.Lock()
	if len(in.desks) > 100000 {
		clear(in.desks)
	}
	in.desks[token] = cachedDesk{desk: desk, expires: now.Add(in.cfg.DeskCacheTTL)}
	in.mu.Unlock()
	return desk, nil
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
	canonical, err := json.Marshal(sub)
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
		in.cfg.Metrics.accepted(desk.Municipality, sub.ServiceCode)
		return id, svc, nil
	}
	req := events.Request{
		Schema:       events.SchemaRequest,
		ID:           id,
		DeskID:       desk.ID,
		Municipality: desk.Municipality,
		Mediator:     sub.Mediator,
		ServiceCode:  sub.ServiceCode,
		VisitID:      sub.VisitID,
		Citizen:      *sub.Citizen,
		Attributes:   sub.Attributes,
		SubmittedAt:  now,
	}
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
	in.cfg.Metrics.accepted(desk.Municipality, sub.ServiceCode)
	return id, svc, nil
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
