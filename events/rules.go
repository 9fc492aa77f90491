package events

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The pipeline's own status sources. Each publishes on StatusSubject(source)
// the events only it may publish (see SourceOf); no agency may have one of
// these codes.
const (
	// SourceRouter publishes a request's routed event, and its failed event
	// when it cannot be routed.
	SourceRouter = "router"
	// SourceDispatcher publishes that a work item was dispatched to its
	// agency, or failed because it could not be delivered.
	SourceDispatcher = "dispatcher"
	// SourceReplay publishes the routed event with which an operator's
	// replay opens a new round of a work item.
	SourceReplay = "replay"
	// SourcePractice is the simulated agency of training mode: it consumes
	// the practice queue (WorkSubject(SourcePractice)) and publishes the
	// answers to practice work items, whichever agency they name.
	SourcePractice = "practice"
)

// PipelineSource reports whether code is one of the pipeline's own status
// sources, which no agency may take as its code.
func PipelineSource(code string) bool {
	return code == SourceRouter || code == SourceDispatcher || code == SourceReplay || code == SourcePractice
}

// SourceOf is the one source that may publish ev: the router for a
// request's own events, the replay for the routed event that opens a work
// item's round, the dispatcher for a work item dispatched or failed, and
// the work item's agency for its answers (accepted, in_progress, completed,
// rejected), which may carry when it was dispatched (DispatchedAt), and the
// practice agency for the answers to a practice work item.
func SourceOf(ev *StatusEvent) string {
	switch {
	case ev.Agency == "":
		return SourceRouter
	case ev.Status == StatusRouted:
		return SourceReplay
	case ev.Status == StatusDispatched || ev.Status == StatusFailed:
		return SourceDispatcher
	case ev.Practice:
		return SourcePractice
	}
	return ev.Agency
}

// The rules every status event keeps; a Refusal names the one it broke.
const (
	// RuleSource: the event came from a source that may not publish it, or
	// has a status its source never publishes.
	RuleSource = "source"
	// RuleID: an agency's event whose ID does not begin with its work
	// item's ID and a dot, or an agency's completed or rejected whose ID is
	// not RoundEventID's. Events are applied once by ID, so an ID outside
	// the agency's own could shadow another's event and have it ignored; and
	// a work item's terminal events are told apart by their IDs (RuleTerminal).
	RuleID = "id"
	// RuleRound: the event belongs to a round no operator's replay opened.
	RuleRound = "round"
	// RuleTerminal: the event would move a work item from one terminal
	// status to another within a round.
	RuleTerminal = "terminal"
	// RuleTime: the event's time lies outside the window around its arrival
	// (EarliestEvent before it, LatestEvent after it).
	RuleTime = "time"
	// RuleNote: the event's note is longer than MaxNote bytes, is not UTF-8,
	// or holds control characters.
	RuleNote = "note"
)

// The window an event's time must lie in around its arrival, and the
// longest note.
const (
	EarliestEvent = 7 * 24 * time.Hour
	LatestEvent   = 5 * time.Minute
	MaxNote       = 2000
)

// Refusal is a status event refused for breaking Rule. It is permanent:
// the projector dead-letters the event, which changes nothing.
type Refusal struct {
	Rule string
	Err  error
}

func (e *Refusal) Error() string { return "refused (" + e.Rule + "): " + e.Err.Error() }
func (e *Refusal) Unwrap() error { return e.Err }

// Refuse is the permanent error of an event that breaks rule.
func Refuse(rule string, format string, args ...any) error {
	return Permanent(&Refusal{Rule: rule, Err: fmt.Errorf(format, args...)})
}

// RefusedRule is the rule err refused an event for, or "" when err is no
// Refusal.
func RefusedRule(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Rule
	}
	return ""
}

// ErrRoundNotOpened: an event of a work item names a round that the
// projection has not seen opened. The replay's routed event may still be on
// its way; an event that keeps naming an unopened round is refused
// (RuleRound).
var ErrRoundNotOpened = errors.New("round not opened by a replay")

// CheckFrom checks the rules an event must keep whatever the projection
// holds: that source may publish it, that an agency's event ID lies within
// its work item's, that its times lie in the window around
// arrived (when JetStream stored it), and that its note is clean. It returns
// a Refusal, or nil.
func (ev *StatusEvent) CheckFrom(source string, arrived time.Time) error {
	switch want := SourceOf(ev); {
	case source != want:
		return Refuse(RuleSource, "event %s (%s of %q) published by %q, which only %q may publish", ev.ID, ev.Status, ev.Agency, source, want)
	case ev.Agency == "" && ev.Status != StatusRouted && ev.Status != StatusFailed,
		ev.Agency != "" && ev.Status == StatusSubmitted:
		return Refuse(RuleSource, "event %s: %q never publishes %s", ev.ID, source, ev.Status)
	case !ev.DispatchedAt.IsZero() && source != ev.Agency && source != SourcePractice:
		return Refuse(RuleSource, "event %s: dispatched_at on an event of %q", ev.ID, source)
	}
	if source == ev.Agency || source == SourcePractice {
		item := WorkItemID(ev.RequestID, ev.Agency)
		if canonical := RoundEventID(ev.RequestID, ev.Agency, ev.Status, ev.Round); ev.Status.Terminal() && ev.ID != canonical {
			return Refuse(RuleID, "event %s: the ID of a work item's %s in round %d must be %s", ev.ID, ev.Status, ev.Round, canonical)
		}
		if !strings.HasPrefix(ev.ID, item+".") {
			return Refuse(RuleID, "event %s: an agency's event ID must begin with its work item's ID and a dot (%s.)", ev.ID, item)
		}
	}
	for _, t := range []time.Time{ev.At, ev.DispatchedAt} {
		if !t.IsZero() && (t.Before(arrived.Add(-EarliestEvent)) || t.After(arrived.Add(LatestEvent))) {
			return Refuse(RuleTime, "event %s: time %s is outside [%s, %s] around its arrival",
				ev.ID, t.UTC().Format(time.RFC3339), EarliestEvent, LatestEvent)
		}
	}
	if reason := noteFault(ev.Note); reason != "" {
		return Refuse(RuleNote, "event %s: the note %s", ev.ID, reason)
	}
	return nil
}

func noteFault(note string) string {
	switch {
	case len(note) > MaxNote:
		return fmt.Sprintf("is longer than %d bytes", MaxNote)
	case !utf8.ValidString(note):
		return "is not UTF-8"
	case strings.IndexFunc(note, unicode.IsControl) >= 0:
		return "holds control characters"
	}
	return ""
}

// CleanNote makes s a note that keeps the rules: control characters become
// spaces, bytes that are not UTF-8 are dropped, and it is cut to MaxNote
// bytes on a character boundary. Spotflow's own events pass their notes
// (an agency's error, say) through it.
func CleanNote(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= MaxNote {
		return s
	}
	cut := MaxNote
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
