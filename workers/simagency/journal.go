package simagency

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
)

// journalExt ends the name of every journal file.
const journalExt = ".jsonl"

// ErrJournalClosed is returned by Apply after Close.
var ErrJournalClosed = errors.New("journal closed")

// journalLine is one line of a journal file: an application of a work item
// (Status set) or a repeated delivery of one already applied (Duplicate).
type journalLine struct {
	Key       string        `json:"key"`
	Status    events.Status `json:"status,omitempty"`
	Duplicate bool          `json:"duplicate,omitempty"`
	At        time.Time     `json:"at"`
}

// Journal is one simulated agency's durable record of the work items it
// applied: an append-only file of JSON lines, <dir>/<agency>.jsonl, that
// survives the process being killed. Every line is written and fsynced
// before Apply returns; concurrent callers share fsyncs.
//
// A Journal is safe for concurrent use. Only one Journal, in one process,
// may have a file open at a time.
type Journal struct {
	path string

	mu      sync.Mutex
	synced  *sync.Cond // signalled, with mu held, when a sync ends
	f       *os.File
	applied map[string]events.Status
	dups    int
	written uint64 // lines written to f
	durable uint64 // lines known to be on disk
	syncing bool   // a caller is fsyncing f with mu released
	err     error  // a failed write or sync: the journal takes no more
}

// OpenJournal opens, creating it if needed, the journal of agency in dir,
// and loads what it recorded. A last line cut short by a crash is ignored
// and removed; any other line that does not parse is an error.
func OpenJournal(dir, agency string) (*Journal, error) {
	if !events.ValidToken(agency) {
		return nil, fmt.Errorf("open journal: bad agency code %q", agency)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	path := filepath.Join(dir, agency+journalExt)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &Journal{path: path, f: f, applied: make(map[string]events.Status)}
	j.synced = sync.NewCond(&j.mu)
	if err := j.load(created, dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return j, nil
}

func (j *Journal) load(created bool, dir string) error {
	if created {
		// Make the new file's name durable along with its first lines.
		return syncDir(dir)
	}
	good, torn, err := scanJournal(j.f, func(l journalLine) {
		if l.Duplicate {
			j.dups++
			return
		}
		if _, ok := j.applied[l.Key]; !ok {
			j.applied[l.Key] = l.Status
		}
	})
	if err != nil {
		return err
	}
	if torn {
		// Drop the torn line so that the next line does not run into it.
		if err := j.f.Truncate(good); err != nil {
			return fmt.Errorf("drop torn last line: %w", err)
		}
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("drop torn last line: %w", err)
		}
	}
	return nil
}

// scanJournal reads r from its start and calls fn for every line. It returns
// the offset just past the last good line and whether what follows it is a
// torn last line (one that does not end in a newline, or does not parse);
// a bad line followed by others is corruption, reported as an error.
func scanJournal(r io.Reader, fn func(journalLine)) (good int64, torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var bad error
	for {
		raw, rerr := br.ReadBytes('\n')
		if len(raw) > 0 {
			if bad != nil {
				return good, false, bad
			}
			l, perr := parseJournalLine(raw)
			switch {
			case perr != nil:
				bad = fmt.Errorf("line at offset %d: %w", good, perr)
			case raw[len(raw)-1] != '\n':
				// A complete record without its newline: still torn, since
				// the next append would run into it.
				bad = errors.New("unterminated last line")
			default:
				fn(l)
				good += int64(len(raw))
			}
		}
		if rerr == io.EOF {
			return good, bad != nil, nil
		}
		if rerr != nil {
			return good, false, rerr
		}
	}
}

func parseJournalLine(raw []byte) (journalLine, error) {
	var l journalLine
	if err := json.Unmarshal(bytes.TrimSpace(raw), &l); err != nil {
		return l, err
	}
	if l.Key == "" || (!l.Duplicate && !l.Status.Valid()) {
		return l, errors.New("missing key or status")
	}
	return l, nil
}

// Apply records one delivery of the work item key. If key was applied
// before, it returns the status recorded then with duplicate true, and
// records the repetition; otherwise it calls decide for the status, records
// it, and returns it. Either way the record, and the application it
// repeats, are on disk before Apply returns. decide runs with the journal
// locked: it must be quick and must not call the journal.
//
// Concurrent calls with the same key apply it once. After a write or sync
// error the journal refuses every further call; reopen it.
func (j *Journal) Apply(key string, decide func() events.Status) (status events.Status, duplicate bool, err error) {
	if key == "" {
		return "", false, errors.New("journal apply: empty key")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return "", false, err
	}
	line := journalLine{Key: key, At: time.Now().UTC()}
	prev, duplicate := j.applied[key]
	if duplicate {
		status, line.Duplicate = prev, true
	} else {
		status = decide()
		if !status.Valid() {
			return "", false, fmt.Errorf("journal apply %s: decided an unknown status %q", key, status)
		}
		line.Status = status
	}
	if err := j.append(line); err != nil {
		return "", false, err
	}
	if duplicate {
		j.dups++
	} else {
		j.applied[key] = status
	}
	// The line just written follows the application it may repeat, so
	// waiting for it covers both.
	if err := j.waitDurable(j.written); err != nil {
		return "", false, err
	}
	return status, duplicate, nil
}

func (j *Journal) usable() error {
	switch {
	case j.f == nil:
		return ErrJournalClosed
	case j.err != nil:
		return j.err
	}
	return nil
}

// append writes l as one line. Called with mu held.
func (j *Journal) append(l journalLine) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("journal apply %s: %w", l.Key, err)
	}
	if _, err := j.f.Write(append(data, '\n')); err != nil {
		j.err = fmt.Errorf("journal %s: write failed, reopen it: %w", j.path, err)
		return j.err
	}
	j.written++
	return nil
}

