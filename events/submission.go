package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Submission is what a desk sends to submit a request. The desk and its
// municipality are not part of it: they come from the desk's credential.
type Submission struct {
	ServiceCode string                     `json:"service_code"`
	Citizen     *Citizen                   `json:"citizen"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	VisitID     string                     `json:"visit_id,omitempty"`
	Mediator    string                     `json:"mediator,omitempty"`
	// Consent is the citizen's consent to the processing, when the desk
	// recorded it: the version of the catalogue's consent text, the
	// language it was shown in, and when (intake's time when left out).
	Consent *ConsentGiven `json:"consent,omitempty"`
	// Practice makes the submission a training request. Only the desk
	// application sets it, for a session in training mode; no API takes it.
	Practice *Practice `json:"-"`
}

// Limits on the free-form parts of a submission.
const (
	maxStringLen = 255
	maxTextLen   = 4000
	maxIDLen     = 64
)

// Fields a submission's JSON may carry, by the object they belong to.
var (
	submissionFields = []string{"service_code", "citizen", "attributes", "visit_id", "mediator", "consent"}
	citizenFields    = []string{"national_id", "name"}
	consentFields    = []string{"version", "language", "at"}
)

// DecodeSubmission reads a submission's JSON strictly: the body passes
// CheckJSON with SubmissionLimits (no duplicate or case-variant keys at
// any depth, only valid and safe text, bounded sizes), is an object with
// only a submission's fields, and each field has the right JSON type. The
// error names the first offending field: CodeMalformedJSON, CodeTooLarge,
// CodeDuplicateField, CodeUnknownField or CodeInvalidType, or
// CodeInvalidValue for a text or number CheckJSON refuses. It does not
// check the submission against the catalogue: that is Validate's work.
func DecodeSubmission(body []byte) (*Submission, *FieldError) {
	if fe := CheckJSON(body, SubmissionLimits()); fe != nil {
		return nil, fe
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, &FieldError{CodeMalformedJSON, "body", "the body must be a JSON object"}
	}
	if f := unknownField(top, submissionFields, ""); f != "" {
		return nil, &FieldError{CodeUnknownField, f, fmt.Sprintf("unknown field %q", f)}
	}
	for _, obj := range []struct {
		name   string
		fields []string
	}{{"citizen", citizenFields}, {"consent", consentFields}} {
		var fields map[string]json.RawMessage
		if raw, ok := top[obj.name]; ok && json.Unmarshal(raw, &fields) == nil {
			if f := unknownField(fields, obj.fields, obj.name+"."); f != "" {
				return nil, &FieldError{CodeUnknownField, f, fmt.Sprintf("unknown field %q", f)}
			}
		}
	}
	var sub Submission
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sub); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, &FieldError{CodeInvalidType, typeErr.Field, fmt.Sprintf("%s must be of JSON type %s", typeErr.Field, jsonType(typeErr))}
		}
		return nil, &FieldError{CodeMalformedJSON, "body", "the body is not valid JSON"}
	}
	return &sub, nil
}

// unknownField returns the first key of obj, by prefix, that is not among
// known, or "".
func unknownField(obj map[string]json.RawMessage, known []string, prefix string) string {
	for k := range obj {
		if !slices.Contains(known, k) {
			return prefix + k
		}
	}
	return ""
}

func jsonType(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "string":
		return "string"
	case "map", "struct", "ptr":
		return "object"
	case "slice":
		return "array"
	}
	return e.Type.String()
}

// Validate checks s against the catalogue and the service's attributes,
// compacts attribute values in place, and returns the service. The error is a
// *FieldError naming the first offending field.
func (c *Catalog) Validate(s *Submission) (*Service, error) {
	if s.ServiceCode == "" {
		return nil, &FieldError{CodeRequired, "service_code", "service_code is required"}
	}
	if fault := TextFault(s.ServiceCode, false); fault != "" {
		return nil, textError("service_code", fault)
	}
	svc, ok := c.Service(s.ServiceCode)
	if !ok {
		return nil, &FieldError{CodeUnknownService, "service_code", fmt.Sprintf("no service has code %q", s.ServiceCode)}
	}
	if s.Practice != nil {
		if !svc.Training {
			return nil, &FieldError{CodeInvalidValue, "service_code", fmt.Sprintf("service %q may not be practised in training mode", s.ServiceCode)}
		}
		if err := s.Practice.Check(); err != nil {
			return nil, &FieldError{CodeInvalidValue, "practice", err.Error()}
		}
	}
	if err := validateCitizen(s.Citizen); err != nil {
		return nil, err
	}
	if err := checkShortID("visit_id", s.VisitID); err != nil {
		return nil, err
	}
	if err := checkShortID("mediator", s.Mediator); err != nil {
		return nil, err
	}
	if err := c.validateConsent(s.Consent); err != nil {
		return nil, err
	}
	if err := svc.validateAttributes(s.Attributes); err != nil {
		return nil, err
	}
	return svc, nil
}

// validateConsent checks a consent, when one is given: a version, a
// language of the catalogue's, and a time not ahead of now.
func (c *Catalog) validateConsent(g *ConsentGiven) error {
	if g == nil {
		return nil
	}
	switch {
	case g.Version == "":
		return &FieldError{CodeRequired, "consent.version", "consent.version is required: the version of the consent text shown"}
	case g.Language == "":
		return &FieldError{CodeRequired, "consent.language", "consent.language is required: the language the consent text was shown in"}
	case !slices.Contains(c.Languages, g.Language) && g.Language != DefaultLanguage:
		return &FieldError{CodeInvalidValue, "consent.language", fmt.Sprintf("consent.language %q is not one of the catalogue's languages", g.Language)}
	case g.At.After(time.Now().Add(time.Minute)):
		return &FieldError{CodeInvalidValue, "consent.at", "consent.at is in the future"}
	}
	return checkShortID("consent.version", g.Version)
}

// CheckCitizen checks a citizen's national ID and name as a submission's
// are checked: a *FieldError names the field (citizen.national_id,
// citizen.name).
func CheckCitizen(c *Citizen) error { return validateCitizen(c) }

func validateCitizen(c *Citizen) error {
	if c == nil {
		return &FieldError{CodeRequired, "citizen", "citizen is required"}
	}
	id := c.NationalID
	switch {
	case id == "":
		return &FieldError{CodeRequired, "citizen.national_id", "citizen.national_id is required"}
	case len(id) < 4 || len(id) > 32 || strings.IndexFunc(id, notIDRune) >= 0:
		return &FieldError{CodeInvalidValue, "citizen.national_id", "citizen.national_id must be 4 to 32 letters, digits or '-'"}
	case strings.TrimSpace(c.Name) == "":
		return &FieldError{CodeRequired, "citizen.name", "citizen.name is required"}
	case utf8.RuneCountInString(c.Name) > maxStringLen:
		return &FieldError{CodeInvalidValue, "citizen.name", fmt.Sprintf("citizen.name is longer than %d characters", maxStringLen)}
	}
	if fault := TextFault(c.Name, false); fault != "" {
		return textError("citizen.name", fault)
	}
	return nil
}

func notIDRune(r rune) bool {
	return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'))
}

func checkShortID(field, v string) error {
	if len(v) > maxIDLen {
		return &FieldError{CodeInvalidValue, field, fmt.Sprintf("%s must be at most %d printable characters", field, maxIDLen)}
	}
	if fault := TextFault(v, false); fault != "" {
		return textError(field, fault)
	}
	return nil
}

func (s *Service) validateAttributes(attrs map[string]json.RawMessage) error {
	for code := range attrs {
		if fault := TextFault(code, false); fault != "" {
			return &FieldError{CodeUnknownField, "attributes", "the code of an attribute " + fault}
		}
		if !slices.ContainsFunc(s.Attributes, func(a Attribute) bool { return a.Code == code }) {
			return &FieldError{CodeUnknownField, "attributes." + code, fmt.Sprintf("service %q has no attribute %q", s.Code, code)}
		}
	}
	for i := range s.Attributes {
		if err := s.Attributes[i].validate(attrs); err != nil {
			return err
		}
	}
	return nil
}

// validate checks the attribute's value in attrs, if any, and compacts it
// in place.
func (a *Attribute) validate(attrs map[string]json.RawMessage) error {
	raw, ok := attrs[a.Code]
	if !ok || string(raw) == "null" {
		if a.Required {
			return &FieldError{CodeRequired, "attributes." + a.Code, fmt.Sprintf("attribute %q is required", a.Code)}
		}
		return nil
	}
	if err := checkRaw(a.Code, raw); err != nil {
		return err
	}
	if err := a.check(raw); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err == nil {
		attrs[a.Code] = buf.Bytes()
	}
	return nil
}

// Problems checks s as Validate does, but reports every offending field
// instead of the first, for a form that shows them all at once: the
// citizen's, the consent's, then each attribute's, in the service's order.
// None means Validate accepts s.
func (c *Catalog) Problems(s *Submission) []*FieldError {
	var out []*FieldError
	add := func(err error) {
		var fe *FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
		}
	}
	svc, ok := c.Service(s.ServiceCode)
	if !ok {
		_, err := c.Validate(s)
		add(err)
		return out
	}
	add(validateCitizen(s.Citizen))
	add(checkShortID("visit_id", s.VisitID))
	add(checkShortID("mediator", s.Mediator))
	add(c.validateConsent(s.Consent))
	for code := range s.Attributes {
		if !slices.ContainsFunc(svc.Attributes, func(a Attribute) bool { return a.Code == code }) {
			add(&FieldError{CodeUnknownField, "attributes." + code, fmt.Sprintf("service %q has no attribute %q", s.ServiceCode, code)})
		}
	}
	attrs := slices.Clone(svc.Attributes)
	slices.SortStableFunc(attrs, func(a, b Attribute) int { return a.Order - b.Order })
	for i := range attrs {
		add(attrs[i].validate(s.Attributes))
	}
	return out
}

// checkRaw refuses an attribute's raw JSON that decoding would change
// silently: a byte that is not UTF-8 or an escape of half a surrogate
// (both replaced). A desk's JSON was checked whole already
// (DecodeSubmission); this is for submissions made otherwise, and costs a
// full check (CheckJSON's) only for JSON with escapes or bytes that are
// not UTF-8. What else CheckJSON refuses makes the value of the wrong type
// for every datatype (a key twice, nesting) or check refuses it (long
// strings, long lists).
func checkRaw(code string, raw json.RawMessage) error {
	if utf8.Valid(raw) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil
	}
	fe := checkJSON(raw, SubmissionLimits(), "attributes."+code)
	if fe != nil && fe.Code == CodeMalformedJSON {
		return &FieldError{CodeInvalidType, fe.Field, fmt.Sprintf("attribute %q is not valid JSON", code)}
	}
	if fe != nil {
		return fe
	}
	return nil
}

func (a *Attribute) check(raw json.RawMessage) error {
	field := "attributes." + a.Code
	wrongType := func(want string) error {
		return &FieldError{CodeInvalidType, field, fmt.Sprintf("attribute %q must be %s", a.Code, want)}
	}
	badValue := func(msg string) error {
		return &FieldError{CodeInvalidValue, field, fmt.Sprintf("attribute %q %s", a.Code, msg)}
	}
	switch a.Datatype {
	case DatatypeNumber:
		var f float64
		if json.Unmarshal(raw, &f) != nil {
			return wrongType("a number")
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return badValue("must be a finite number")
		}
	case DatatypeString, DatatypeText, DatatypeDatetime, DatatypeSingleValueList:
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return wrongType("a string")
		}
		limit := maxStringLen
		if a.Datatype == DatatypeText {
			limit = maxTextLen
		}
		switch fault := TextFault(v, a.Datatype == DatatypeText); {
		case a.Required && strings.TrimSpace(v) == "":
			return &FieldError{CodeRequired, field, fmt.Sprintf("attribute %q is required", a.Code)}
		case utf8.RuneCountInString(v) > limit:
			return badValue(fmt.Sprintf("is longer than %d characters", limit))
		case fault != "":
			return textError(field, fault)
		case a.Datatype == DatatypeDatetime && !isDatetime(v):
			return badValue("must be an ISO 8601 date-time such as 2026-01-31T09:30:00Z")
		case a.Datatype == DatatypeSingleValueList && !a.allows(v):
			return badValue(fmt.Sprintf("has no value %q", v))
		}
	case DatatypeMultiValueList:
		var vs []string
		if json.Unmarshal(raw, &vs) != nil {
			return wrongType("a list of strings")
		}
		if a.Required && len(vs) == 0 {
			return &FieldError{CodeRequired, field, fmt.Sprintf("attribute %q needs at least one value", a.Code)}
		}
		if len(vs) > MaxJSONMembers {
			return &FieldError{CodeTooLarge, field, fmt.Sprintf("attribute %q has more than %d values", a.Code, MaxJSONMembers)}
		}
		for i, v := range vs {
			if fault := TextFault(v, false); fault != "" {
				return textError(field, fault)
			}
			if !a.allows(v) {
				return badValue(fmt.Sprintf("has no value %q", v))
			}
			// At most a hundred values: a quadratic look is cheap.
			if slices.Index(vs, v) != i {
				return badValue(fmt.Sprintf("has the value %q twice", v))
			}
		}
	}
	return nil
}

func (a *Attribute) allows(key string) bool {
	return slices.ContainsFunc(a.Values, func(v Value) bool { return v.Key == key })
}

func isDatetime(v string) bool {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if _, err := time.Parse(layout, v); err == nil {
			return true
		}
	}
	return false
}

// LogValue keeps a submission's personal data out of structured logs.
func (s Submission) LogValue() slog.Value {
	return slog.GroupValue(slog.String("service", s.ServiceCode), slog.String("visit", s.VisitID))
}

// CheckIdempotencyKey tells whether key may be a desk's idempotency key: 1
// to 255 printable ASCII characters. It returns nil when it may, else the
// error for the Idempotency-Key field.
func CheckIdempotencyKey(key string) *FieldError {
	switch {
	case key == "":
		return &FieldError{CodeRequired, "Idempotency-Key", "an Idempotency-Key header is required"}
	case len(key) > 255 || strings.IndexFunc(key, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) >= 0:
		return &FieldError{CodeInvalidValue, "Idempotency-Key", "the Idempotency-Key must be 1 to 255 printable ASCII characters"}
	}
	return nil
}

// RequestOf is the request that sub, accepted from desk at now, becomes
// under id. A consent given without its time takes now: it is stamped only
// here, after the idempotency key was bound to the body without it, so
// that a retry is the same body.
func RequestOf(desk Desk, sub *Submission, id string, now time.Time) Request {
	req := Request{
		Schema:       SchemaRequest,
		ID:           id,
		DeskID:       desk.ID,
		Municipality: desk.Municipality,
		Mediator:     sub.Mediator,
		ServiceCode:  sub.ServiceCode,
		VisitID:      sub.VisitID,
		Consent:      sub.Consent,
		Citizen:      *sub.Citizen,
		Attributes:   sub.Attributes,
		SubmittedAt:  now,
		Practice:     sub.Practice,
	}
	if c := sub.Consent; c != nil && c.At.IsZero() {
		given := *c
		given.At = now
		req.Consent = &given
	}
	return req
}
