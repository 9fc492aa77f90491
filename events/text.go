package events

import (
	"fmt"
	"unicode/utf8"
)

// What a text field may hold. Every text that reaches spotflow from outside
// (a desk's JSON, an Open311 form, an agency's status event) is UTF-8 and
// free of characters that are invisible yet change what people or programs
// see:
//   - control characters (U+0000–U+001F, U+007F–U+009F), NUL among them,
//     which Postgres refuses in text and terminals and XML mishandle; only a
//     multi-line text (an attribute of datatype text) may hold tab, line
//     feed and carriage return;
//   - the line and paragraph separators U+2028 and U+2029, multi-line texts
//     only;
//   - Unicode's bidirectional embeddings, overrides and isolates (U+202A–
//     U+202E, U+2066–U+2069), which reorder what follows them on screen and
//     can make a name or an address read as something else on the citizen's
//     screen, a receipt or an agency's system ("Trojan Source"). The
//     implicit marks U+200E, U+200F and U+061C stay allowed: they carry no
//     state, and names and addresses that mix scripts need them;
//   - noncharacters (U+FDD0–U+FDEF and the last two code points of every
//     plane), which XML does not allow either.

// TextFault says why s may not be a text field's value, as a phrase that
// follows the field's name ("holds the control character U+0000"), or
// returns "" when it may be. multiline allows tab, line feed, carriage
// return and the line and paragraph separators.
func TextFault(s string, multiline bool) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		// U+00C0–U+07FF (Latin, Greek, Cyrillic, Hebrew, Arabic…): two
		// bytes, none of them refused.
		if c >= 0xc3 && c <= 0xdf && i+1 < len(s) && s[i+1]&0xc0 == 0x80 {
			i += 2
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return "is not valid UTF-8"
		}
		if fault := RuneFault(r, multiline); fault != "" {
			return fault
		}
		i += size
	}
	return ""
}

// RuneFault says why r may not be in a text field (see TextFault), or
// returns "".
func RuneFault(r rune, multiline bool) string {
	switch {
	case r >= 0x20 && r < 0x7f:
		return ""
	case r == '\t' || r == '\n' || r == '\r':
		if multiline {
			return ""
		}
		return fmt.Sprintf("holds the control character U+%04X, which only a multi-line text may hold", r)
	case r < 0x20 || (r >= 0x7f && r <= 0x9f):
		return fmt.Sprintf("holds the control character U+%04X", r)
	case r == 0x2028 || r == 0x2029:
		if multiline {
			return ""
		}
		return fmt.Sprintf("holds the line separator U+%04X, which only a multi-line text may hold", r)
	case (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return fmt.Sprintf("holds the bidirectional control U+%04X", r)
	case (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe:
		return fmt.Sprintf("holds the noncharacter U+%04X", r)
	case r >= 0xd800 && r <= 0xdfff, r > utf8.MaxRune:
		return "is not valid UTF-8"
	}
	return ""
}

// textError is the error of field whose value has fault (see TextFault).
func textError(field, fault string) *FieldError {
	return &FieldError{CodeInvalidValue, field, field + " " + fault}
}
