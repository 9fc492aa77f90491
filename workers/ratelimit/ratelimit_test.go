package ratelimit_test

import (
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/ratelimit"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func TestBuckets_TakeABurstThenOneTokenPerInterval(t *testing.T) {
	t.Parallel()
	b := ratelimit.New(2, 3) // 2 a second, 3 at once
	for i := range 3 {
		if ok, _ := b.Take("desk-a", t0); !ok {
			t.Fatalf("take %d of the burst refused", i+1)
		}
	}
	ok, wait := b.Take("desk-a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth take at once: %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := b.Take("desk-b", t0); !ok {
		t.Error("another key's bucket was emptied too")
	}
	// A refused take takes nothing: half a second later one token is there.
	if ok, _ := b.Take("desk-a", t0.Add(500*time.Millisecond)); !ok {
		t.Error("a token was not there half a second later")
	}
	if ok, _ := b.Take("desk-a", t0.Add(500*time.Millisecond)); ok {
		t.Error("two tokens were there half a second later")
	}
}

func TestBuckets_EmptyLooksWithoutTaking(t *testing.T) {
	t.Parallel()
	b := ratelimit.New(1, 2)
	if empty, _ := b.Empty("10.0.0.1", t0); empty {
		t.Error("a key never seen is empty")
	}
	b.Take("10.0.0.1", t0)
	if empty, _ := b.Empty("10.0.0.1", t0); empty {
		t.Error("one of two tokens taken, and the bucket is empty")
	}
	b.Take("10.0.0.1", t0)
	for range 3 {
		if empty, wait := b.Empty("10.0.0.1", t0); !empty || wait != time.Second {
			t.Errorf("both tokens taken: empty %v, wait %v; want empty for 1s", empty, wait)
		}
	}
	if empty, _ := b.Empty("10.0.0.1", t0.Add(time.Second)); empty {
		t.Error("empty a second later")
	}
}

func TestBuckets_ForgetFullBuckets(t *testing.T) {
	t.Parallel()
	b := ratelimit.New(10, 10)
	for i := range 1000 {
		b.Take(string(rune('a'+i%26))+string(rune('a'+i/26)), t0)
	}
	if b.Len() != 1000 {
		t.Fatalf("%d buckets held, want 1000", b.Len())
	}
	// A second later every bucket is full again; the next take sweeps.
	b.Take("late", t0.Add(2*time.Second))
	if b.Len() != 1 {
		t.Errorf("%d buckets held after they filled, want the one in use", b.Len())
	}
}

func TestBuckets_ZeroRateIsNoLimit(t *testing.T) {
	t.Parallel()
	b := ratelimit.New(0, 1)
	for range 100 {
		if ok, _ := b.Take("desk", t0); !ok {
			t.Fatal("a take refused without a limit")
		}
	}
}

func TestHost_IsTheAddressWithoutItsPort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"192.0.2.7:51234": "192.0.2.7", "[2001:db8::1]:443": "2001:db8::1", "192.0.2.7": "192.0.2.7", "@": "@"} {
		if got := ratelimit.Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuckets_NilIsNoLimit(t *testing.T) {
	t.Parallel()
	var b *ratelimit.Buckets
	if ok, _ := b.Take("192.0.2.7", time.Now()); !ok {
		t.Error("nil buckets refused a token")
	}
	if empty, _ := b.Empty("192.0.2.7", time.Now()); empty {
		t.Error("nil buckets are empty")
	}
}
