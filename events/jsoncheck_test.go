package events_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
)

func TestCheckJSON_RefusesWhatEncodingJSONWouldTakeSilently(t *testing.T) {
	t.Parallel()
	manyKeys := func(extra string) string {
		var b strings.Builder
		b.WriteString(`{"attributes":{`)
		for i := range 40 {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(extra + `}}`)
		return b.String()
	}
	nested := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }
	list := func(n int) string { return `{"tags":[` + strings.TrimSuffix(strings.Repeat(`"A",`, n), ",") + `]}` }
	object := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"attributes":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%d":1`, i)
		}
		b.WriteString(`}}`)
		return b.String()
	}
	tests := []struct {
		name, body  string
		code, field string
	}{
		{"the issue's citizen given twice, with a national_id in two cases",
			`{"citizen":{"national_id":"1111","NATIONAL_ID":"2222","name":"A"},"citizen":{"name":"B"}}`,
			events.CodeDuplicateField, "citizen.NATIONAL_ID"},
		{"a top-level key twice", `{"service_code":"a","service_code":"b"}`, events.CodeDuplicateField, "service_code"},
		{"an object given twice", `{"citizen":{"name":"A"},"citizen":{"name":"B"}}`, events.CodeDuplicateField, "citizen"},
		{"a key in another case", `{"mediator":"a","Mediator":"b"}`, events.CodeDuplicateField, "Mediator"},
		{"an attribute twice", `{"attributes":{"street":"a","street":"b"}}`, events.CodeDuplicateField, "attributes.street"},
		{"a key twice deep in an array", `{"attributes":{"x":[1,{"a":1,"A":2}]}}`, events.CodeDuplicateField, "attributes.x.A"},
		{"a key folded by Unicode (the Kelvin sign)", `{"k":1,"\u212a":2}`, events.CodeDuplicateField, "\u212a"},
		{"a key folded by Unicode (the long s)", `{"s":1,"ſ":2}`, events.CodeDuplicateField, "ſ"},
		{"a key written with an escape", `{"name":1,"n\u0061me":2}`, events.CodeDuplicateField, "name"},
		{"a duplicate among many keys", manyKeys(`"K7":7`), events.CodeDuplicateField, "attributes.K7"},
		{"a NUL escaped", `{"citizen":{"name":"Maria\u0000"}}`, events.CodeInvalidValue, "citizen.name"},
		{"a byte that is not UTF-8", "{\"citizen\":{\"name\":\"Mar\xeda\"}}", events.CodeInvalidValue, "citizen.name"},
		{"an overlong UTF-8 encoding", "{\"visit_id\":\"\xc0\xaf\"}", events.CodeInvalidValue, "visit_id"},
		{"a UTF-8 encoded surrogate", "{\"visit_id\":\"\xed\xa0\x80\"}", events.CodeInvalidValue, "visit_id"},
		{"a lone high surrogate", `{"attributes":{"street":"\ud800"}}`, events.CodeInvalidValue, "attributes.street"},
		{"a high surrogate before a letter", `{"attributes":{"street":"\ud800\u0041"}}`, events.CodeInvalidValue, "attributes.street"},
		{"a lone low surrogate", `{"attributes":{"street":"\udc00x"}}`, events.CodeInvalidValue, "attributes.street"},
		{"a right-to-left override", `{"attributes":{"street":"Rua \u202eacsiL"}}`, events.CodeInvalidValue, "attributes.street"},
		{"a bidirectional isolate written raw", "{\"mediator\":\"m\u2066-17\"}", events.CodeInvalidValue, "mediator"},
		{"a C1 control", `{"mediator":"m\u0085"}`, events.CodeInvalidValue, "mediator"},
		{"DEL", `{"mediator":"m\u007f"}`, events.CodeInvalidValue, "mediator"},
		{"a backspace", `{"mediator":"m\b"}`, events.CodeInvalidValue, "mediator"},
		{"a noncharacter", `{"mediator":"\uffff"}`, events.CodeInvalidValue, "mediator"},
		{"a NUL in a value in a list", `{"attributes":{"tags":["A","\u0000"]}}`, events.CodeInvalidValue, "attributes.tags"},
		{"a NUL in a key", `{"attributes":{"street\u0000":"x"}}`, events.CodeInvalidValue, "attributes"},
		{"a NUL in a top-level key", `{"\u0000":"x"}`, events.CodeInvalidValue, "body"},
		{"a string one character too long", `{"attributes":{"notes":"` + strings.Repeat("ã", events.MaxJSONString+1) + `"}}`, events.CodeInvalidValue, "attributes.notes"},
		{"a key too long", `{"` + strings.Repeat("k", events.MaxJSONString+1) + `":1}`, events.CodeInvalidValue, "body"},
		{"a number too long", `{"attributes":{"count":1.` + strings.Repeat("0", events.MaxJSONNumber) + `}}`, events.CodeInvalidValue, "attributes.count"},
		{"a number beyond float64", `{"attributes":{"count":1e400}}`, events.CodeInvalidValue, "attributes.count"},
		{"a negative number beyond float64", `{"attributes":{"count":-2e308}}`, events.CodeInvalidValue, "attributes.count"},
		{"nesting one level too deep", nested(events.MaxJSONDepth + 1), events.CodeTooLarge, strings.TrimSuffix(strings.Repeat("a.", events.MaxJSONDepth), ".")},
		{"arrays nested too deep", strings.Repeat("[", events.MaxJSONDepth+1) + strings.Repeat("]", events.MaxJSONDepth+1), events.CodeTooLarge, "body"},
		{"a list one element too long", list(events.MaxJSONMembers + 1), events.CodeTooLarge, "tags"},
		{"an object one key too many", object(events.MaxJSONMembers + 1), events.CodeTooLarge, "attributes"},
		{"nothing", ``, events.CodeMalformedJSON, "body"},
		{"only space", " \n", events.CodeMalformedJSON, "body"},
		{"an unterminated object", `{"a":1`, events.CodeMalformedJSON, "body"},
		{"an unterminated string", `{"a":"x`, events.CodeMalformedJSON, "body"},
		{"an unterminated escape", `{"a":"x\`, events.CodeMalformedJSON, "body"},
		{"a trailing comma", `{"a":[1,2,]}`, events.CodeMalformedJSON, "body"},
		{"a trailing comma in an object", `{"a":1,}`, events.CodeMalformedJSON, "body"},
		{"a leading zero", `{"a":01}`, events.CodeMalformedJSON, "body"},
		{"a bare decimal point", `{"a":1.}`, events.CodeMalformedJSON, "body"},
		{"a bare exponent", `{"a":1e}`, events.CodeMalformedJSON, "body"},
		{"a plus sign", `{"a":+1}`, events.CodeMalformedJSON, "body"},
		{"a minus alone", `{"a":-}`, events.CodeMalformedJSON, "body"},
		{"NaN", `{"a":NaN}`, events.CodeMalformedJSON, "body"},
		{"a misspelt literal", `{"a":tru}`, events.CodeMalformedJSON, "body"},
		{"a cut literal", `{"a":nul`, events.CodeMalformedJSON, "body"},
		{"an unknown escape", `{"a":"\x41"}`, events.CodeMalformedJSON, "body"},
		{"a short \\u escape", `{"a":"\u12"}`, events.CodeMalformedJSON, "body"},
		{"a raw tab in a string", "{\"a\":\"x\ty\"}", events.CodeMalformedJSON, "body"},
		{"a key without quotes", `{a:1}`, events.CodeMalformedJSON, "body"},
		{"a missing colon", `{"a" 1}`, events.CodeMalformedJSON, "body"},
		{"two values", `{} {}`, events.CodeMalformedJSON, "body"},
		{"a byte order mark", "\ufeff{}", events.CodeMalformedJSON, "body"},
		{"a closing bracket for a brace", `{"a":1]`, events.CodeMalformedJSON, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fe := events.CheckJSON([]byte(tt.body), events.SubmissionLimits())
			if fe == nil {
				t.Fatalf("CheckJSON accepted %.120q", tt.body)
			}
			if fe.Code != tt.code || fe.Field != tt.field {
				t.Errorf("{Code: %q, Field: %q}, want {Code: %q, Field: %q} (message %q)", fe.Code, fe.Field, tt.code, tt.field, fe.Message)
			}
			if fe.Message == "" {
				t.Error("the error has no message for people")
			}
		})
	}
}

func TestCheckJSON_AcceptsJSONWithinTheLimits(t *testing.T) {
	t.Parallel()
	nested := func(n int) string { return strings.Repeat(`{"a":`, n-1) + `[]` + strings.Repeat(`}`, n-1) }
	tests := []struct{ name, body string }{
		{"a submission", `{"service_code":"change-of-address","citizen":{"national_id":"12345678","name":"Maria Silva"},"attributes":{"street":"Rua Augusta 1"}}`},
		{"space everywhere", " {\n\t\"a\" : [ 1 , { } , [ ] , \"x\" ] ,\r\n \"b\" : null } \n"},
		{"every literal and number form", `[true,false,null,0,-0,1.5,-2.25e-3,1E+2,123456789]`},
		{"the same key in different objects", `{"a":{"a":1},"b":{"a":2},"c":[{"a":1},{"a":1}]}`},
		{"keys that differ by more than case", `{"name":1,"names":2,"nome":3,"":4}`},
		{"many distinct keys", func() string {
			var b strings.Builder
			b.WriteString("{")
			for i := range events.MaxJSONMembers {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `"key-%d":%d`, i, i)
			}
			return b.String() + "}"
		}()},
		{"escapes, a surrogate pair and a multi-line text", `{"notes":"line 1\nline 2\r\n\ttab \"quoted\" \\ \/ \u00e7 \ud83d\ude00 \u2028"}`},
		{"the implicit direction marks", `{"citizen":{"name":"\u200fمحمد\u200e 12\u061c"}}`},
		{"nesting at the limit", nested(events.MaxJSONDepth)},
		{"a list at the limit", `{"tags":[` + strings.TrimSuffix(strings.Repeat(`"A",`, events.MaxJSONMembers), ",") + `]}`},
		{"a string at the limit", `{"notes":"` + strings.Repeat("ç", events.MaxJSONString) + `"}`},
		{"a number at the limit", `{"n":1.` + strings.Repeat("5", events.MaxJSONNumber-2) + `}`},
		{"the largest float64", `{"n":1.7976931348623157e308}`},
		{"a scalar", `"text"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !json.Valid([]byte(tt.body)) {
				t.Fatalf("the test's body is not JSON: %.80q", tt.body)
			}
			if fe := events.CheckJSON([]byte(tt.body), events.SubmissionLimits()); fe != nil {
				t.Errorf("CheckJSON refused it: %+v", fe)
			}
		})
	}
}

