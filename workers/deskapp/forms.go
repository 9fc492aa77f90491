package deskapp

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/spotflow/spotflow/events"
)

// fieldError is a refused field: the id of its control, which the error
// summary links to, and why, in the mediator's language.
type fieldError struct {
	ID, Message string
}

// option is one choice of a list attribute.
type option struct {
	Key, Name string
	Checked   bool
}

// field is a control of a service's form, made from one of its
// attributes: the Open311 datatype decides the control.
type field struct {
	ID, Name, Code, Label string
	Datatype              events.Datatype
	// Control is text, number, date (with an optional time), textarea,
	// radios, select or checkboxes.
	Control  string
	Required bool
	// Value is what was typed; Date and Time split a datetime's.
	Value, Date, Time string
	Options           []option
	Error             string
}

// radiosAtMost is the longest single-choice list shown as radio buttons;
// longer ones are a select.
const radiosAtMost = 6

// fieldsOf builds the form of svc in lang, filled with answers.
func fieldsOf(svc *events.Service, lang string, answers map[string]json.RawMessage) []field {
	attrs := slices.Clone(svc.Attributes)
	slices.SortStableFunc(attrs, func(a, b events.Attribute) int { return a.Order - b.Order })
	fields := make([]field, 0, len(attrs))
	for _, a := range attrs {
		f := field{ID: "attr-" + a.Code, Name: "attr." + a.Code, Code: a.Code, Label: a.Description.In(lang),
			Datatype: a.Datatype, Required: a.Required}
		raw := answers[a.Code]
		var s string
		_ = json.Unmarshal(raw, &s)
		switch a.Datatype {
		case events.DatatypeNumber:
			f.Control = "number"
			if s == "" && len(raw) > 0 {
				s = string(raw)
			}
			f.Value = s
		case events.DatatypeText:
			f.Control, f.Value = "textarea", s
		case events.DatatypeDatetime:
			f.Control = "date"
			f.Date, f.Time, _ = strings.Cut(s, "T")
			f.Time = strings.TrimSuffix(f.Time, ":00")
		case events.DatatypeSingleValueList, events.DatatypeMultiValueList:
			var chosen []string
			if a.Datatype == events.DatatypeSingleValueList {
				f.Control = "radios"
				if len(a.Values) > radiosAtMost {
					f.Control = "select"
				}
				chosen = []string{s}
			} else {
				f.Control = "checkboxes"
				_ = json.Unmarshal(raw, &chosen)
			}
			for _, v := range a.Values {
				f.Options = append(f.Options, option{Key: v.Key, Name: v.Name.In(lang), Checked: slices.Contains(chosen, v.Key)})
			}
		default:
			f.Control, f.Value = "text", s
		}
		fields = append(fields, f)
	}
	return fields
}

// answersOf reads the form of svc as posted into attribute values, as
// the desk API takes them: texts as typed (trimmed), numbers as numbers
// when they are (a decimal comma taken as a point) and as typed otherwise,
// so that the check says what is wrong; a date, with its time if given;
// list choices. Empty fields are left out.
func answersOf(svc *events.Service, form url.Values) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage)
	put := func(code string, v any) {
		b, _ := json.Marshal(v)
		out[code] = b
	}
	for _, a := range svc.Attributes {
		name := "attr." + a.Code
		v := strings.TrimSpace(form.Get(name))
		switch a.Datatype {
		case events.DatatypeMultiValueList:
			var chosen []string
			for _, c := range form[name] {
				if c = strings.TrimSpace(c); c != "" {
					chosen = append(chosen, c)
				}
			}
			if len(chosen) > 0 {
				put(a.Code, chosen)
			}
		case events.DatatypeNumber:
			if v == "" {
				continue
			}
			n := strings.ReplaceAll(v, ",", ".")
			if _, err := strconv.ParseFloat(n, 64); err == nil && json.Valid([]byte(n)) {
				out[a.Code] = json.RawMessage(n)
			} else {
				put(a.Code, v)
			}
		case events.DatatypeDatetime:
			if v == "" {
				continue
			}
			if t := strings.TrimSpace(form.Get(name + ".time")); t != "" {
				v += "T" + t
				if len(t) == len("15:04") {
					v += ":00"
				}
			}
			put(a.Code, v)
		default:
			if v != "" {
				put(a.Code, v)
			}
		}
	}
	return out
}

// documentsOf reads the documents of svc ticked in the form as posted.
func documentsOf(svc *events.Service, form url.Values) []string {
	var docs []string
	for _, d := range form["document"] {
		if slices.Contains(svc.Documents, d) {
			docs = append(docs, d)
		}
	}
	return docs
}

// documentName is the name of document code in lang, or the code itself
// when the catalogue has none.
func documentName(c *events.Catalog, code, lang string) string {
	if doc, ok := c.Document(code); ok {
		return doc.Name.In(lang)
	}
	return code
}

// agencyName is the name of agency code in lang, or the code itself when
// the catalogue has none (any more).
func agencyName(c *events.Catalog, code, lang string) string {
	if ag, ok := c.Agency(code); ok {
		return ag.Name.In(lang)
	}
	return code
}

// messageOf says in lang what is wrong with a field of svc's form, or
// of the citizen or consent.
func (a *App) messageOf(fe *events.FieldError, svc *events.Service, lang string) fieldError {
	t := a.i18n.translator(lang)
	code, isAttr := strings.CutPrefix(fe.Field, "attributes.")
	if !isAttr {
		switch fe.Field {
		case "citizen.national_id":
			if fe.Code == events.CodeRequired {
				return fieldError{"national-id", t("error.national_id.required")}
			}
			return fieldError{"national-id", t("error.national_id.invalid")}
		case "citizen.name":
			if fe.Code == events.CodeRequired {
				return fieldError{"citizen-name", t("error.name.required")}
			}
			return fieldError{"citizen-name", t("error.name.invalid")}
		}
		return fieldError{"", t("error.other")}
	}
	var attr *events.Attribute
	if svc != nil {
		for i := range svc.Attributes {
			if svc.Attributes[i].Code == code {
				attr = &svc.Attributes[i]
			}
		}
	}
	if attr == nil {
		return fieldError{"", t("error.other")}
	}
	label, id := attr.Description.In(lang), "attr-"+code
	if attr.Datatype.IsList() {
		id += "-0"
	}
	switch {
	case fe.Code == events.CodeRequired && attr.Datatype.IsList():
		return fieldError{id, t("error.choose", label)}
	case fe.Code == events.CodeRequired:
		return fieldError{id, t("error.required", label)}
	case attr.Datatype == events.DatatypeNumber:
		return fieldError{id, t("error.number", label)}
	case attr.Datatype == events.DatatypeDatetime:
		return fieldError{id, t("error.date", label)}
	case attr.Datatype.IsList():
		return fieldError{id, t("error.choose", label)}
	}
	return fieldError{id, t("error.text", label)}
}
