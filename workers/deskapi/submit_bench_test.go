package deskapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events/eventstest"
)

// benchBodies are submissions as desks send them: a typical one, and one
// with a long text attribute.
var benchBodies = []struct {
	name, body string
}{
	{"typical", `{
	"service_code": "change-of-address",
	"citizen": {"national_id": "12345678", "name": "Maria da Conceição Silva"},
	"attributes": {"street": "Rua Augusta 10, 3.º esq.", "postal_code": "1100-053", "locality": "Lisboa", "effective_date": "2026-02-01"},
	"visit_id": "visit-2026-0001",
	"mediator": "m-17"
}`},
	{"long text", `{
	"service_code": "patent-application",
	"citizen": {"national_id": "12345678", "name": "Maria da Conceição Silva"},
	"attributes": {"title": "Um dispositivo", "summary": "` + strings.Repeat("Descrição do invento, ", 180) + `", "inventors": 3}
}`},
}

// BenchmarkDecodeSubmission measures what the desk API does with a
// submission's body before intake takes it: read it, decode it strictly,
// and validate it against the catalogue.
func BenchmarkDecodeSubmission(b *testing.B) {
	catalog := eventstest.Catalog(b)
	a := &API{cfg: Config{MaxBody: 64 << 10}}
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			r := httptest.NewRequest(http.MethodPost, "/v1/requests", nil)
			r.Header.Set("Content-Type", "application/json")
			for b.Loop() {
				r.Body = io.NopCloser(strings.NewReader(bb.body))
				sub, _, apiErr := a.decodeSubmission(nil, r)
				if apiErr != nil {
					b.Fatalf("decode: %+v", apiErr)
				}
				if _, err := catalog.Validate(sub); err != nil {
					b.Fatalf("validate: %v", err)
				}
			}
		})
	}
}
