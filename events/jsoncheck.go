package events

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// JSONLimits bounds a JSON document that comes from outside. Zero fields
// do not bound.
type JSONLimits struct {
	// MaxDepth caps how deeply objects and arrays nest; the top-level
	// value is at depth 1.
	MaxDepth int
	// MaxMembers caps the keys of one object and the elements of one
	// array.
	MaxMembers int
	// MaxString caps the characters of one string, keys included.
	MaxString int
	// MaxNumber caps the length of one number as written.
	MaxNumber int
}

// Limits of a submission's JSON, the desk API's body; see CheckJSON.
const (
	// MaxJSONDepth: a submission nests three levels (the body, its
	// attributes, a list's values).
	MaxJSONDepth = 8
	// MaxJSONMembers caps the keys of an object and the elements of an
	// array, and so the values of a multivaluelist.
	MaxJSONMembers = 100
	// MaxJSONString is the longest string: the longest text attribute.
	MaxJSONString = maxTextLen
	// MaxJSONNumber is the longest number as written.
	MaxJSONNumber = 32
)

// SubmissionLimits are the limits of a submission's JSON.
func SubmissionLimits() JSONLimits {
	return JSONLimits{MaxDepth: MaxJSONDepth, MaxMembers: MaxJSONMembers, MaxString: MaxJSONString, MaxNumber: MaxJSONNumber}
}

// CheckJSON reads data as strictly as JSON allows, which encoding/json
// does not, and returns nil when it may be decoded, else a *FieldError
// naming the field at fault by its path (citizen.name; body when the
// fault is the whole document's):
//   - CodeMalformedJSON: not one well-formed JSON value;
//   - CodeDuplicateField: a key that an object holds twice, also in
//     another case (encoding/json would keep the last, and match either
//     to a field whatever its case);
//   - CodeTooLarge: nesting, or an object's or array's members, beyond lim;
//   - CodeInvalidValue: a string that is not valid UTF-8 (a byte or a
//     \u escape that is not; encoding/json would replace it silently),
//     holds a character TextFault refuses even in a multi-line text, or is
//     longer than lim allows; a number longer than lim allows or beyond
//     the range of a 64-bit float.
//
// It runs in one pass, in time linear in len(data), and allocates once,
// and again only for deep or wide documents and for the error.
func CheckJSON(data []byte, lim JSONLimits) *FieldError {
	return checkJSON(data, lim, "")
}

// checkJSON is CheckJSON for the value of the field root, which names the
// top level and begins the path of what it holds; "" stands for the
// body.
func checkJSON(data []byte, lim JSONLimits, root string) *FieldError {
	c := &jsonChecker{data: data, lim: lim, root: root}
	c.frames, c.keys, c.spans = c.frameBuf[:0], c.keyBuf[:0], c.spanBuf[:0]
	return c.check()
}

// jsonChecker is one run of CheckJSON.
type jsonChecker struct {
	data []byte
	pos  int
	lim  JSONLimits
	root string
	// frames are the objects and arrays open at pos, outermost first.
	frames []jsonFrame
	// keys holds the folded keys of the open objects, end to end; spans
	// delimits them, an object's after those of the objects it is in.
	keys  []byte
	spans []keySpan
	// seed hashes the keys of wide objects.
	seed maphash.Seed

	// Room for a submission's frames and keys, in the one allocation.
	frameBuf [4]jsonFrame
	keyBuf   [128]byte
	spanBuf  [16]keySpan
}

type keySpan struct{ start, end int }

// jsonFrame is an object or array open at the checker's position.
type jsonFrame struct {
	object bool
	// members counted so far.
	members int
	// firstSpan is the index in spans of the object's first key.
	firstSpan int
	// key is where the object's current key is written in data (quotes
	// included), for the path.
	keyStart, keyEnd int
	// set holds the hashes of the object's folded keys once it has many.
	set map[uint64]struct{}
}

// setAfter is how many keys an object may have before its keys are looked
// up in a map rather than compared one by one.
const setAfter = 16

func (c *jsonChecker) check() *FieldError {
	c.space()
	if err := c.value(); err != nil {
		return err
	}
	c.space()
	if c.pos != len(c.data) {
		return c.malformed("more than one JSON value")
	}
	return nil
}

