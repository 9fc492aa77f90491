package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Datatype is an attribute's type, from Open311 GeoReport v2's set.
type Datatype string

// The Open311 datatypes.
const (
	DatatypeString          Datatype = "string"
	DatatypeNumber          Datatype = "number"
	DatatypeDatetime        Datatype = "datetime"
	DatatypeText            Datatype = "text"
	DatatypeSingleValueList Datatype = "singlevaluelist"
	DatatypeMultiValueList  Datatype = "multivaluelist"
)

func (d Datatype) valid() bool {
	switch d {
	case DatatypeString, DatatypeNumber, DatatypeDatetime, DatatypeText,
		DatatypeSingleValueList, DatatypeMultiValueList:
		return true
	}
	return false
}

// IsList reports whether values must come from the attribute's Values.
func (d Datatype) IsList() bool {
	return d == DatatypeSingleValueList || d == DatatypeMultiValueList
}

// DefaultLanguage is the language every catalogue text must have and the one
// used when a requested language is missing.
const DefaultLanguage = "en"

// Text is a text in several languages, keyed by ISO 639-1 code.
type Text map[string]string

// In returns the text in lang, falling back to English.
func (t Text) In(lang string) string {
	if s, ok := t[lang]; ok && s != "" {
		return s
	}
	return t[DefaultLanguage]
}

// Agency is a back office that owns services.
type Agency struct {
	Code string `json:"code"`
	Name Text   `json:"name"`
}

// Group is a heading a desk lists services under: a service belongs to one.
type Group struct {
	Code string `json:"code"`
	Name Text   `json:"name"`
}

// Document is a document a service asks the citizen to show at the desk.
type Document struct {
	Code string `json:"code"`
	Name Text   `json:"name"`
}

// Consent is what a mediator shows the citizen, and asks them to agree to,
// before submitting requests on their behalf: who processes their personal
// data, why, for how long, and their rights.
type Consent struct {
	// Version names the wording the citizen agreed to; it changes
	// whenever the text does. A code: lowercase letters, digits, '-' and
	// '_', e.g. "2026-12-01".
	Version string `json:"version"`
	Text    Text   `json:"text"`
}

// Value is one allowed value of a list attribute.
type Value struct {
	Key  string `json:"key"`
	Name Text   `json:"name"`
}

// Attribute is a typed field a service asks of the citizen.
type Attribute struct {
	Code        string   `json:"code"`
	Datatype    Datatype `json:"datatype"`
	Required    bool     `json:"required"`
	Order       int      `json:"order"`
	Description Text     `json:"description"`
	Values      []Value  `json:"values,omitempty"`
}

// Service is a catalogue entry: what a desk can submit and which agencies
// handle it. A service with several agencies fans out: one work item each.
// Group and Documents are codes of the catalogue's groups and documents.
type Service struct {
	Code        string      `json:"code"`
	Group       string      `json:"group"`
	Keywords    []string    `json:"keywords,omitempty"`
	Name        Text        `json:"name"`
	Description Text        `json:"description"`
	Agencies    []string    `json:"agencies"`
	Attributes  []Attribute `json:"attributes"`
	Documents   []string    `json:"documents,omitempty"`
	// SLAHours is the expected completion time in hours.
	SLAHours float64 `json:"sla_hours"`
	// Training says whether the service may be submitted in training mode.
	Training bool `json:"training"`
}

// SampleAnswers is the n-th of a series of valid answers to the service's
// attributes, for load generators and fault suites: every attribute
// answered, list values taken in turn.
func (s *Service) SampleAnswers(n int) map[string]any {
	attrs := make(map[string]any, len(s.Attributes))
	for _, a := range s.Attributes {
		switch a.Datatype {
		case DatatypeNumber:
			attrs[a.Code] = 1 + n%5
		case DatatypeDatetime:
			attrs[a.Code] = "2026-12-01T09:30:00Z"
		case DatatypeSingleValueList:
			attrs[a.Code] = a.Values[n%len(a.Values)].Key
		case DatatypeMultiValueList:
			attrs[a.Code] = []string{a.Values[n%len(a.Values)].Key}
		default:
			attrs[a.Code] = fmt.Sprintf("%s %d", a.Code, n)
		}
	}
	return attrs
}

