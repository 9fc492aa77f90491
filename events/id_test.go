package events_test

import (
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewID_HasTheUUIDv7Layout(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 15, 9, 26, 535_897_932, time.UTC)
	for range 1000 {
		id := events.NewID(now)
		if !uuidV7.MatchString(id) {
			t.Fatalf("NewID = %q, not a lowercase UUIDv7 (version nibble 7, variant 10xx)", id)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
		if err != nil || len(b) != 16 {
			t.Fatalf("NewID = %q does not decode to 16 bytes: %v", id, err)
		}
		if v := b[6] >> 4; v != 7 {
			t.Fatalf("NewID = %q has version %d, want 7", id, v)
		}
		if variant := b[8] >> 6; variant != 0b10 {
			t.Fatalf("NewID = %q has variant bits %02b, want 10", id, variant)
		}
		var ms int64
		for _, c := range b[:6] {
			ms = ms<<8 | int64(c)
		}
		if ms != now.UnixMilli() {
			t.Fatalf("NewID = %q carries %d ms, want %d", id, ms, now.UnixMilli())
		}
	}
}

func TestNewID_IsUniqueOverManyCalls(t *testing.T) {
	t.Parallel()
	now := time.Now() // the same millisecond for all: only the random bits differ
	const n = 200_000
	seen := make(map[string]struct{}, n)
	for range n {
		id := events.NewID(now)
		if _, dup := seen[id]; dup {
			t.Fatalf("NewID returned %q twice", id)
		}
		seen[id] = struct{}{}
	}
}

func TestNewID_SortsByTimeAcrossMilliseconds(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []time.Duration{0, time.Millisecond, 2 * time.Millisecond, time.Second, time.Hour, 24 * 365 * time.Hour}
	var ids []string
	for _, d := range steps {
		// Several IDs per instant, so the random bits get every chance to
		// break the order if the time prefix did not dominate.
		for range 50 {
			ids = append(ids, events.NewID(base.Add(d)))
		}
	}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if i/50 < j/50 && ids[i] >= ids[j] {
				t.Fatalf("ID %q minted %v later sorts before %q", ids[j], steps[j/50]-steps[i/50], ids[i])
			}
		}
	}
}

func TestNewID_AtTheEpochHasAZeroTimePrefix(t *testing.T) {
	t.Parallel()
	id := events.NewID(time.Unix(0, 0))
	if !strings.HasPrefix(id, "00000000-0000-7") {
		t.Errorf("NewID(epoch) = %q, want a zero time prefix", id)
	}
}
