package events_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
)

const (
	secretID   = "PT-987654321"
	secretName = "Beatriz Albuquerque"
)

func secretCitizen() events.Citizen {
	return events.Citizen{NationalID: secretID, Name: secretName}
}

func assertRedacted(t *testing.T, what, out string) {
	t.Helper()
	for _, secret := range []string{secretID, "987654321", secretName, "Albuquerque"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s = %q reveals %q", what, out, secret)
		}
	}
	if !strings.Contains(out, "[redacted]") {
		t.Errorf("%s = %q does not say the citizen was redacted", what, out)
	}
}

func TestCitizen_FormattingRedactsPersonalData(t *testing.T) {
	t.Parallel()
	c := secretCitizen()
	type wrapper struct {
		Desk    string
		Citizen events.Citizen
	}
	type pointerWrapper struct {
		Citizen *events.Citizen
	}
	values := map[string]any{
		"a citizen":                  c,
		"a pointer to a citizen":     &c,
		"a struct holding a citizen": wrapper{Desk: "desk-1", Citizen: c},
		"a request":                  events.Request{ID: "r1", Citizen: c},
		"a pointer to a request":     &events.Request{ID: "r1", Citizen: c},
		"a work item":                events.WorkItem{ID: "r1.tax", Citizen: c},
		"a slice of citizens":        []events.Citizen{c, c},
		"a map of citizens":          map[string]events.Citizen{"k": c},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			assertRedacted(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v))
		}
	}
	// A pointer field one level down is printed as an address, not followed.
	out := fmt.Sprintf("%+v", pointerWrapper{Citizen: &c})
	if strings.Contains(out, secretID) || strings.Contains(out, secretName) {
		t.Errorf("Sprintf(%%+v, struct with *Citizen) = %q reveals the citizen", out)
	}
	assertRedacted(t, "Sprint(citizen)", fmt.Sprint(c))
	assertRedacted(t, "Sprintln(citizen)", fmt.Sprintln(c))
	assertRedacted(t, "String()", c.String())
	assertRedacted(t, "GoString()", c.GoString())
	assertRedacted(t, "an error wrapping a citizen", fmt.Errorf("refused %v", c).Error())
}

func TestCitizen_SlogRedactsPersonalData(t *testing.T) {
	t.Parallel()
	c := secretCitizen()
	tests := []struct {
		name string
		attr slog.Attr
	}{
		{"a citizen attribute", slog.Any("citizen", c)},
		{"a pointer to a citizen", slog.Any("citizen", &c)},
		{"a citizen inside a group", slog.Group("request", slog.String("id", "r1"), slog.Any("citizen", c))},
	}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	}
	for _, tt := range tests {
		for hname, newHandler := range handlers {
			t.Run(hname+" handler with "+tt.name, func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				slog.New(newHandler(&buf)).Info("submitted", tt.attr)
				assertRedacted(t, "log line", buf.String())
				if hname == "json" && !json.Valid(bytes.TrimSpace(buf.Bytes())) {
					t.Errorf("log line %q is not JSON", buf.String())
				}
			})
		}
	}
	for hname, newHandler := range handlers {
		for _, v := range []any{
			events.Request{ID: "r1", Citizen: c},
			events.WorkItem{ID: "r1.tax", Citizen: c},
			events.Submission{ServiceCode: "s", Citizen: &c},
		} {
			t.Run(fmt.Sprintf("%s handler with a %T holding a citizen", hname, v), func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				slog.New(newHandler(&buf)).Info("submitted", "value", v)
				out := buf.String()
				if strings.Contains(out, secretID) || strings.Contains(out, secretName) {
					t.Errorf("log line %q reveals the citizen", out)
				}
			})
		}
	}
	t.Run("logger carrying a citizen in its context attributes", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).With("citizen", c).Warn("slow agency")
		assertRedacted(t, "log line", buf.String())
	})
}

func TestCitizen_MarshalsToJSONForAgencies(t *testing.T) {
	t.Parallel()
	// Redaction is for logs and formatting only: the work item an agency
	// receives must carry the citizen.
	data, err := json.Marshal(events.WorkItem{ID: "r1.tax", Citizen: secretCitizen()})
	if err != nil {
		t.Fatal(err)
	}
	var back events.WorkItem
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Citizen != secretCitizen() {
		t.Errorf("citizen after a JSON round trip = %+v, want the original", back.Citizen.NationalID)
	}
	if !bytes.Contains(data, []byte(`"national_id":"`+secretID+`"`)) {
		t.Errorf("work item JSON %s lacks the national_id field", data)
	}
}

func TestEventID_IsDeterministicPerStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		request, agency string
		status          events.Status
		want            string
	}{
		{"r1", "", events.StatusRouted, "r1.routed"},
		{"r1", "", events.StatusSubmitted, "r1.submitted"},
		{"r1", "tax", events.StatusCompleted, "r1.tax.completed"},
		{"r1", "social-security", events.StatusInProgress, "r1.social-security.in_progress"},
	}
	for _, tt := range tests {
		if got := events.EventID(tt.request, tt.agency, tt.status); got != tt.want {
			t.Errorf("EventID(%q, %q, %q) = %q, want %q", tt.request, tt.agency, tt.status, got, tt.want)
		}
		if a, b := events.EventID(tt.request, tt.agency, tt.status), events.EventID(tt.request, tt.agency, tt.status); a != b {
			t.Errorf("EventID is not deterministic: %q then %q", a, b)
		}
	}
	if events.EventID("r1", "tax", events.StatusAccepted) == events.EventID("r1", "sns", events.StatusAccepted) {
		t.Error("two agencies' steps share an event ID")
	}
	if events.EventID("r1", "", events.StatusCompleted) == events.EventID("r1", "tax", events.StatusCompleted) {
		t.Error("a request's step and a work item's step share an event ID")
	}
}

