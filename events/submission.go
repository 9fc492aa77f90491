package events

import (
	"bytes"
	"encoding/json"
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
}

// Limits on the free-form parts of a submission.
const (
	maxStringLen = 255
	maxTextLen   = 4000
	maxIDLen     = 64
)

// Validate checks s against the catalogue and the service's attributes,
// compacts attribute values in place, and returns the service. The error is a
// *FieldError naming the first offending field.
func (c *Catalog) Validate(s *Submission) (*Service, error) {
	if s.ServiceCode == "" {
		return nil, &FieldError{CodeRequired, "service_code", "service_code is required"}
	}
	svc, ok := c.Service(s.ServiceCode)
	if !ok {
		return nil, &FieldError{CodeUnknownService, "service_code", fmt.Sprintf("no service has code %q", s.ServiceCode)}
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
	if err := svc.validateAttributes(s.Attributes); err != nil {
		return nil, err
	}
	return svc, nil
}

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
	return nil
}

func notIDRune(r rune) bool {
	return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'))
}

func checkShortID(field, v string) error {
	if len(v) > maxIDLen || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return &FieldError{CodeInvalidValue, field, fmt.Sprintf("%s must be at most %d printable characters", field, maxIDLen)}
	}
	return nil
}

func (s *Service) validateAttributes(attrs map[string]json.RawMessage) error {
	for code := range attrs {
		if !slices.ContainsFunc(s.Attributes, func(a Attribute) bool { return a.Code == code }) {
			return &FieldError{CodeUnknownField, "attributes." + code, fmt.Sprintf("service %q has no attribute %q", s.Code, code)}
		}
	}
	for _, a := range s.Attributes {
		raw, ok := attrs[a.Code]
		if !ok || string(raw) == "null" {
			if a.Required {
				return &FieldError{CodeRequired, "attributes." + a.Code, fmt.Sprintf("attribute %q is required", a.Code)}
			}
			continue
		}
		if err := a.check(raw); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err == nil {
			attrs[a.Code] = buf.Bytes()
		}
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
		switch {
		case a.Required && strings.TrimSpace(v) == "":
			return &FieldError{CodeRequired, field, fmt.Sprintf("attribute %q is required", a.Code)}
		case utf8.RuneCountInString(v) > limit:
			return badValue(fmt.Sprintf("is longer than %d characters", limit))
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
		for _, v := range vs {
			if !a.allows(v) {
				return badValue(fmt.Sprintf("has no value %q", v))
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
