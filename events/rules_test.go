package events_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spotflow/spotflow/events"
)

func TestSourceOf_NamesTheOneSourceThatMayPublishAnEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		agency string
		status events.Status
		want   string
	}{
		{"", events.StatusRouted, events.SourceRouter},
		{"", events.StatusFailed, events.SourceRouter},
		{"tax", events.StatusRouted, events.SourceReplay},
		{"tax", events.StatusDispatched, events.SourceDispatcher},
		{"tax", events.StatusFailed, events.SourceDispatcher},
		{"tax", events.StatusAccepted, "tax"},
		{"tax", events.StatusInProgress, "tax"},
		{"tax", events.StatusCompleted, "tax"},
		{"tax", events.StatusRejected, "tax"},
	}
	for _, tt := range tests {
		ev := events.StatusEvent{Agency: tt.agency, Status: tt.status}
		if got := events.SourceOf(&ev); got != tt.want {
			t.Errorf("SourceOf(%s of %q) = %q, want %q", tt.status, tt.agency, got, tt.want)
		}
	}
}

func TestCheckFrom_RefusesWhatBreaksARule(t *testing.T) {
	t.Parallel()
	arrived := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	ok := func() events.StatusEvent {
		return events.StatusEvent{Schema: events.SchemaStatus, ID: "r1.tax.completed", RequestID: "r1", Agency: "tax",
			Status: events.StatusCompleted, At: arrived.Add(-time.Second), Note: "Certidão emitida"}
	}
	tests := []struct {
		name   string
		source string
		edit   func(*events.StatusEvent)
		rule   string
	}{
		{"an agency's answer from the agency", "tax", func(*events.StatusEvent) {}, ""},
		{"an answer carrying when it was dispatched", "tax", func(ev *events.StatusEvent) { ev.DispatchedAt = arrived.Add(-time.Minute) }, ""},
		{"another agency's answer", "sns", func(*events.StatusEvent) {}, events.RuleSource},
		{"an answer published by the dispatcher", events.SourceDispatcher, func(*events.StatusEvent) {}, events.RuleSource},
		{"a failure published by the agency", "tax", func(ev *events.StatusEvent) { ev.Status = events.StatusFailed }, events.RuleSource},
		{"a round opened by the agency", "tax", func(ev *events.StatusEvent) { ev.Status, ev.Round = events.StatusRouted, 99 }, events.RuleSource},
		{"a round opened by the replay", events.SourceReplay, func(ev *events.StatusEvent) { ev.Status, ev.Round = events.StatusRouted, 1 }, ""},
		{"a request's event from an agency", "tax", func(ev *events.StatusEvent) { ev.Agency = "" }, events.RuleSource},
		{"a request completed by the router", events.SourceRouter, func(ev *events.StatusEvent) { ev.Agency = "" }, events.RuleSource},
		{"a work item submitted by its agency", "tax", func(ev *events.StatusEvent) { ev.Status = events.StatusSubmitted }, events.RuleSource},
		{"dispatched_at from the dispatcher", events.SourceDispatcher, func(ev *events.StatusEvent) {
			ev.Status, ev.DispatchedAt = events.StatusFailed, arrived
		}, events.RuleSource},
		{"an ID outside the work item's", "tax", func(ev *events.StatusEvent) { ev.ID = "r1.sns.completed" }, events.RuleID},
		{"the request's ID", "tax", func(ev *events.StatusEvent) { ev.ID = "r1.completed" }, events.RuleID},
		{"the work item's ID alone", "tax", func(ev *events.StatusEvent) { ev.ID = "r1.tax" }, events.RuleID},
		{"an answer under way with an ID of the agency's own choosing", "tax", func(ev *events.StatusEvent) {
			ev.ID, ev.Status = "r1.tax.8f3a2c", events.StatusInProgress
		}, ""},
		{"a completion with an ID of the agency's own choosing", "tax", func(ev *events.StatusEvent) { ev.ID = "r1.tax.8f3a2c" }, events.RuleID},
		{"a rejection with the completion's ID", "tax", func(ev *events.StatusEvent) { ev.Status = events.StatusRejected }, events.RuleID},
		{"a completion in round 2 with round 0's ID", "tax", func(ev *events.StatusEvent) { ev.Round = 2 }, events.RuleID},
		{"a completion in round 2 with its own ID", "tax", func(ev *events.StatusEvent) { ev.ID, ev.Round = "r1.tax.completed.r2", 2 }, ""},
		{"a time a week and a day before arrival", "tax", func(ev *events.StatusEvent) { ev.At = arrived.Add(-8 * 24 * time.Hour) }, events.RuleTime},
		{"a time ten minutes after arrival", "tax", func(ev *events.StatusEvent) { ev.At = arrived.Add(10 * time.Minute) }, events.RuleTime},
		{"a dispatched_at in the future", "tax", func(ev *events.StatusEvent) { ev.DispatchedAt = arrived.Add(time.Hour) }, events.RuleTime},
		{"a note with a NUL", "tax", func(ev *events.StatusEvent) { ev.Note = "done\x00" }, events.RuleNote},
		{"a note with a line break", "tax", func(ev *events.StatusEvent) { ev.Note = "done\nreally" }, events.RuleNote},
		{"a note cut inside a character", "tax", func(ev *events.StatusEvent) { ev.Note = "Certid\xc3" }, events.RuleNote},
		{"a note too long", "tax", func(ev *events.StatusEvent) { ev.Note = strings.Repeat("a", events.MaxNote+1) }, events.RuleNote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := ok()
			tt.edit(&ev)
			err := ev.CheckFrom(tt.source, arrived)
			if got := events.RefusedRule(err); got != tt.rule {
				t.Fatalf("CheckFrom(%q) = %v, want rule %q", tt.source, err, tt.rule)
			}
			if tt.rule != "" && !events.IsPermanent(err) {
				t.Errorf("a refusal is not permanent: %v", err)
			}
		})
	}
}

func TestCleanNote_MakesANoteTheRulesAccept(t *testing.T) {
	t.Parallel()
	arrived := time.Now()
	for _, note := range []string{"agency said:\r\n\tbad gateway\x00", "Certid\xc3\xa3o\xc3", strings.Repeat("ã", events.MaxNote)} {
		clean := events.CleanNote(note)
		ev := events.StatusEvent{ID: "r.tax.failed", RequestID: "r", Agency: "tax", Status: events.StatusFailed, At: arrived, Note: clean}
		if err := ev.CheckFrom(events.SourceDispatcher, arrived); err != nil || !utf8.ValidString(clean) {
			t.Errorf("CleanNote(%.20q) = %.20q, refused: %v", note, clean, err)
		}
	}
	if got := events.CleanNote("agency said:\nbad gateway"); got != "agency said: bad gateway" {
		t.Errorf("CleanNote kept or lost more than control characters: %q", got)
	}
}