func TestCheckJSON_TakesLinearTimeOnManyKeys(t *testing.T) {
	// One object with as many keys as 64 KiB holds (some 9,000): compared
	// one by one, they would take a quadratic 40 million comparisons.
	// Without a limit on members, it must pass in linear time, and
	// allocate for the growth of its buffers and map, not for each key.
	var b strings.Builder
	b.WriteString("{")
	for i := 0; b.Len() < 64<<10; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%x":0`, i)
	}
	b.WriteString("}")
	body := []byte(b.String())
	lim := events.SubmissionLimits()
	lim.MaxMembers = 0
	allocs := testing.AllocsPerRun(5, func() {
		if fe := events.CheckJSON(body, lim); fe != nil {
			t.Fatalf("CheckJSON: %+v", fe)
		}
	})
	if allocs > 500 {
		t.Errorf("CheckJSON allocated %.0f times for one wide object, want only its buffers' and map's growth", allocs)
	}
}

func TestDecodeSubmission_ReadsASubmissionStrictly(t *testing.T) {
	t.Parallel()
	sub, fe := events.DecodeSubmission([]byte(`{"service_code":"change-of-address","citizen":{"national_id":"12345678","name":"Maria"},` +
		`"attributes":{"street":"Rua Augusta 1","tags":["A"]},"visit_id":"v-1","mediator":"m-17",` +
		`"consent":{"version":"2026-12-01","language":"pt","at":"2026-12-06T10:00:00Z"}}`))
	if fe != nil {
		t.Fatalf("DecodeSubmission: %+v", fe)
	}
	if sub.ServiceCode != "change-of-address" || sub.Citizen.NationalID != "12345678" || sub.Citizen.Name != "Maria" ||
		string(sub.Attributes["street"]) != `"Rua Augusta 1"` || string(sub.Attributes["tags"]) != `["A"]` || sub.VisitID != "v-1" || sub.Mediator != "m-17" ||
		sub.Consent == nil || sub.Consent.Version != "2026-12-01" || sub.Consent.Language != "pt" || sub.Consent.At.IsZero() {
		t.Errorf("decoded %+v", sub)
	}
	tests := []struct {
		name, body  string
		code, field string
	}{
		{"the issue's duplicate citizen", `{"citizen":{"national_id":"1111","NATIONAL_ID":"2222","name":"A"},"citizen":{"name":"B"}}`, events.CodeDuplicateField, "citizen.NATIONAL_ID"},
		{"a field in another case", `{"Service_Code":"change-of-address"}`, events.CodeUnknownField, "Service_Code"},
		{"a citizen field in another case", `{"citizen":{"Name":"A"}}`, events.CodeUnknownField, "citizen.Name"},
		{"an array", `[]`, events.CodeMalformedJSON, "body"},
		{"null", `null`, events.CodeMalformedJSON, "body"},
		{"a name of the wrong type", `{"citizen":{"name":1}}`, events.CodeInvalidType, "citizen.name"},
		{"an invalid UTF-8 attribute", "{\"attributes\":{\"street\":\"\xff\"}}", events.CodeInvalidValue, "attributes.street"},
		{"an unknown consent field", `{"consent":{"version":"v1","language":"pt","text":"I agree"}}`, events.CodeUnknownField, "consent.text"},
		{"a consent time that is not one", `{"consent":{"version":"v1","language":"pt","at":"yesterday"}}`, events.CodeMalformedJSON, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sub, fe := events.DecodeSubmission([]byte(tt.body))
			if fe == nil {
				t.Fatalf("decoded %+v", sub)
			}
			if fe.Code != tt.code || fe.Field != tt.field {
				t.Errorf("{Code: %q, Field: %q}, want {Code: %q, Field: %q} (message %q)", fe.Code, fe.Field, tt.code, tt.field, fe.Message)
			}
		})
	}
}

// BenchmarkCheckJSON measures the strict pass alone, on a typical
// submission and on one with a long text.
func BenchmarkCheckJSON(b *testing.B) {
	for _, bb := range []struct{ name, body string }{
		{"typical", `{"service_code":"change-of-address","citizen":{"national_id":"12345678","name":"Maria da Conceição Silva"},` +
			`"attributes":{"street":"Rua Augusta 10, 3.º esq.","postal_code":"1100-053","locality":"Lisboa","effective_date":"2026-02-01"},` +
			`"visit_id":"visit-2026-0001","mediator":"m-17"}`},
		{"long text", `{"service_code":"patent-application","citizen":{"national_id":"12345678","name":"Maria da Conceição Silva"},` +
			`"attributes":{"title":"Um dispositivo","summary":"` + strings.Repeat("Descrição do invento, ", 180) + `","inventors":3}}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			data := []byte(bb.body)
			lim := events.SubmissionLimits()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if fe := events.CheckJSON(data, lim); fe != nil {
					b.Fatal(fe)
				}
			}
		})
	}
}
