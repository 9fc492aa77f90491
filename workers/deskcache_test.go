package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/workertest"
)

// fakeCredentials is a desk credential store in memory that counts what it
// is asked.
type fakeCredentials struct {
	mu          sync.Mutex
	tokens      map[string]events.DeskAuthentication
	gen         int64
	lookups     int
	checks      int
	used        map[string]time.Time
	notes       int
	unreachable bool
}

func newFakeCredentials() *fakeCredentials {
	return &fakeCredentials{tokens: map[string]events.DeskAuthentication{}, used: map[string]time.Time{}}
}

func (f *fakeCredentials) issue(token, desk string, expires time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = events.DeskAuthentication{Desk: events.Desk{ID: desk, Municipality: "lisboa"}, Key: "key-" + token, ExpiresAt: expires}
}

func (f *fakeCredentials) revoke(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, token)
	f.gen++
}

func (f *fakeCredentials) AuthenticateDesk(_ context.Context, token string) (events.DeskAuthentication, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.unreachable {
		return events.DeskAuthentication{}, events.Unavailable(errors.New("database unreachable"))
	}
	a, ok := f.tokens[token]
	if !ok || (!a.ExpiresAt.IsZero() && !time.Now().Before(a.ExpiresAt)) {
		return events.DeskAuthentication{}, events.ErrUnauthenticated
	}
	a.LastUsedAt = f.used[a.Key]
	a.Generation = f.gen
	return a, nil
}

func (f *fakeCredentials) DeskCredentialGeneration(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if f.unreachable {
		return 0, errors.New("database unreachable")
	}
	return f.gen, nil
}

func (f *fakeCredentials) NoteDeskCredentialsUsed(_ context.Context, used map[string]time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(used) > 0 {
		f.notes++
	}
	maps.Copy(f.used, used)
	return nil
}

func (f *fakeCredentials) counts() (lookups, checks, notes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, f.checks, f.notes
}

func (f *fakeCredentials) lastUsed(key string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used[key]
}

func testCache(f *fakeCredentials, every time.Duration) *deskCache {
	return newDeskCache(f, 30*time.Second, every, slog.New(slog.DiscardHandler))
}

func TestDeskCache_AuthenticatesManySubmissionsWithOneLookup(t *testing.T) {
	t.Parallel()
	f := newFakeCredentials()
	f.issue("tok-a", "desk-a", time.Time{})
	c := testCache(f, time.Hour)
	for i := range 1000 {
		d, err := c.authenticate(t.Context(), "tok-a")
		if err != nil || d.ID != "desk-a" {
			t.Fatalf("submission %d: %+v, %v", i, d, err)
		}
	}
	if lookups, checks, _ := f.counts(); lookups != 1 || checks != 1 {
		t.Errorf("1,000 submissions looked the credential up %d times and checked for revocations %d times, want once each", lookups, checks)
	}
	if _, err := c.authenticate(t.Context(), "tok-unknown"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("an unknown token: %v, want unauthenticated", err)
	}
}

func TestDeskCache_ARevocationTakesEffectWithinTwoChecks(t *testing.T) {
	t.Parallel()
	f := newFakeCredentials()
	f.issue("tok-a", "desk-a", time.Time{})
	f.issue("tok-b", "desk-b", time.Time{})
	const every = 50 * time.Millisecond
	// Two intake processes, each with its own cache, one busy, one quiet.
	busy, quiet := testCache(f, every), testCache(f, every)
	for _, c := range []*deskCache{busy, quiet} {
		if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
			t.Fatal(err)
		}
	}
	f.revoke("tok-a")
	revoked := time.Now()
	workertest.WaitFor(t, "the busy intake to refuse the revoked credential", func() error {
		if _, err := busy.authenticate(t.Context(), "tok-a"); err == nil {
			return errors.New("still let in")
		}
		return nil
	})
	if took := time.Since(revoked); took > 2*every+100*time.Millisecond {
		t.Errorf("the busy intake refused the revoked credential after %s, want within about %s", took, 2*every)
	}
	// The quiet one asks before trusting anything once two checks passed.
	time.Sleep(2*every + 10*time.Millisecond)
	if _, err := quiet.authenticate(t.Context(), "tok-a"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the quiet intake's first submission after the revocation: %v, want unauthenticated", err)
	}
	if d, err := busy.authenticate(t.Context(), "tok-b"); err != nil || d.ID != "desk-b" {
		t.Errorf("another desk after the revocation: %+v, %v", d, err)
	}
}

