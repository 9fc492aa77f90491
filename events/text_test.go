package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
)

func TestTextFault_RefusesInvisibleAndInvalidCharacters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		s         string
		multiline bool
		want      string // "" for none, else a word of the fault
	}{
		{"plain text", "Maria da Conceição, Rua 5 (3.º)", false, ""},
		{"Greek, Arabic and an emoji", "Μαρία محمد 😀", false, ""},
		{"the implicit direction marks", "\u200fمحمد\u200e 12\u061c", false, ""},
		{"a multi-line text", "line 1\nline 2\r\n\tend\u2028", true, ""},
		{"a replacement character sent as such", "\ufffd", false, ""},
		{"NUL", "a\x00b", false, "U+0000"},
		{"NUL in a multi-line text", "a\x00b", true, "U+0000"},
		{"a tab in a single line", "a\tb", false, "U+0009"},
		{"a line feed in a single line", "a\nb", false, "U+000A"},
		{"a line separator in a single line", "a\u2028b", false, "U+2028"},
		{"a paragraph separator in a single line", "a\u2029b", false, "U+2029"},
		{"an escape", "\x1b[31m", true, "U+001B"},
		{"DEL", "\x7f", true, "U+007F"},
		{"a C1 control", "\u0085", true, "U+0085"},
		{"a left-to-right embedding", "\u202a", true, "U+202A"},
		{"a right-to-left override", "abc\u202edef", true, "U+202E"},
		{"a left-to-right isolate", "\u2066", true, "U+2066"},
		{"a pop directional isolate", "\u2069", true, "U+2069"},
		{"a noncharacter", "\ufdd0", true, "U+FDD0"},
		{"a plane's last code point", "\U0010ffff", true, "U+10FFFF"},
		{"a stray continuation byte", "caf\xa9", true, "UTF-8"},
		{"a cut sequence", "caf\xc3", true, "UTF-8"},
		{"an encoded surrogate", "\xed\xa0\x80", true, "UTF-8"},
		{"an overlong encoding", "\xc0\x80", true, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := events.TextFault(tt.s, tt.multiline)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("TextFault(%q, %v) = %q, want a fault naming %q", tt.s, tt.multiline, got, tt.want)
			}
		})
	}
}

func TestValidate_RefusesUnsafeTextInEveryField(t *testing.T) {
	t.Parallel()
	c := everyDatatypeCatalog(t)
	bad := map[string]string{
		"NUL":                  "a\x00b",
		"invalid UTF-8":        "Mar\xeda",
		"a right-to-left mark": "Rua \u202eacsiL",
		"an isolate":           "x\u2067y",
		"an escape":            "\x1b[2J",
		"a C1 control":         "x\u009bz",
	}
	fields := []struct {
		field string
		set   func(s *events.Submission, v string)
	}{
		{"service_code", func(s *events.Submission, v string) { s.ServiceCode = v }},
		{"citizen.name", func(s *events.Submission, v string) { s.Citizen.Name = v }},
		{"visit_id", func(s *events.Submission, v string) { s.VisitID = v }},
		{"mediator", func(s *events.Submission, v string) { s.Mediator = v }},
		{"attributes.street", func(s *events.Submission, v string) { s.Attributes["street"] = rawString(v) }},
		{"attributes.when", func(s *events.Submission, v string) { s.Attributes["when"] = rawString(v) }},
		{"attributes.notes", func(s *events.Submission, v string) { s.Attributes["notes"] = rawString(v) }},
		{"attributes.kind", func(s *events.Submission, v string) { s.Attributes["kind"] = rawString(v) }},
		{"attributes.tags", func(s *events.Submission, v string) {
			s.Attributes["tags"] = json.RawMessage(`["A",` + string(rawString(v)) + `]`)
		}},
	}
	for _, f := range fields {
		for what, v := range bad {
			t.Run(f.field+" with "+what, func(t *testing.T) {
				t.Parallel()
				s := goodSubmission()
				f.set(s, v)
				_, err := c.Validate(s)
				var fe *events.FieldError
				if !errors.As(err, &fe) || fe.Field != f.field || fe.Code != events.CodeInvalidValue {
					t.Fatalf("Validate: %v, want invalid_value on %s", err, f.field)
				}
			})
		}
	}
	t.Run("single-line fields refuse line breaks", func(t *testing.T) {
		t.Parallel()
		for _, f := range fields[:6] {
			s := goodSubmission()
			f.set(s, "Rua\nAugusta")
			_, err := c.Validate(s)
			var fe *events.FieldError
			if !errors.As(err, &fe) || fe.Field != f.field {
				t.Errorf("%s with a line feed: %v, want it refused", f.field, err)
			}
		}
	})
	t.Run("a text keeps its lines and its direction marks", func(t *testing.T) {
		t.Parallel()
		s := goodSubmission()
		s.Attributes["notes"] = rawString("Primeira linha\r\nSegunda\tlinha \u200fمحمد\u200e")
		s.Citizen.Name = "\u200fمحمد\u200e Silva"
		if _, err := c.Validate(s); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	t.Run("an attribute code that is not clean text", func(t *testing.T) {
		t.Parallel()
		s := goodSubmission()
		s.Attributes["street\x00"] = rawString("x")
		_, err := c.Validate(s)
		var fe *events.FieldError
		if !errors.As(err, &fe) || fe.Field != "attributes" || fe.Code != events.CodeUnknownField || strings.ContainsRune(fe.Message, 0) {
			t.Errorf("Validate: %v, want unknown_field on attributes, without the NUL", err)
		}
	})
	t.Run("a multivaluelist of more values than a JSON list may hold", func(t *testing.T) {
		t.Parallel()
		s := goodSubmission()
		s.Attributes["tags"] = json.RawMessage(`[` + strings.TrimSuffix(strings.Repeat(`"A",`, events.MaxJSONMembers+1), ",") + `]`)
		_, err := c.Validate(s)
		var fe *events.FieldError
		if !errors.As(err, &fe) || fe.Field != "attributes.tags" || fe.Code != events.CodeTooLarge {
			t.Errorf("Validate: %v, want too_large on attributes.tags", err)
		}
	})
}

// rawString is s as a JSON string, its bytes as they are: json.Marshal
// would replace invalid UTF-8, which an attribute's raw JSON can hold.
func rawString(s string) json.RawMessage {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return json.RawMessage(b.String())
}