func (c *jsonChecker) space() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value checks the value at pos and moves past it. Objects and arrays are
// walked without recursion, so nesting costs no stack.
func (c *jsonChecker) value() *FieldError {
	depth := len(c.frames)
	for {
		more, err := c.scalarOrOpen()
		if err != nil {
			return err
		}
		// A value ended: close what ends with it, up to the next value.
		for !more {
			if len(c.frames) == depth {
				return nil
			}
			f := &c.frames[len(c.frames)-1]
			c.space()
			if c.pos >= len(c.data) {
				return c.malformed("unexpected end of JSON")
			}
			switch b := c.data[c.pos]; {
			case f.object && b == '}', !f.object && b == ']':
				c.pos++
				c.close()
			case b == ',':
				c.pos++
				c.space()
				if err := c.next(f); err != nil {
					return err
				}
				more = true
			default:
				return c.malformed("expected a comma or the end of an object or array")
			}
		}
	}
}

// scalarOrOpen checks a scalar and moves past it, or opens an object or
// array and moves to its first value; more tells whether it did that
// (rather than read a scalar or an empty object or array).
func (c *jsonChecker) scalarOrOpen() (more bool, err *FieldError) {
	if c.pos >= len(c.data) {
		return false, c.malformed("unexpected end of JSON")
	}
	switch b := c.data[c.pos]; {
	case b == '{' || b == '[':
		if c.lim.MaxDepth > 0 && len(c.frames) >= c.lim.MaxDepth {
			return false, c.fault(CodeTooLarge, fmt.Sprintf("nests objects and arrays deeper than %d levels", c.lim.MaxDepth))
		}
		c.pos++
		c.frames = append(c.frames, jsonFrame{object: b == '{', firstSpan: len(c.spans), keyStart: -1})
		c.space()
		if c.pos < len(c.data) && (b == '{' && c.data[c.pos] == '}' || b == '[' && c.data[c.pos] == ']') {
			c.pos++
			c.close()
			return false, nil
		}
		return true, c.next(&c.frames[len(c.frames)-1])
	case b == '"':
		return false, c.str(false)
	case b == '-' || (b >= '0' && b <= '9'):
		return false, c.number()
	case b == 't':
		return false, c.literal("true")
	case b == 'f':
		return false, c.literal("false")
	case b == 'n':
		return false, c.literal("null")
	}
	return false, c.malformed("unexpected character")
}

// next counts the next member of f and moves to its value: past its key
// and colon, in an object.
func (c *jsonChecker) next(f *jsonFrame) *FieldError {
	f.members++
	f.keyStart = -1
	if !f.object {
		if c.lim.MaxMembers > 0 && f.members > c.lim.MaxMembers {
			return c.fault(CodeTooLarge, fmt.Sprintf("holds more than %d elements", c.lim.MaxMembers))
		}
		return nil
	}
	if c.lim.MaxMembers > 0 && f.members > c.lim.MaxMembers {
		return c.fault(CodeTooLarge, fmt.Sprintf("holds more than %d keys", c.lim.MaxMembers))
	}
	if c.pos >= len(c.data) || c.data[c.pos] != '"' {
		return c.malformed("expected a key")
	}
	start, keyStart := c.pos, len(c.keys)
	if err := c.str(true); err != nil {
		return err
	}
	f.keyStart, f.keyEnd = start, c.pos
	if err := c.unique(f, keyStart); err != nil {
		return err
	}
	c.space()
	if c.pos >= len(c.data) || c.data[c.pos] != ':' {
		return c.malformed("expected a colon after a key")
	}
	c.pos++
	c.space()
	return nil
}

// close ends the innermost object or array and forgets its keys.
func (c *jsonChecker) close() {
	f := &c.frames[len(c.frames)-1]
	if f.object && f.firstSpan < len(c.spans) {
		c.keys = c.keys[:c.spans[f.firstSpan].start]
		c.spans = c.spans[:f.firstSpan]
	}
	c.frames = c.frames[:len(c.frames)-1]
}

// unique refuses the key just folded into keys[keyStart:] when the object
// holds it already, in any case. A wide object's keys are looked up by
// their hashes, so that its keys take linear time; a key whose hash is
// known already is then compared with the object's keys, once.
func (c *jsonChecker) unique(f *jsonFrame, keyStart int) *FieldError {
	key := c.keys[keyStart:]
	seen := c.spans[f.firstSpan:]
	dup := false
	if len(seen) < setAfter {
		dup = c.among(key, seen)
	} else {
		if f.set == nil {
			c.seed = maphash.MakeSeed()
			f.set = make(map[uint64]struct{}, 4*setAfter)
			for _, s := range seen {
				f.set[maphash.Bytes(c.seed, c.keys[s.start:s.end])] = struct{}{}
			}
		}
		h := maphash.Bytes(c.seed, key)
		if _, known := f.set[h]; known {
			dup = c.among(key, seen)
		}
		f.set[h] = struct{}{}
	}
	if dup {
		return &FieldError{CodeDuplicateField, c.path(), c.path() + " repeats a key of its object: a key may appear once, in one case"}
	}
	c.spans = append(c.spans, keySpan{keyStart, len(c.keys)})
	return nil
}