// SLA is the expected time from submission to completion.
func (s *Service) SLA() time.Duration { return time.Duration(s.SLAHours * float64(time.Hour)) }

// Catalog is the service catalogue. It is read-only once parsed and safe for
// concurrent use.
type Catalog struct {
	Version string `json:"version"`
	// Languages every text is written in (ISO 639-1); English among them.
	// Empty means English only.
	Languages []string `json:"languages,omitempty"`
	// ServiceNotice is the template of the notice Open311 clients get about
	// a request: {agencies} stands for the responsible agencies' names,
	// {expected} for the expected completion date (UTC). Optional.
	ServiceNotice Text `json:"service_notice,omitempty"`
	// CitizenFields describe the citizen's identity where an interface has
	// no field of its own for it (Open311 shows them as attributes).
	// Optional: English defaults stand in.
	CitizenFields *CitizenFields `json:"citizen_fields,omitempty"`
	// Consent is the consent to the processing of personal data a
	// mediator asks for before submitting. Optional.
	Consent *Consent `json:"consent,omitempty"`
	// Groups are the headings services are listed under, in the order a
	// mediator browses them. Optional: without them, services' groups are
	// not checked.
	Groups []Group `json:"groups,omitempty"`
	// Documents are the documents services ask the citizen to show.
	// Optional: without them, services' documents are not checked.
	Documents []Document `json:"documents,omitempty"`
	Agencies  []Agency   `json:"agencies"`
	Services  []Service  `json:"services"`

	services  map[string]*Service
	agencies  map[string]*Agency
	groups    map[string]*Group
	documents map[string]*Document
}

// CitizenFields are the descriptions of the citizen's identity fields.
type CitizenFields struct {
	NationalID Text `json:"national_id"`
	Name       Text `json:"name"`
}

// Current returns c itself: a parsed catalogue serves wherever a source of
// the current catalogue is asked for, as one that never changes.
func (c *Catalog) Current() *Catalog { return c }

// ParseCatalog decodes and checks a catalogue: unknown fields, duplicate or
// malformed codes, texts missing one of the catalogue's languages, services
// naming unknown agencies (or, when the catalogue lists them, unknown groups
// or documents), attributes with an unknown datatype or list attributes
// without values are all refused, with the path of the offending entry.
func ParseCatalog(data []byte) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse catalogue: %w", err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("check catalogue: %w", err)
	}
	return &c, nil
}