func TestDeskCache_HonoursExpiryWithoutAsking(t *testing.T) {
	t.Parallel()
	f := newFakeCredentials()
	f.issue("tok-a", "desk-a", time.Now().Add(100*time.Millisecond))
	c := testCache(f, time.Hour)
	if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
		t.Fatal(err)
	}
	workertest.WaitFor(t, "the credential to expire", func() error {
		if _, err := c.authenticate(t.Context(), "tok-a"); err == nil {
			return errors.New("still let in")
		}
		return nil
	})
}

func TestDeskCache_RecordsUsesAboutOnceAMinuteOffThePath(t *testing.T) {
	t.Parallel()
	f := newFakeCredentials()
	f.issue("tok-a", "desk-a", time.Time{})
	c := testCache(f, 20*time.Millisecond)
	start := time.Now()
	for range 100 {
		if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
			t.Fatal(err)
		}
	}
	workertest.WaitFor(t, "the use to be recorded", func() error {
		if f.lastUsed("key-tok-a").Before(start) {
			return errors.New("not recorded")
		}
		return nil
	})
	// Forgetting every credential (a revocation elsewhere) does not record
	// a use again within the minute: the store's last use is read back.
	f.revoke("tok-other")
	workertest.WaitFor(t, "the cache to read the credential again after the revocation", func() error {
		if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
			return err
		}
		if lookups, _, _ := f.counts(); lookups < 2 {
			return fmt.Errorf("looked up %d times", lookups)
		}
		return nil
	})
	for range 100 {
		if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a few checks' time, for a wrong second record to show
	if _, _, notes := f.counts(); notes != 1 {
		t.Errorf("200 submissions within a minute recorded the use %d times, want once", notes)
	}
}

func TestDeskCache_KeepsTrustingWhatItCheckedWhileTheDatabaseIsUnreachable(t *testing.T) {
	t.Parallel()
	f := newFakeCredentials()
	f.issue("tok-a", "desk-a", time.Time{})
	const every = 20 * time.Millisecond
	c := testCache(f, every)
	if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.unreachable = true
	f.mu.Unlock()
	time.Sleep(3 * every)
	_, checksBefore, _ := f.counts()
	start := time.Now()
	for range 200 {
		if _, err := c.authenticate(t.Context(), "tok-a"); err != nil {
			t.Fatalf("a checked credential while the database is unreachable: %v", err)
		}
	}
	// At most one check an interval, however many submissions.
	if _, checks, _ := f.counts(); checks-checksBefore > int(time.Since(start)/every)+2 {
		t.Errorf("200 submissions in %s during the outage asked the database %d times, want one every %s at most",
			time.Since(start), checks-checksBefore, every)
	}
	if _, err := c.authenticate(t.Context(), "tok-unknown"); err == nil || errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("an unchecked token during the outage: %v, want the outage", err)
	}
}

// BenchmarkDeskCache_Authenticate measures authenticating a submission's
// desk from the cache, from every core at once, among 500 desks: the cost
// every submission pays.
func BenchmarkDeskCache_Authenticate(b *testing.B) {
	f := newFakeCredentials()
	tokens := make([]string, 500)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("sfd_token-of-desk-%03d-padded-to-a-real-tokens-length", i)
		f.issue(tokens[i], fmt.Sprintf("desk-%d", i), time.Time{})
	}
	c := newDeskCache(f, 30*time.Second, time.Second, slog.New(slog.DiscardHandler))
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.authenticate(context.Background(), tokens[i%len(tokens)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