// among reports whether key is one of the keys at spans.
func (c *jsonChecker) among(key []byte, spans []keySpan) bool {
	for _, s := range spans {
		if string(c.keys[s.start:s.end]) == string(key) {
			return true
		}
	}
	return false
}

// str checks the string at pos and moves past it; a key's folded form is
// added to keys.
func (c *jsonChecker) str(key bool) *FieldError {
	c.pos++ // the opening quote
	chars := 0
	for {
		if !key {
			// A run of printable ASCII, quote and backslash aside, needs
			// counting only.
			start := c.pos
			for c.pos < len(c.data) {
				if b := c.data[c.pos]; b < 0x20 || b >= 0x7f || b == '"' || b == '\\' {
					break
				}
				c.pos++
			}
			if chars += c.pos - start; c.lim.MaxString > 0 && chars > c.lim.MaxString {
				return c.textFault(key, fmt.Sprintf("is longer than %d characters", c.lim.MaxString))
			}
		}
		if c.pos >= len(c.data) {
			return c.malformed("unexpected end of JSON in a string")
		}
		b := c.data[c.pos]
		var r rune
		switch {
		case b == '"':
			c.pos++
			return nil
		case b < 0x20:
			return c.malformed("a control character in a string must be escaped")
		case b == '\\':
			var err *FieldError
			if r, err = c.escape(key); err != nil {
				return err
			}
		case b < utf8.RuneSelf:
			r = rune(b)
			c.pos++
		case !key && b >= 0xc3 && b <= 0xdf && c.pos+1 < len(c.data) && c.data[c.pos+1]&0xc0 == 0x80:
			// U+00C0–U+07FF: two bytes, none of them refused (TextFault).
			c.pos += 2
			if chars++; c.lim.MaxString > 0 && chars > c.lim.MaxString {
				return c.textFault(key, fmt.Sprintf("is longer than %d characters", c.lim.MaxString))
			}
			continue
		default:
			var size int
			r, size = utf8.DecodeRune(c.data[c.pos:])
			if r == utf8.RuneError && size == 1 {
				return c.textFault(key, "is not valid UTF-8")
			}
			c.pos += size
		}
		if r >= 0x7f || r < 0x20 {
			if fault := RuneFault(r, true); fault != "" {
				return c.textFault(key, fault)
			}
		}
		if chars++; c.lim.MaxString > 0 && chars > c.lim.MaxString {
			return c.textFault(key, fmt.Sprintf("is longer than %d characters", c.lim.MaxString))
		}
		if key {
			c.keys = appendFolded(c.keys, r)
		}
	}
}

// escape reads the escape at pos and returns the character it stands for.
func (c *jsonChecker) escape(key bool) (rune, *FieldError) {
	if c.pos+1 >= len(c.data) {
		return 0, c.malformed("unexpected end of JSON in a string")
	}
	c.pos += 2
	switch c.data[c.pos-1] {
	case '"', '\\', '/':
		return rune(c.data[c.pos-1]), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
	default:
		return 0, c.malformed("an unknown escape in a string")
	}
	r, ok := c.hex4()
	if !ok {
		return 0, c.malformed(`a \u escape without four hexadecimal digits`)
	}
	switch {
	case r >= 0xdc00 && r <= 0xdfff:
		return 0, c.textFault(key, "is not valid UTF-16: a low surrogate without a high one")
	case r >= 0xd800 && r <= 0xdbff:
		if c.pos+1 >= len(c.data) || c.data[c.pos] != '\\' || c.data[c.pos+1] != 'u' {
			return 0, c.textFault(key, "is not valid UTF-16: a high surrogate without a low one")
		}
		c.pos += 2
		lo, ok := c.hex4()
		if !ok {
			return 0, c.malformed(`a \u escape without four hexadecimal digits`)
		}
		if lo < 0xdc00 || lo > 0xdfff {
			return 0, c.textFault(key, "is not valid UTF-16: a high surrogate without a low one")
		}
		r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
	}
	return r, nil
}

