package workers

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
)

// FuzzDecodeWorkItem decodes any message as the dispatcher decodes a work
// item. It checks that nothing panics; that every refusal is permanent (a
// transient one would be retried until the deliveries run out); and that a
// work item accepted has clean IDs and survives a round trip: encoded and
// decoded again, it is accepted and encodes the same.
func FuzzDecodeWorkItem(f *testing.F) {
	req := eventstest.ChangeOfAddress("01a24a2a-3da3-71f6-9f3b-b17649e07ae7")
	req.SubmittedAt = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	item := req.WorkItemFor("civil-registry")
	good, _ := json.Marshal(item)
	f.Add(good)
	item.Round, item.VisitID = 2, "visit-1"
	replayed, _ := json.Marshal(item)
	f.Add(replayed)
	for _, s := range []string{
		`{"schema":"spotflow.work_item.v1","id":"r.a","request_id":"r","agency":"a","submitted_at":"2026-06-01T09:00:00+01:00","attributes":{"x":[1,{"y":null}]}}`,
		`{"schema":"spotflow.work_item.v1","id":"r\u0000.a","request_id":"r","agency":"a"}`,
		"{\"schema\":\"spotflow.work_item.v1\",\"id\":\"r.a\",\"request_id\":\"r\xff\",\"agency\":\"a\"}",
		`{"schema":"spotflow.work_item.v1","ID":"r.a","Request_ID":"r","AGENCY":"a","id":"x"}`,
		`{"schema":"spotflow.request.v1","id":"r"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		item, err := decodeWorkItem(data)
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("refused %q with a transient error: %v", data, err)
			}
			return
		}
		if item.Schema != events.SchemaWorkItem || item.ID == "" || item.RequestID == "" || item.Agency == "" {
			t.Fatalf("accepted %q without its schema or IDs: %+v", data, item)
		}
		if err := item.CheckText(); err != nil {
			t.Fatalf("accepted %q with an ID that is not clean: %v", data, err)
		}
		encoded, err := json.Marshal(item)
		if err != nil {
			t.Fatalf("the work item accepted from %q does not encode: %v", data, err)
		}
		again, err := decodeWorkItem(encoded)
		if err != nil {
			t.Fatalf("the work item accepted from %q is refused once encoded as %s: %v", data, encoded, err)
		}
		if twice, _ := json.Marshal(again); !bytes.Equal(twice, encoded) {
			t.Fatalf("the work item changed on a round trip:\n%s\n%s", encoded, twice)
		}
	})
}

// FuzzDecodeStatusEvent decodes any message, on the status subject of any
// source, as the projector decodes a status event. It checks that nothing
// panics; that every refusal is permanent (the projector's consumer
// retries a transient one without limit); and that an event accepted has
// clean text the projection can store, keeps every rule, and survives a
// round trip: encoded and decoded again from the same source, it is
// accepted and encodes the same.
func FuzzDecodeStatusEvent(f *testing.F) {
	arrived := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	item := eventstest.ChangeOfAddress("01a24a2a-3da3-71f6-9f3b-b17649e07ae7").WorkItemFor("civil-registry")
	seeds := []events.StatusEvent{
		statusEvent(&item, events.StatusDispatched, ""),
		statusEvent(&item, events.StatusCompleted, "Registered.\u200f"),
		statusEvent(&item, events.StatusFailed, "agency unreachable"),
		{Schema: events.SchemaStatus, ID: events.EventID(item.RequestID, "", events.StatusRouted), RequestID: item.RequestID,
			Status: events.StatusRouted, Actor: events.SourceRouter, Agencies: []string{"civil-registry", "tax-authority"}},
	}
	seeds[1].DispatchedAt = arrived.Add(-time.Second)
	for i, ev := range seeds {
		ev.At = arrived.Add(-time.Minute)
		data, _ := json.Marshal(ev)
		f.Add(uint8(i), data)
	}
	for _, s := range []string{
		`{"schema":"spotflow.status.v1","id":"r.a.accepted","request_id":"r","agency":"a","status":"accepted","at":"2026-06-01T08:59:00Z","actor":"agency:a\u0000"}`,
		`{"schema":"spotflow.status.v1","id":"r.a.accepted","request_id":"r","agency":"a","status":"accepted","at":"2026-06-01T08:59:00Z","note":"\u202e"}`,
		"{\"schema\":\"spotflow.status.v1\",\"id\":\"r.a.accepted\",\"request_id\":\"r\",\"agency\":\"a\",\"status\":\"accepted\",\"at\":\"2026-06-01T08:59:00Z\",\"note\":\"\xff\"}",
		`{"schema":"spotflow.status.v1","id":"r.routed","request_id":"r","status":"routed","at":"2026-06-01T08:59:00Z","agencies":["a\u0000"]}`,
		`{"schema":"spotflow.status.v1","ID":"r.a.completed","id":"r.a.rejected","request_id":"r","agency":"a","status":"completed","at":"2026-06-01T08:59:00Z"}`,
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(4), []byte(s))
	}
	sources := []string{events.SourceRouter, events.SourceDispatcher, events.SourceReplay, "civil-registry", "a", ""}
	f.Fuzz(func(t *testing.T, source uint8, data []byte) {
		subject := events.StatusSubject(sources[int(source)%len(sources)])
		ev, err := decodeStatus(subject, data, arrived)
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("refused %q with a transient error: %v", data, err)
			}
			return
		}
		if err := ev.CheckText(); err != nil {
			t.Fatalf("accepted %q with text the projection cannot store: %v", data, err)
		}
		if src, _ := events.StatusSource(subject); ev.CheckFrom(src, arrived) != nil {
			t.Fatalf("accepted %q, which breaks a rule", data)
		}
		for _, part := range ev.Split() {
			if part.ID == "" || part.RequestID == "" {
				t.Fatalf("accepted %q, which splits into %+v", data, part)
			}
		}
		encoded, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("the event accepted from %q does not encode: %v", data, err)
		}
		again, err := decodeStatus(subject, encoded, arrived)
		if err != nil {
			t.Fatalf("the event accepted from %q is refused once encoded as %s: %v", data, encoded, err)
		}
		if twice, _ := json.Marshal(again); !bytes.Equal(twice, encoded) {
			t.Fatalf("the event changed on a round trip:\n%s\n%s", encoded, twice)
		}
	})
}
