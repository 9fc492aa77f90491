package deskapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/jsonapi"
)

// FuzzDeskSubmission runs the desk API's submission path on any body: the
// strict decoding, then validation against the built-in catalogue. It
// checks that nothing panics; that every refusal has a code, a status and
// a field; that the strict decoding accepts only JSON that encoding/json
// takes too, and never a key twice in one object in any case; and that a
// submission accepted is clean text throughout and is accepted again,
// unchanged, from its canonical encoding (the body intake stores).
//
// key drives a second check of the strict decoding, since random bytes
// seldom make two keys that differ only in case: an object holding key
// and a variant of it in another case (each character replaced by the
// next of its case-folding orbit) must be refused as a duplicate.
func FuzzDeskSubmission(f *testing.F) {
	keys := []string{"name", "national_id", "Kelvin", "straße", "ǅ", "σς", "İı", "\u212a"}
	for i, b := range benchBodies {
		f.Add([]byte(b.body), keys[i])
	}
	for _, body := range []string{
		`{"service_code":"driving-licence-renewal","citizen":{"national_id":"12345678","name":"Μαρία"},"attributes":{"licence_number":"L-1","categories":["A","B"],"medical_certificate_date":"2026-01-15"}}`,
		`{"service_code":"tax-id-certificate","citizen":{"national_id":"AB-12","name":"Rui"},"attributes":{"tax_number":"123456789","year":2025}}`,
		`{"citizen":{"national_id":"1111","NATIONAL_ID":"2222","name":"A"},"citizen":{"name":"B"}}`,
		`{"service_code":"birth-certificate","citizen":{"national_id":"12345678","name":"A\u202eB"},"attributes":{"format":"paper"}}`,
		`{"service_code":"birth-certificate","citizen":{"national_id":"12345678","name":"A"},"attributes":{"format":"paper","FORMAT":"online"}}`,
		`{"service_code":"social-benefit-application","citizen":{"national_id":"12345678","name":"A"},"attributes":{"social_security_number":"1","children":1e400,"notes":"a\nb\u0000"}}`,
		"{\"service_code\":\"birth-certificate\",\"citizen\":{\"national_id\":\"12345678\",\"name\":\"\xff\"}}",
		`[[[[[[[[[]]]]]]]]]`,
		// Short documents with keys a byte away from being the same (in
		// some case) help the fuzzer find duplicates.
		`{"z":1,"y":2}`,
		`{"a":{"k":"x","j":"y"},"b":[{"s":1,"r":2}]}`,
		`{"citizen":{"name":"A","namf":"B"}}`,
		`{"attributes":{"street":"x","streeu":"y","k0":1,"k1":2,"k2":3,"k3":4,"k4":5,"k5":6,"k6":7,"k7":8,"k8":9,"k9":0,"ka":1,"kb":2,"kc":3,"kd":4,"ke":5}}`,
		`{"\u017f":1,"r":2}`,
		`{"e\u0301":"\ud83d\ude00","\u212a":"\u00e7\n"}`,
	} {
		f.Add([]byte(body), keys[len(body)%len(keys)])
	}
	catalog := eventstest.Catalog(f)
	a := &API{cfg: Config{MaxBody: 64 << 10}}
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		wantCaseVariantRefused(t, key)
		sub, status, apiErr := decode(a, body)
		if fe := events.CheckJSON(body, events.SubmissionLimits()); fe == nil {
			if !json.Valid(body) {
				t.Fatalf("CheckJSON accepted what encoding/json finds invalid: %q", body)
			}
			if key := repeatedKey(body); key != "" {
				t.Fatalf("CheckJSON accepted the key %q twice in an object: %q", key, body)
			}
		} else if fe.Field == "" || fe.Code == "" || fe.Message == "" {
			t.Fatalf("CheckJSON refused %q without a field, code or message: %+v", body, fe)
		}
		if apiErr != nil {
			if apiErr.Field == "" || apiErr.Code == "" || apiErr.Message == "" {
				t.Fatalf("refused %q without a field, code or message: %+v", body, apiErr)
			}
			if status != http.StatusBadRequest && status != http.StatusUnprocessableEntity && status != http.StatusRequestEntityTooLarge {
				t.Fatalf("refused %q with status %d", body, status)
			}
			return
		}
		if _, err := catalog.Validate(sub); err != nil {
			var fe *events.FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Code == "" || fe.Message == "" {
				t.Fatalf("Validate refused %q without naming a field: %v", body, err)
			}
			return
		}
		wantClean(t, sub)
		canonical, err := json.Marshal(sub)
		if err != nil {
			t.Fatalf("encode the accepted %q: %v", body, err)
		}
		again, _, apiErr := decode(a, canonical)
		if apiErr != nil {
			t.Fatalf("the canonical form %s of the accepted %q is refused: %+v", canonical, body, apiErr)
		}
		if _, err := catalog.Validate(again); err != nil {
			t.Fatalf("the canonical form %s of the accepted %q does not validate: %v", canonical, body, err)
		}
		if twice, _ := json.Marshal(again); !bytes.Equal(twice, canonical) {
			t.Fatalf("the canonical form changed on a round trip:\n%s\n%s", canonical, twice)
		}
	})
}