func (c *jsonChecker) hex4() (rune, bool) {
	if c.pos+4 > len(c.data) {
		return 0, false
	}
	var r rune
	for _, b := range c.data[c.pos : c.pos+4] {
		switch {
		case b >= '0' && b <= '9':
			r = r<<4 | rune(b-'0')
		case b >= 'a' && b <= 'f':
			r = r<<4 | rune(b-'a'+10)
		case b >= 'A' && b <= 'F':
			r = r<<4 | rune(b-'A'+10)
		default:
			return 0, false
		}
	}
	c.pos += 4
	return r, true
}

// number checks the number at pos, as JSON writes numbers, and moves past
// it.
func (c *jsonChecker) number() *FieldError {
	start := c.pos
	digits := func() int {
		n := 0
		for c.pos < len(c.data) && c.data[c.pos] >= '0' && c.data[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n
	}
	if c.data[c.pos] == '-' {
		c.pos++
	}
	switch {
	case c.pos < len(c.data) && c.data[c.pos] == '0':
		c.pos++
	case digits() == 0:
		return c.malformed("a number without digits")
	}
	exponent := false
	if c.pos < len(c.data) && c.data[c.pos] == '.' {
		c.pos++
		if digits() == 0 {
			return c.malformed("a number without digits after its decimal point")
		}
	}
	if c.pos < len(c.data) && (c.data[c.pos] == 'e' || c.data[c.pos] == 'E') {
		exponent = true
		c.pos++
		if c.pos < len(c.data) && (c.data[c.pos] == '+' || c.data[c.pos] == '-') {
			c.pos++
		}
		if digits() == 0 {
			return c.malformed("a number without digits in its exponent")
		}
	}
	lit := c.data[start:c.pos]
	if c.lim.MaxNumber > 0 && len(lit) > c.lim.MaxNumber {
		return c.fault(CodeInvalidValue, fmt.Sprintf("holds a number longer than %d characters", c.lim.MaxNumber))
	}
	// Without an exponent, MaxNumber digits are well within range.
	if exponent || c.lim.MaxNumber == 0 || c.lim.MaxNumber > 300 {
		if _, err := strconv.ParseFloat(string(lit), 64); err != nil {
			return c.fault(CodeInvalidValue, "holds a number beyond the range of a 64-bit float")
		}
	}
	return nil
}

func (c *jsonChecker) literal(word string) *FieldError {
	if len(c.data)-c.pos < len(word) || string(c.data[c.pos:c.pos+len(word)]) != word {
		return c.malformed("unexpected character")
	}
	c.pos += len(word)
	return nil
}

func (c *jsonChecker) malformed(why string) *FieldError {
	if c.root != "" {
		return &FieldError{CodeMalformedJSON, c.root, fmt.Sprintf("%s is not valid JSON: %s at byte %d", c.root, why, c.pos)}
	}
	return &FieldError{CodeMalformedJSON, "body", fmt.Sprintf("the body is not valid JSON: %s at byte %d", why, c.pos)}
}

// fault is the error of the value at pos, named by its path.
func (c *jsonChecker) fault(code, why string) *FieldError {
	p := c.path()
	return &FieldError{code, p, p + " " + why}
}

// textFault is the error of the string at pos: a value's, named by its
// path, or a key's, named by its object's.
func (c *jsonChecker) textFault(key bool, why string) *FieldError {
	if key {
		p := c.path()
		if p == "body" {
			return &FieldError{CodeInvalidValue, p, "a key of the body " + why}
		}
		return &FieldError{CodeInvalidValue, p, fmt.Sprintf("a key of %s %s", p, why)}
	}
	return c.fault(CodeInvalidValue, why)
}

// path names the value being read by the keys of the objects it is in,
// joined by dots: attributes.street. Array elements go by their array's
// name; an object's key being read, by its object's. The top level is
// body.
func (c *jsonChecker) path() string {
	var b strings.Builder
	b.WriteString(c.root)
	for _, f := range c.frames {
		if !f.object || f.keyStart < 0 {
			continue
		}
		var k string
		if err := json.Unmarshal(c.data[f.keyStart:f.keyEnd], &k); err != nil {
			k = "?"
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// appendFolded adds r to b folded as encoding/json folds keys to match
// them to fields: to the smallest rune of its case-folding orbit, so that
// keys equal under Unicode simple case folding fold the same.
func appendFolded(b []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return append(b, byte(r))
	}
	for {
		next := unicode.SimpleFold(r)
		if next <= r {
			r = next
			break
		}
		r = next
	}
	return utf8.AppendRune(b, r)
}