// waitDurable returns once line n is on disk. Called with mu held; mu is
// released while fsyncing or waiting. The first waiter to find no sync
// under way becomes the leader and fsyncs every line written so far; the
// others wait for it, and their lines ride along if written in time.
func (j *Journal) waitDurable(n uint64) error {
	for j.durable < n {
		if j.err != nil {
			return j.err
		}
		if j.syncing {
			j.synced.Wait()
			continue
		}
		j.syncing = true
		target, f := j.written, j.f
		j.mu.Unlock()
		err := f.Sync()
		j.mu.Lock()
		j.syncing = false
		if err != nil {
			// After a failed fsync the kernel may have dropped the dirty
			// pages: nothing written since the last good sync is known safe.
			j.err = fmt.Errorf("journal %s: fsync failed, reopen it: %w", j.path, err)
		} else {
			j.durable = max(j.durable, target)
		}
		j.synced.Broadcast()
	}
	return nil
}

// Applied returns how many distinct work items the journal records as
// applied, including those loaded from disk.
func (j *Journal) Applied() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.applied)
}

// Duplicates returns how many repeated deliveries the journal records,
// including those loaded from disk.
func (j *Journal) Duplicates() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.dups
}

// Close waits for a sync under way, syncs what remains and closes the file.
// Apply fails after Close; closing twice is a no-op.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.synced.Wait()
	}
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if err == nil {
		j.durable = j.written
	}
	err = errors.Join(err, j.f.Close())
	j.f = nil
	if j.err == nil {
		j.err = ErrJournalClosed
	}
	j.synced.Broadcast()
	if err != nil {
		return fmt.Errorf("close journal %s: %w", j.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// AgencyLog is what one agency's journal records, by work item ID.
type AgencyLog map[string]KeyLog

// KeyLog is what a journal records about one work item.
type KeyLog struct {
	// Status is the status the work item was first applied with.
	Status events.Status
	// Applied is how many times the work item was applied; a journal kept
	// by a Journal always shows 1.
	Applied int
	// Duplicates is how many deliveries repeated it after it was applied.
	Duplicates int
}

// Applied returns how many distinct work items the log records as applied.
func (l AgencyLog) Applied() int {
	n := 0
	for _, k := range l {
		if k.Applied > 0 {
			n++
		}
	}
	return n
}

// Duplicates returns how many repeated deliveries the log records.
func (l AgencyLog) Duplicates() int {
	n := 0
	for _, k := range l {
		n += k.Duplicates
	}
	return n
}

// ReadJournals reads every journal in dir, by agency, for a ledger that
// checks each work item was applied once. It does not modify the files, and
// may run while a server appends to them: a torn last line is ignored.
func ReadJournals(dir string) (map[string]AgencyLog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read journals: %w", err)
	}
	out := make(map[string]AgencyLog)
	for _, e := range entries {
		agency, ok := strings.CutSuffix(e.Name(), journalExt)
		if !ok || !e.Type().IsRegular() || !events.ValidToken(agency) {
			continue
		}
		log, err := readJournal(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read journals: %w", err)
		}
		out[agency] = log
	}
	return out, nil
}

func readJournal(path string) (AgencyLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	log := make(AgencyLog)
	_, _, err = scanJournal(f, func(l journalLine) {
		k := log[l.Key]
		switch {
		case l.Duplicate:
			k.Duplicates++
		default:
			if k.Applied == 0 {
				k.Status = l.Status
			}
			k.Applied++
		}
		log[l.Key] = k
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return log, nil
}
