// Package eventstest builds the domain's test data: the built-in service
// catalogue, and requests as a desk in Lisbon submits them. It imports the
// domain and its data only.
package eventstest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
)

// Catalog is the built-in service catalogue.
func Catalog(t testing.TB) *events.Catalog {
	t.Helper()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatalf("eventstest: parse the built-in catalogue: %v", err)
	}
	return c
}

// Request is a submitted request for service of desk-1 in lisboa, by
// mediator m-17 for Maria Silva, with attrs as its attributes.
func Request(id, service string, attrs map[string]any) *events.Request {
	raw := make(map[string]json.RawMessage, len(attrs))
	for k, v := range attrs {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		raw[k] = b
	}
	return &events.Request{
		Schema:       events.SchemaRequest,
		ID:           id,
		DeskID:       "desk-1",
		Municipality: "lisboa",
		Mediator:     "m-17",
		ServiceCode:  service,
		Citizen:      events.Citizen{NationalID: "12345678", Name: "Maria Silva"},
		Attributes:   raw,
		SubmittedAt:  time.Now().UTC().Truncate(time.Microsecond),
	}
}

// ChangeOfAddress is a request that fans out to four agencies.
func ChangeOfAddress(id string) *events.Request {
	return Request(id, "change-of-address", map[string]any{
		"street": "Rua Augusta 1", "postal_code": "1100-048", "locality": "Lisboa",
	})
}
