package schemas_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
)

// compile compiles one of the message schemas agencies read.
func compile(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	data, err := fs.ReadFile(schemas.Messages, "messages/"+name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

// instance marshals v as spotflow publishes it and reads it back as a
// schema validator sees it.
func instance(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func sampleRequest() *events.Request {
	return &events.Request{
		Schema: events.SchemaRequest, ID: events.NewID(time.Now()), DeskID: "desk-1", Municipality: "lisboa",
		Mediator: "m-7", ServiceCode: "change-of-address", VisitID: "v-1",
		Citizen:     events.Citizen{NationalID: "12345678", Name: "Maria Silva"},
		Attributes:  map[string]json.RawMessage{"street": json.RawMessage(`"Rua Augusta 10"`)},
		SubmittedAt: time.Now().UTC(),
	}
}

// TestMessageSchemas_DescribeWhatSpotflowPublishes validates the messages
// spotflow publishes against the JSON Schemas of the agency queue contract,
// and checks that the schemas refuse what breaks the contract.
func TestMessageSchemas_DescribeWhatSpotflowPublishes(t *testing.T) {
	req := sampleRequest()
	replayed := req.WorkItemFor("tax")
	replayed.Round = 1
	routed := events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(req.ID, "", events.StatusRouted),
		RequestID: req.ID, Status: events.StatusRouted, At: time.Now().UTC(), Actor: "router", Agencies: []string{"tax", "sns"}}
	completed := events.StatusEvent{Schema: events.SchemaStatus, ID: events.RoundEventID(req.ID, "tax", events.StatusCompleted, 1),
		RequestID: req.ID, Agency: "tax", Status: events.StatusCompleted, At: time.Now().UTC(), Note: "done", Round: 1}
	answered := events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(req.ID, "sns", events.StatusAccepted),
		RequestID: req.ID, Agency: "sns", Status: events.StatusAccepted, At: time.Now().UTC(), Actor: "agency:sns",
		DispatchedAt: time.Now().UTC().Add(-time.Millisecond)}
	valid := []struct {
		schema string
		name   string
		value  any
	}{
		{"request.v1.json", "a submitted request", req},
		{"work_item.v1.json", "a work item", req.WorkItemFor("tax")},
		{"work_item.v1.json", "a replayed work item", replayed},
		{"status.v1.json", "a routed event", routed},
		{"status.v1.json", "an agency's event of a replay round", completed},
		{"status.v1.json", "an answer that says when its work item was dispatched", answered},
	}
	for _, tt := range valid {
		t.Run(tt.name+" fits "+tt.schema, func(t *testing.T) {
			if err := compile(t, tt.schema).Validate(instance(t, tt.value)); err != nil {
				t.Errorf("%v", err)
			}
		})
	}

	invalid := []struct {
		schema string
		name   string
		doc    string
	}{
		{"status.v1.json", "a status event without an id", `{"schema":"spotflow.status.v1","request_id":"r","status":"completed","at":"2026-01-01T00:00:00Z"}`},
		{"status.v1.json", "a status event with an unknown status", `{"schema":"spotflow.status.v1","id":"e","request_id":"r","status":"done","at":"2026-01-01T00:00:00Z"}`},
		{"status.v1.json", "a status event of another schema version", `{"schema":"spotflow.status.v2","id":"e","request_id":"r","status":"completed","at":"2026-01-01T00:00:00Z"}`},
		{"status.v1.json", "a status event whose time is not a date-time", `{"schema":"spotflow.status.v1","id":"e","request_id":"r","status":"completed","at":"yesterday"}`},
		{"work_item.v1.json", "a work item without its citizen", `{"schema":"spotflow.work_item.v1","id":"r.tax","request_id":"r","agency":"tax","service_code":"s","desk_id":"d","municipality":"m","attributes":{},"submitted_at":"2026-01-01T00:00:00Z"}`},
	}
	for _, tt := range invalid {
		t.Run(tt.name+" does not fit "+tt.schema, func(t *testing.T) {
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(tt.doc)))
			if err != nil {
				t.Fatal(err)
			}
			if compile(t, tt.schema).Validate(doc) == nil {
				t.Error("validated; want it refused")
			}
		})
	}
}