func (c *Catalog) check() error {
	if len(c.Languages) == 0 {
		c.Languages = []string{DefaultLanguage}
	}
	if !slices.Contains(c.Languages, DefaultLanguage) {
		return fmt.Errorf("languages: English (%q) is required", DefaultLanguage)
	}
	if len(c.ServiceNotice) > 0 {
		if err := c.checkText("service_notice", c.ServiceNotice); err != nil {
			return err
		}
	}
	if c.CitizenFields == nil {
		c.CitizenFields = &CitizenFields{
			NationalID: Text{DefaultLanguage: "National ID number of the citizen served"},
			Name:       Text{DefaultLanguage: "Full name of the citizen served"},
		}
	} else {
		if err := c.checkText("citizen_fields.national_id", c.CitizenFields.NationalID); err != nil {
			return err
		}
		if err := c.checkText("citizen_fields.name", c.CitizenFields.Name); err != nil {
			return err
		}
	}
	if c.Consent != nil {
		if !ValidToken(c.Consent.Version) {
			return fmt.Errorf("consent.version: %q is not a valid version: lowercase letters, digits, '-' and '_'", c.Consent.Version)
		}
		if err := c.checkText("consent.text", c.Consent.Text); err != nil {
			return err
		}
	}
	c.groups = make(map[string]*Group, len(c.Groups))
	for i := range c.Groups {
		g := &c.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		switch {
		case !ValidToken(g.Code):
			return fmt.Errorf("%s.code: %q is not a valid code", path, g.Code)
		case c.groups[g.Code] != nil:
			return fmt.Errorf("%s.code: duplicate group %q", path, g.Code)
		}
		if err := c.checkText(path+".name", g.Name); err != nil {
			return err
		}
		c.groups[g.Code] = g
	}
	c.documents = make(map[string]*Document, len(c.Documents))
	for i := range c.Documents {
		d := &c.Documents[i]
		path := fmt.Sprintf("documents[%d]", i)
		switch {
		case !ValidToken(d.Code):
			return fmt.Errorf("%s.code: %q is not a valid code", path, d.Code)
		case c.documents[d.Code] != nil:
			return fmt.Errorf("%s.code: duplicate document %q", path, d.Code)
		}
		if err := c.checkText(path+".name", d.Name); err != nil {
			return err
		}
		c.documents[d.Code] = d
	}
	c.agencies = make(map[string]*Agency, len(c.Agencies))
	for i := range c.Agencies {
		a := &c.Agencies[i]
		path := fmt.Sprintf("agencies[%d]", i)
		switch {
		case !ValidToken(a.Code):
			return fmt.Errorf("%s.code: %q is not a valid code", path, a.Code)
		case PipelineSource(a.Code):
			return fmt.Errorf("%s.code: %q is reserved for the pipeline's own status events", path, a.Code)
		case c.agencies[a.Code] != nil:
			return fmt.Errorf("%s.code: duplicate agency %q", path, a.Code)
		case a.Name[DefaultLanguage] == "":
			return fmt.Errorf("%s.name: an English name is required", path)
		}
		if err := c.checkText(path+".name", a.Name); err != nil {
			return err
		}
		c.agencies[a.Code] = a
	}
	c.services = make(map[string]*Service, len(c.Services))
	for i := range c.Services {
		s := &c.Services[i]
		path := fmt.Sprintf("services[%d]", i)
		switch {
		case !ValidToken(s.Code):
			return fmt.Errorf("%s.code: %q is not a valid code", path, s.Code)
		case c.services[s.Code] != nil:
			return fmt.Errorf("%s.code: duplicate service %q", path, s.Code)
		case s.Name[DefaultLanguage] == "":
			return fmt.Errorf("%s.name: an English name is required", path)
		case len(s.Agencies) == 0:
			return fmt.Errorf("%s.agencies: at least one agency is required", path)
		case s.SLAHours <= 0:
			return fmt.Errorf("%s.sla_hours: must be positive", path)
		}
		if err := c.checkText(path+".name", s.Name); err != nil {
			return err
		}
		if err := c.checkText(path+".description", s.Description); err != nil {
			return err
		}
		if len(c.Groups) > 0 && c.groups[s.Group] == nil {
			return fmt.Errorf("%s.group: service %q is in unknown group %q", path, s.Code, s.Group)
		}
		for j, d := range s.Documents {
			if len(c.Documents) > 0 && c.documents[d] == nil {
				return fmt.Errorf("%s.documents[%d]: service %q asks for unknown document %q", path, j, s.Code, d)
			}
			if slices.Index(s.Documents, d) != j {
				return fmt.Errorf("%s.documents[%d]: service %q lists document %q twice", path, j, s.Code, d)
			}
		}
		for j, a := range s.Agencies {
			if c.agencies[a] == nil {
				return fmt.Errorf("%s.agencies[%d]: unknown agency %q", path, j, a)
			}
			if slices.Index(s.Agencies, a) != j {
				return fmt.Errorf("%s.agencies[%d]: agency %q listed twice", path, j, a)
			}
		}
		codes := make(map[string]bool, len(s.Attributes))
		orders := make(map[int]bool, len(s.Attributes))
		for j, a := range s.Attributes {
			apath := fmt.Sprintf("%s.attributes[%d]", path, j)
			switch {
			case !ValidToken(a.Code):
				return fmt.Errorf("%s.code: %q is not a valid code", apath, a.Code)
			case codes[a.Code]:
				return fmt.Errorf("%s.code: duplicate attribute %q", apath, a.Code)
			case strings.HasPrefix(a.Code, ReservedAttributePrefix):
				return fmt.Errorf("%s.code: %q is reserved: attribute codes may not start with %q", apath, a.Code, ReservedAttributePrefix)
			case a.Order < 1 || orders[a.Order]:
				return fmt.Errorf("%s.order: must be a positive integer no other attribute of the service uses", apath)
			case !a.Datatype.valid():
				return fmt.Errorf("%s.datatype: unknown datatype %q", apath, a.Datatype)
			case a.Datatype.IsList() && len(a.Values) == 0:
				return fmt.Errorf("%s.values: a %s needs values", apath, a.Datatype)
			case !a.Datatype.IsList() && len(a.Values) > 0:
				return fmt.Errorf("%s.values: only list datatypes take values", apath)
			}
			if err := c.checkText(apath+".description", a.Description); err != nil {
				return err
			}
			keys := make(map[string]bool, len(a.Values))
			for k, v := range a.Values {
				vpath := fmt.Sprintf("%s.values[%d]", apath, k)
				if v.Key == "" || keys[v.Key] {
					return fmt.Errorf("%s.key: %q is empty or used twice", vpath, v.Key)
				}
				keys[v.Key] = true
				if err := c.checkText(vpath+".name", v.Name); err != nil {
					return err
				}
			}
			codes[a.Code] = true
			orders[a.Order] = true
		}
		slices.SortStableFunc(s.Attributes, func(a, b Attribute) int { return a.Order - b.Order })
		c.services[s.Code] = s
	}
	return nil
}

