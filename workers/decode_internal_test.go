package workers

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
)

// TestDecodeWorkItem_RefusesIDsItCouldNotDeadLetter covers issue 15: a
// work item whose IDs are not clean text is refused for good when it is
// decoded; accepted, it would fail later, and its dead letter, recorded by
// those IDs, could be refused by Postgres too.
func TestDecodeWorkItem_RefusesIDsItCouldNotDeadLetter(t *testing.T) {
	t.Parallel()
	req := eventstest.ChangeOfAddress("01a24a2a-3da3-71f6-9f3b-b17649e07ae7")
	for field, change := range map[string]func(w *events.WorkItem){
		"id":           func(w *events.WorkItem) { w.ID += "\x00" },
		"request_id":   func(w *events.WorkItem) { w.RequestID = "req\x1b[2J" },
		"agency":       func(w *events.WorkItem) { w.Agency = "civil\u202eregistry" },
		"desk_id":      func(w *events.WorkItem) { w.DeskID = "desk\n1" },
		"municipality": func(w *events.WorkItem) { w.Municipality = "lis\u0085boa" },
		"visit_id":     func(w *events.WorkItem) { w.VisitID = "v\x00" },
	} {
		t.Run(field, func(t *testing.T) {
			t.Parallel()
			item := req.WorkItemFor("civil-registry")
			change(&item)
			data, err := json.Marshal(item)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodeWorkItem(data)
			var fe *events.FieldError
			if !events.IsPermanent(err) || !errors.As(err, &fe) || fe.Field != field {
				t.Errorf("decodeWorkItem: %v, want a permanent refusal naming %s", err, field)
			}
			if strings.ContainsRune(err.Error(), 0) {
				t.Errorf("the refusal %q holds NUL: its dead letter could not be recorded", err)
			}
		})
	}
	item := req.WorkItemFor("civil-registry")
	item.Citizen.Name = "\u200fمحمد\u200e"
	data, _ := json.Marshal(item)
	if _, err := decodeWorkItem(data); err != nil {
		t.Errorf("a work item with direction marks in a name: %v", err)
	}
}

// TestDecodeStatus_RefusesTextTheProjectionCannotStore covers issue 15: a
// status event, often an agency's, whose IDs, actor or agencies are not
// clean text, or that is not UTF-8, is refused for good when decoded,
// with the field named; before, an actor holding NUL reached Postgres,
// which refused the batch every time it was retried.
func TestDecodeStatus_RefusesTextTheProjectionCannotStore(t *testing.T) {
	t.Parallel()
	arrived := time.Now()
	item := eventstest.ChangeOfAddress("01a24a2a-3da3-71f6-9f3b-b17649e07ae7").WorkItemFor("civil-registry")
	ev := statusEvent(&item, events.StatusAccepted, "accepted")
	ev.At = arrived.Add(-time.Second)
	encode := func(change func(*events.StatusEvent)) []byte {
		e := ev
		change(&e)
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	subject := events.StatusSubject("civil-registry")
	if _, err := decodeStatus(subject, encode(func(*events.StatusEvent) {}), arrived); err != nil {
		t.Fatalf("a good event: %v", err)
	}
	tests := []struct {
		name, subject string
		data          []byte
		field         string
	}{
		{"an actor holding NUL", subject, encode(func(e *events.StatusEvent) { e.Actor = "agency:civil\x00registry" }), "actor"},
		{"an actor holding an override", subject, encode(func(e *events.StatusEvent) { e.Actor = "agency:\u202eyrtsiger" }), "actor"},
		{"an ID holding NUL", subject, encode(func(e *events.StatusEvent) { e.ID += "\x00" }), "id"},
		{"a routed agency holding NUL", events.StatusSubject(events.SourceRouter), encode(func(e *events.StatusEvent) {
			e.Agency, e.Status, e.ID, e.Actor = "", events.StatusRouted, events.EventID(item.RequestID, "", events.StatusRouted), events.SourceRouter
			e.Agencies = []string{"civil-registry", "tax\x00"}
		}), "agencies"},
		{"a note that is not UTF-8", subject, []byte(strings.Replace(string(encode(func(*events.StatusEvent) {})), `"accepted"}`, "\"acc\xffepted\"}", 1)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeStatus(tt.subject, tt.data, arrived)
			if !events.IsPermanent(err) {
				t.Fatalf("decodeStatus(%q): %v, want a permanent refusal", tt.data, err)
			}
			var fe *events.FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Errorf("decodeStatus: %v, want the refusal to name %s", err, tt.field)
			}
		})
	}
}
