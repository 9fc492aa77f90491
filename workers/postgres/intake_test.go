package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func newDesk(t *testing.T, s *postgres.Store, municipality string) events.Desk {
	t.Helper()
	d, _, err := s.CreateDesk(t.Context(), municipality, "Desk of "+municipality)
	if err != nil {
		t.Fatalf("CreateDesk: %v", err)
	}
	return d
}

func claim(desk events.Desk, key, body string) events.KeyClaim {
	return events.KeyClaim{
		DeskID:      desk.ID,
		Key:         key,
		ServiceCode: "birth-certificate",
		Body:        []byte(body),
		NewID:       events.NewID(time.Now()),
	}
}

func TestClaimKey_FirstClaimBindsTheNewID(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	c := claim(desk, "key-1", `{"service_code":"birth-certificate"}`)
	id, published, err := s.ClaimKey(ctx, c)
	if err != nil {
		t.Fatalf("ClaimKey: %v", err)
	}
	if id != c.NewID || published {
		t.Errorf("first ClaimKey = %q, %v; want %q, false", id, published, c.NewID)
	}
}

func TestClaimKey_SameKeyAndBodyReturnTheFirstRequest(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	const body = `{"service_code":"birth-certificate","attributes":{"format":"paper"}}`
	first := claim(desk, "key-1", body)
	id, _, err := s.ClaimKey(ctx, first)
	if err != nil {
		t.Fatal(err)
	}

	// Before JetStream stored it: the same request, still to be published.
	retry := claim(desk, "key-1", body)
	got, published, err := s.ClaimKey(ctx, retry)
	if err != nil || got != id || published {
		t.Errorf("retry before publishing = %q, %v, %v; want %q, false, nil", got, published, err, id)
	}

	if err := s.MarkPublished(ctx, id, []byte(`{}`)); err != nil {
		t.Fatalf("MarkPublished: %v", err)
	}
	retry = claim(desk, "key-1", body)
	got, published, err = s.ClaimKey(ctx, retry)
	if err != nil || got != id || !published {
		t.Errorf("retry after publishing = %q, %v, %v; want %q, true, nil", got, published, err, id)
	}
}