// checkText refuses a text that lacks one of the catalogue's languages.
func (c *Catalog) checkText(path string, t Text) error {
	for _, lang := range c.Languages {
		if t[lang] == "" {
			return fmt.Errorf("%s: no text in %q, one of the catalogue's languages", path, lang)
		}
	}
	return nil
}

// ReservedAttributePrefix starts the codes under which Open311 clients send
// the citizen's identity; no catalogue attribute may use it.
const ReservedAttributePrefix = "citizen_"

// Service returns the service with the given code.
func (c *Catalog) Service(code string) (*Service, bool) {
	s, ok := c.services[code]
	return s, ok
}

// Agency returns the agency with the given code.
func (c *Catalog) Agency(code string) (*Agency, bool) {
	a, ok := c.agencies[code]
	return a, ok
}

// Group returns the group with the given code.
func (c *Catalog) Group(code string) (*Group, bool) {
	g, ok := c.groups[code]
	return g, ok
}

// Document returns the document with the given code.
func (c *Catalog) Document(code string) (*Document, bool) {
	d, ok := c.documents[code]
	return d, ok
}

// Language picks the catalogue language that best fits lang, an ISO 639-1
// code, a tag such as "pt-PT", or an HTTP Accept-Language list; English when
// none fits.
func (c *Catalog) Language(lang string) string {
	best, bestQ := DefaultLanguage, 0.0
	for _, part := range strings.Split(lang, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if q > bestQ && slices.Contains(c.Languages, primary) {
			best, bestQ = primary, q
		}
	}
	return best
}

// AgencyCodes lists every agency's code in catalogue order.
func (c *Catalog) AgencyCodes() []string {
	codes := make([]string, len(c.Agencies))
	for i, a := range c.Agencies {
		codes[i] = a.Code
	}
	return codes
}

// Notice is the catalogue's service notice for a request of s, in lang:
// which agencies handle it and by when it is expected to be done. Empty when
// the catalogue has no notice template.
func (c *Catalog) Notice(s *Service, lang string, expected time.Time) string {
	if len(c.ServiceNotice) == 0 {
		return ""
	}
	names := make([]string, 0, len(s.Agencies))
	for _, code := range s.Agencies {
		if a, ok := c.Agency(code); ok {
			names = append(names, a.Name.In(lang))
		}
	}
	return strings.NewReplacer(
		"{agencies}", strings.Join(names, ", "),
		"{expected}", expected.UTC().Format(time.DateOnly),
	).Replace(c.ServiceNotice.In(lang))
}