func TestWorkItemID_JoinsRequestAndAgency(t *testing.T) {
	t.Parallel()
	if got, want := events.WorkItemID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "tax"), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.tax"; got != want {
		t.Errorf("WorkItemID = %q, want %q", got, want)
	}
}

func TestRequest_SubmittedEventAndWorkItems(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	r := &events.Request{
		Schema: events.SchemaRequest, ID: "req-1", DeskID: "desk-7", Municipality: "braga",
		Mediator: "ana", ServiceCode: "change-of-address", VisitID: "visit-3",
		Citizen:     secretCitizen(),
		Attributes:  map[string]json.RawMessage{"street": json.RawMessage(`"Rua Nova"`)},
		SubmittedAt: at,
	}
	ev := r.SubmittedEvent()
	want := events.StatusEvent{
		Schema: events.SchemaStatus, ID: "req-1.submitted", RequestID: "req-1",
		Status: events.StatusSubmitted, At: at, Actor: "desk:desk-7",
	}
	if fmt.Sprintf("%+v", ev) != fmt.Sprintf("%+v", want) {
		t.Errorf("SubmittedEvent() = %+v, want %+v", ev, want)
	}
	if ev.ID != events.EventID(r.ID, "", events.StatusSubmitted) {
		t.Errorf("SubmittedEvent().ID = %q, not EventID of the step", ev.ID)
	}

	w := r.WorkItemFor("tax")
	switch {
	case w.Schema != events.SchemaWorkItem:
		t.Errorf("work item schema %q, want %q", w.Schema, events.SchemaWorkItem)
	case w.ID != events.WorkItemID("req-1", "tax"):
		t.Errorf("work item ID %q, want %q", w.ID, events.WorkItemID("req-1", "tax"))
	case w.RequestID != "req-1" || w.Agency != "tax" || w.ServiceCode != "change-of-address":
		t.Errorf("work item %+v does not name its request, agency and service", w)
	case w.DeskID != "desk-7" || w.Municipality != "braga" || w.VisitID != "visit-3":
		t.Errorf("work item %+v does not carry the desk, municipality and visit", w)
	case w.Citizen != r.Citizen || !w.SubmittedAt.Equal(at):
		t.Errorf("work item does not carry the citizen and submission time")
	case string(w.Attributes["street"]) != `"Rua Nova"`:
		t.Errorf("work item attributes %s, want the request's", w.Attributes)
	}
}

func TestChange_RequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change events.Change
		want   string
	}{
		{"a submitted request", events.Change{Request: &events.Request{ID: "r1"}}, "r1"},
		{"a status event", events.Change{Event: &events.StatusEvent{ID: "r2.routed", RequestID: "r2"}}, "r2"},
		{"an empty change", events.Change{}, ""},
	}
	for _, tt := range tests {
		if got := tt.change.RequestID(); got != tt.want {
			t.Errorf("%s: RequestID() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestStatusEvent_RoundTripsThroughJSON(t *testing.T) {
	t.Parallel()
	ev := events.StatusEvent{
		Schema: events.SchemaStatus, ID: "r1.routed", RequestID: "r1", Status: events.StatusRouted,
		At: time.Date(2026, 5, 4, 10, 0, 0, 123_000_000, time.UTC), Actor: "router",
		Agencies: []string{"tax", "sns"},
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"schema":"spotflow.status.v1"`, `"request_id":"r1"`, `"status":"routed"`, `"agencies":["tax","sns"]`} {
		if !bytes.Contains(data, []byte(field)) {
			t.Errorf("status event JSON %s lacks %s", data, field)
		}
	}
	if bytes.Contains(data, []byte(`"agency"`)) || bytes.Contains(data, []byte(`"note"`)) {
		t.Errorf("status event JSON %s carries empty optional fields", data)
	}
	var back events.StatusEvent
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back) != fmt.Sprint(ev) {
		t.Errorf("round trip gave %+v, want %+v", back, ev)
	}
}

func TestStatusEvent_SplitRecordsTheDispatchedEventAnAnswerCarries(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	answer := events.StatusEvent{
		Schema: events.SchemaStatus, ID: "r1.tax.completed.r2", RequestID: "r1", Agency: "tax",
		Status: events.StatusCompleted, At: at.Add(time.Second), Actor: "agency:tax", Note: "done", Round: 2,
		DispatchedAt: at,
	}
	got := answer.Split()
	if len(got) != 2 {
		t.Fatalf("Split gave %d events, want 2: %+v", len(got), got)
	}
	wantDispatched := events.StatusEvent{
		Schema: events.SchemaStatus, ID: "r1.tax.dispatched.r2", RequestID: "r1", Agency: "tax",
		Status: events.StatusDispatched, At: at, Actor: events.ActorDispatcher, Round: 2,
	}
	if !reflect.DeepEqual(got[0], wantDispatched) {
		t.Errorf("first = %+v, want %+v", got[0], wantDispatched)
	}
	want := answer
	want.DispatchedAt = time.Time{}
	if !reflect.DeepEqual(got[1], want) {
		t.Errorf("second = %+v, want the answer itself %+v", got[1], want)
	}

	for _, ev := range []events.StatusEvent{
		{ID: "r1.tax.completed", RequestID: "r1", Agency: "tax", Status: events.StatusCompleted, At: at},
		{ID: "r1.routed", RequestID: "r1", Status: events.StatusRouted, At: at, DispatchedAt: at},
	} {
		got := ev.Split()
		ev.DispatchedAt = time.Time{}
		if len(got) != 1 || !reflect.DeepEqual(got[0], ev) {
			t.Errorf("Split of %s = %+v, want the event alone", ev.ID, got)
		}
	}
}