func TestClaimKey_SameKeyWithAnotherBodyConflicts(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	id, _, err := s.ClaimKey(ctx, claim(desk, "key-1", `{"format":"paper"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, published := range []bool{false, true} {
		if published {
			if err := s.MarkPublished(ctx, id, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := s.ClaimKey(ctx, claim(desk, "key-1", `{"format":"online"}`))
		if !errors.Is(err, events.ErrIdempotencyConflict) {
			t.Errorf("published=%v: ClaimKey with another body = %q, %v; want events.ErrIdempotencyConflict", published, got, err)
		}
		if got != "" {
			t.Errorf("published=%v: conflicting ClaimKey revealed request %q", published, got)
		}
	}
	// The conflict did not rebind the key.
	got, _, err := s.ClaimKey(ctx, claim(desk, "key-1", `{"format":"paper"}`))
	if err != nil || got != id {
		t.Errorf("original body after a conflict = %q, %v; want %q", got, err, id)
	}
}

func TestClaimKey_KeysAreIndependentPerDeskAndPerKey(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	lisboa, porto := newDesk(t, s, "lisboa"), newDesk(t, s, "porto")
	const body = `{"format":"paper"}`

	first := claim(lisboa, "shared-key", body)
	id1, _, err := s.ClaimKey(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPublished(ctx, id1, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    events.KeyClaim
	}{
		{"same key and body on another desk", claim(porto, "shared-key", body)},
		{"same key, other body on another desk", claim(porto, "shared-key-2", `{"format":"online"}`)},
		{"another key with the same body on the same desk", claim(lisboa, "other-key", body)},
	}
	for _, tt := range tests {
		id, published, err := s.ClaimKey(ctx, tt.c)
		if err != nil || id != tt.c.NewID || published {
			t.Errorf("%s: ClaimKey = %q, %v, %v; want a new request %q, unpublished", tt.name, id, published, err, tt.c.NewID)
		}
	}
}

func TestClaimKey_UnknownDeskIsRefused(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	id, _, err := s.ClaimKey(withTimeout(t), claim(events.Desk{ID: "desk-nobody"}, "k", "{}"))
	if err == nil || errors.Is(err, events.ErrIdempotencyConflict) {
		t.Errorf("ClaimKey for a desk that does not exist = %q, %v; want a plain error", id, err)
	}
}

func TestClaimKey_ConcurrentRetriesAgreeOnOneRequest(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "faro")
	const n = 8
	claims := make([]events.KeyClaim, n)
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range claims {
		claims[i] = claim(desk, "double-click", `{"format":"paper"}`)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], _, errs[i] = s.ClaimKey(ctx, claims[i])
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("claim %d got request %q, claim 0 got %q", i, ids[i], ids[0])
		}
		if ids[i] == claims[i].NewID {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d claims bound their own ID, want exactly 1", winners)
	}
}

func TestClaimKey_ConcurrentDifferentBodiesLetOneWin(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "faro")
	bodies := []string{`{"format":"paper"}`, `{"format":"online"}`, `{"format":"paper","x":1}`, `{}`}
	errs := make([]error, len(bodies))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Go(func() {
			<-start
			_, _, errs[i] = s.ClaimKey(ctx, claim(desk, "same-key", b))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, events.ErrIdempotencyConflict):
			t.Errorf("body %d: %v, want nil or events.ErrIdempotencyConflict", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d different bodies claimed the same key, want exactly 1", ok)
	}
}

func TestMarkPublished_KeepsTheFirstPublicationTime(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	c := claim(desk, "k", "{}")
	if _, _, err := s.ClaimKey(ctx, c); err != nil {
		t.Fatal(err)
	}
	publishedAt := func() *time.Time {
		var at *time.Time
		if err := s.Pool().QueryRow(ctx, `SELECT published_at FROM intake_keys WHERE request_id = $1`, c.NewID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if at := publishedAt(); at != nil {
		t.Fatalf("a fresh claim is marked published at %v", at)
	}
	if err := s.MarkPublished(ctx, c.NewID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	first := publishedAt()
	if first == nil {
		t.Fatal("MarkPublished did not record a time")
	}
	// A later mark, in a later transaction, must not move it.
	if err := s.MarkPublished(ctx, c.NewID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if second := publishedAt(); second == nil || !second.Equal(*first) {
		t.Errorf("second MarkPublished moved published_at from %v to %v", first, second)
	}
	if err := s.MarkPublished(ctx, "no-such-request", []byte(`{}`)); err != nil {
		t.Errorf("MarkPublished of an unknown request: %v", err)
	}
}

func TestClaimKey_ClaimsMadeTogetherEachGetTheirOwnAnswer(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desks := []events.Desk{newDesk(t, s, "faro"), newDesk(t, s, "braga")}
	const n = 300
	claims := make([]events.KeyClaim, n)
	for i := range claims {
		claims[i] = claim(desks[i%2], fmt.Sprintf("key-%d", i/2), fmt.Sprintf(`{"n":%d}`, i))
	}
	// A claim of a desk that does not exist fails alone.
	ghost := claim(events.Desk{ID: "desk-nobody"}, "k", "{}")
	type answer struct {
		id        string
		published bool
		err       error
	}
	claimAll := func(reuse func(i int) events.KeyClaim) []answer {
		out := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				out[i].id, out[i].published, out[i].err = s.ClaimKey(ctx, reuse(i))
			})
		}
		var ghostErr error
		wg.Go(func() { <-start; _, _, ghostErr = s.ClaimKey(ctx, ghost) })
		close(start)
		wg.Wait()
		if ghostErr == nil {
			t.Error("a claim for a desk that does not exist succeeded")
		}
		return out
	}
	first := claimAll(func(i int) events.KeyClaim { return claims[i] })
	for i, a := range first {
		if a.err != nil || a.id != claims[i].NewID || a.published {
			t.Fatalf("first claim %d = %q, %v, %v; want its own new ID, unpublished", i, a.id, a.published, a.err)
		}
	}
	if err := s.MarkPublished(ctx, claims[0].NewID, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// The same keys again: same bodies bind the first requests; a changed
	// body conflicts.
	again := claimAll(func(i int) events.KeyClaim {
		c := claims[i]
		c.NewID = events.NewID(time.Now())
		if i%3 == 0 {
			c.Body = []byte(`{"changed":true}`)
		}
		return c
	})
	for i, a := range again {
		switch {
		case i%3 == 0 && !errors.Is(a.err, events.ErrIdempotencyConflict):
			t.Errorf("claim %d with a changed body = %v, want a conflict", i, a.err)
		case i%3 != 0 && (a.err != nil || a.id != claims[i].NewID || a.published != (i == 0)):
			t.Errorf("repeated claim %d = %q, %v, %v; want %q, published %v", i, a.id, a.published, a.err, claims[i].NewID, i == 0)
		}
	}
}
