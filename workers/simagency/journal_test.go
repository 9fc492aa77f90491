package simagency_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/simagency"
)

func decided(s events.Status) func() events.Status { return func() events.Status { return s } }

func openJournal(t *testing.T, dir, agency string) *simagency.Journal {
	t.Helper()
	j, err := simagency.OpenJournal(dir, agency)
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func apply(t *testing.T, j *simagency.Journal, key string, s events.Status) (events.Status, bool) {
	t.Helper()
	got, dup, err := j.Apply(key, decided(s))
	if err != nil {
		t.Fatalf("apply %s: %v", key, err)
	}
	return got, dup
}

func TestJournal_SurvivesReopen(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	j := openJournal(t, dir, "tax")
	if s, dup := apply(t, j, "r1.tax", events.StatusCompleted); s != events.StatusCompleted || dup {
		t.Fatalf("first apply = %s, %v; want completed, not a duplicate", s, dup)
	}
	apply(t, j, "r2.tax", events.StatusRejected)
	if s, dup := apply(t, j, "r1.tax", events.StatusRejected); s != events.StatusCompleted || !dup {
		t.Fatalf("repeated apply = %s, %v; want the stored completed, a duplicate", s, dup)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	j = openJournal(t, dir, "tax")
	if j.Applied() != 2 || j.Duplicates() != 1 {
		t.Fatalf("reopened journal: applied %d, duplicates %d; want 2 and 1", j.Applied(), j.Duplicates())
	}
	called := false
	s, dup, err := j.Apply("r2.tax", func() events.Status { called = true; return events.StatusCompleted })
	if err != nil || s != events.StatusRejected || !dup || called {
		t.Fatalf("apply after reopen = %s, %v, %v (decide called: %v); want the stored rejected, a duplicate, decide not called", s, dup, err, called)
	}
	if j.Duplicates() != 2 {
		t.Errorf("duplicates = %d, want 2", j.Duplicates())
	}
}

func TestJournal_IgnoresATornLastLine(t *testing.T) {
	t.Parallel()

	good := `{"key":"r1.tax","status":"completed","at":"2026-03-01T09:30:00Z"}` + "\n" +
		`{"key":"r1.tax","duplicate":true,"at":"2026-03-01T09:30:01Z"}` + "\n"
	tests := []struct {
		name string
		torn string
	}{
		{"a line cut off mid-record is dropped", `{"key":"r2.tax","sta`},
		{"a whole record without its newline is dropped", `{"key":"r2.tax","status":"completed","at":"2026-03-01T09:30:02Z"}`},
		{"zero bytes left by a power loss are dropped", "\x00\x00\x00\x00"},
		{"a newline-terminated line that does not parse is dropped when last", "{\"key\":\"r2.ta\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "tax.jsonl")
			if err := os.WriteFile(path, []byte(good+tt.torn), 0o644); err != nil {
				t.Fatal(err)
			}
			j := openJournal(t, dir, "tax")
			if j.Applied() != 1 || j.Duplicates() != 1 {
				t.Fatalf("applied %d, duplicates %d; want 1 and 1", j.Applied(), j.Duplicates())
			}
			if _, dup := apply(t, j, "r2.tax", events.StatusRejected); dup {
				t.Fatal("the torn line's work item counts as applied")
			}
			if err := j.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			logs, err := simagency.ReadJournals(dir)
			if err != nil {
				t.Fatalf("the journal no longer reads cleanly after an append: %v", err)
			}
			want := simagency.AgencyLog{
				"r1.tax": {Status: events.StatusCompleted, Applied: 1, Duplicates: 1},
				"r2.tax": {Status: events.StatusRejected, Applied: 1},
			}
			if fmt.Sprint(logs["tax"]) != fmt.Sprint(want) {
				t.Fatalf("log = %v, want %v", logs["tax"], want)
			}
		})
	}
}

func TestJournal_RefusesACorruptLineBeforeTheLast(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	data := "not json\n" + `{"key":"r1.tax","status":"completed","at":"2026-03-01T09:30:00Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tax.jsonl"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if j, err := simagency.OpenJournal(dir, "tax"); err == nil {
		j.Close()
		t.Fatal("OpenJournal accepted a corrupt line followed by others")
	}
	if _, err := simagency.ReadJournals(dir); err == nil {
		t.Fatal("ReadJournals accepted a corrupt line followed by others")
	}
}

func TestJournal_AppliesAKeyOnceUnderConcurrentDeliveries(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	j := openJournal(t, dir, "tax")
	const callers = 50
	var decides, firsts atomic.Int32
	statuses := make([]events.Status, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			s, dup, err := j.Apply("r1.tax", func() events.Status {
				decides.Add(1)
				return events.StatusCompleted
			})
			if err != nil {
				t.Errorf("apply: %v", err)
			}
			if !dup {
				firsts.Add(1)
			}
			statuses[i] = s
		})
	}
	wg.Wait()
	if decides.Load() != 1 || firsts.Load() != 1 {
		t.Fatalf("decide called %d times, %d callers saw a first application; want 1 and 1", decides.Load(), firsts.Load())
	}
	for i, s := range statuses {
		if s != events.StatusCompleted {
			t.Fatalf("caller %d got %q, want completed", i, s)
		}
	}
	if j.Applied() != 1 || j.Duplicates() != callers-1 {
		t.Fatalf("applied %d, duplicates %d; want 1 and %d", j.Applied(), j.Duplicates(), callers-1)
	}
}

func TestJournal_RecordsEveryConcurrentApplication(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	j := openJournal(t, dir, "tax")
	const keys = 300
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			if _, _, err := j.Apply(fmt.Sprintf("r%d.tax", i), decided(events.StatusCompleted)); err != nil {
				t.Errorf("apply: %v", err)
			}
		})
	}
	wg.Wait()
	// Read the file while the journal is still open: every line Apply
	// returned for is already written.
	logs, err := simagency.ReadJournals(dir)
	if err != nil {
		t.Fatalf("read journals: %v", err)
	}
	if got := logs["tax"].Applied(); got != keys || j.Applied() != keys {
		t.Fatalf("file records %d applications, journal %d; want %d", got, j.Applied(), keys)
	}
	for key, k := range logs["tax"] {
		if k.Applied != 1 || k.Duplicates != 0 {
			t.Fatalf("%s: %+v, want applied once", key, k)
		}
	}
}

func TestJournal_RefusesWorkAfterClose(t *testing.T) {
	t.Parallel()

	j := openJournal(t, t.TempDir(), "tax")
	if err := j.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, _, err := j.Apply("r1.tax", decided(events.StatusCompleted)); !errors.Is(err, simagency.ErrJournalClosed) {
		t.Fatalf("apply after close: err = %v, want ErrJournalClosed", err)
	}
}

func TestJournal_RefusesBadInput(t *testing.T) {
	t.Parallel()

	t.Run("an agency code that is not a token is refused", func(t *testing.T) {
		t.Parallel()
		for _, agency := range []string{"", "../tax", "Tax", "a/b"} {
			if j, err := simagency.OpenJournal(t.TempDir(), agency); err == nil {
				j.Close()
				t.Errorf("OpenJournal(%q) succeeded", agency)
			}
		}
	})
	t.Run("an empty key or an unknown decided status is refused and not recorded", func(t *testing.T) {
		t.Parallel()
		j := openJournal(t, t.TempDir(), "tax")
		if _, _, err := j.Apply("", decided(events.StatusCompleted)); err == nil {
			t.Error("empty key accepted")
		}
		if _, _, err := j.Apply("r1.tax", decided("done")); err == nil {
			t.Error("unknown status accepted")
		}
		if j.Applied() != 0 {
			t.Errorf("applied = %d, want 0", j.Applied())
		}
	})
}

func TestReadJournals_CountsApplicationsPerAgencyAndKey(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	lines := func(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	files := map[string][]byte{
		// A journal written by something that applied r1 twice: the ledger
		// must see it.
		"tax.jsonl": lines(
			`{"key":"r1.tax","status":"completed","at":"2026-03-01T09:30:00Z"}`,
			`{"key":"r1.tax","status":"rejected","at":"2026-03-01T09:30:01Z"}`,
			`{"key":"r1.tax","duplicate":true,"at":"2026-03-01T09:30:02Z"}`,
			`{"key":"r2.tax","status":"rejected","at":"2026-03-01T09:30:03Z"}`,
		),
		"imt.jsonl":  lines(`{"key":"r1.imt","status":"completed","at":"2026-03-01T09:30:00Z"}`),
		"notes.txt":  []byte("not a journal"),
		"BAD.jsonl":  []byte("not a journal either"),
		"sns.jsonl~": []byte("an editor's backup"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logs, err := simagency.ReadJournals(dir)
	if err != nil {
		t.Fatalf("read journals: %v", err)
	}
	want := map[string]simagency.AgencyLog{
		"tax": {
			"r1.tax": {Status: events.StatusCompleted, Applied: 2, Duplicates: 1},
			"r2.tax": {Status: events.StatusRejected, Applied: 1},
		},
		"imt": {"r1.imt": {Status: events.StatusCompleted, Applied: 1}},
	}
	if fmt.Sprint(logs) != fmt.Sprint(want) {
		t.Fatalf("logs = %v\nwant %v", logs, want)
	}
	if logs["tax"].Applied() != 2 || logs["tax"].Duplicates() != 1 {
		t.Errorf("tax: Applied() = %d, Duplicates() = %d; want 2 and 1", logs["tax"].Applied(), logs["tax"].Duplicates())
	}
}

// BenchmarkJournal_Apply measures applications of distinct work items by
// one caller, each waiting for its own fsync, and by many callers at once,
// which share fsyncs.
func BenchmarkJournal_Apply(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("%d callers", callers), func(b *testing.B) {
			j, err := simagency.OpenJournal(b.TempDir(), "tax")
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			var next atomic.Int64
			b.SetParallelism(callers)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := j.Apply(fmt.Sprintf("r%d.tax", next.Add(1)), decided(events.StatusCompleted)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