// wantCaseVariantRefused checks that an object holding key and a variant
// of it in another case is refused, naming the variant.
func wantCaseVariantRefused(t *testing.T, key string) {
	t.Helper()
	variant := strings.Map(unicode.SimpleFold, key)
	k, _ := json.Marshal(key)
	v, _ := json.Marshal(variant)
	doc := []byte(`{` + string(k) + `:0,` + string(v) + `:1}`)
	fe := events.CheckJSON(doc, events.SubmissionLimits())
	switch {
	case !utf8.ValidString(key) || events.TextFault(key, true) != "" || events.TextFault(variant, true) != "" ||
		utf8.RuneCountInString(key) > events.MaxJSONString:
		if fe == nil {
			t.Fatalf("CheckJSON accepted the keys %q and %q", key, variant)
		}
	case fe == nil || fe.Code != events.CodeDuplicateField || fe.Field != cmp.Or(variant, "body"):
		t.Fatalf("CheckJSON(%s) = %+v, want %q refused as a duplicate of %q", doc, fe, variant, key)
	}
}

// decode runs the desk API's decoding of a submission's body.
func decode(a *API, body []byte) (*events.Submission, int, *jsonapi.Error) {
	r := httptest.NewRequest(http.MethodPost, "/v1/requests", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return a.decodeSubmission(httptest.NewRecorder(), r)
}

// wantClean checks that every text of an accepted submission is one that
// TextFault takes (multi-line for attributes, which may be texts).
func wantClean(t *testing.T, sub *events.Submission) {
	t.Helper()
	for field, v := range map[string]string{"service_code": sub.ServiceCode, "citizen.name": sub.Citizen.Name,
		"citizen.national_id": sub.Citizen.NationalID, "visit_id": sub.VisitID, "mediator": sub.Mediator} {
		if fault := events.TextFault(v, false); fault != "" {
			t.Fatalf("accepted %s %q, which %s", field, v, fault)
		}
	}
	for code, raw := range sub.Attributes {
		if fault := events.TextFault(code, false); fault != "" || !utf8.Valid(raw) {
			t.Fatalf("accepted attribute %q = %q", code, raw)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("accepted attribute %q = %q: %v", code, raw, err)
		}
		var texts []string
		switch v := v.(type) {
		case string:
			texts = []string{v}
		case []any:
			for _, e := range v {
				s, _ := e.(string)
				texts = append(texts, s)
			}
		}
		for _, s := range texts {
			if fault := events.TextFault(s, true); fault != "" {
				t.Fatalf("accepted attribute %q = %q, which %s", code, raw, fault)
			}
		}
	}
}

// repeatedKey walks data with encoding/json's tokens and returns a key
// that an object holds twice in any case (by strings.EqualFold), or "".
// It is slow and simple: the reference CheckJSON is held to.
func repeatedKey(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object bool
		keys   []string
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.key
		if top != nil && top.object {
			top.key = !top.key
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack = append(stack, &frame{object: true, key: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
		case string:
			if isKey {
				for _, k := range top.keys {
					if strings.EqualFold(k, tok) {
						return tok
					}
				}
				top.keys = append(top.keys, tok)
			}
		}
	}
}
