package workers

import (
	"net/http"

	"github.com/spotflow/spotflow/events"
)

// serviceView is a catalogue entry in one language, as the desk API shows it.
type serviceView struct {
	Code        string          `json:"code"`
	Group       string          `json:"group"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Keywords    []string        `json:"keywords"`
	Agencies    []string        `json:"agencies"`
	Attributes  []attributeView `json:"attributes"`
	Documents   []string        `json:"documents"`
	SLAHours    float64         `json:"sla_hours"`
	Training    bool            `json:"training"`
}

type attributeView struct {
	Code        string          `json:"code"`
	Datatype    events.Datatype `json:"datatype"`
	Required    bool            `json:"required"`
	Order       int             `json:"order"`
	Description string          `json:"description"`
	Values      []valueView     `json:"values,omitempty"`
}

type valueView struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

func viewService(s *events.Service, lang string) serviceView {
	v := serviceView{
		Code:        s.Code,
		Group:       s.Group,
		Name:        s.Name.In(lang),
		Description: s.Description.In(lang),
		Keywords:    nonNil(s.Keywords),
		Agencies:    s.Agencies,
		Attributes:  make([]attributeView, len(s.Attributes)),
		Documents:   nonNil(s.Documents),
		SLAHours:    s.SLAHours,
		Training:    s.Training,
	}
	for i, a := range s.Attributes {
		av := attributeView{Code: a.Code, Datatype: a.Datatype, Required: a.Required, Order: a.Order, Description: a.Description.In(lang)}
		for _, val := range a.Values {
			av.Values = append(av.Values, valueView{Key: val.Key, Name: val.Name.In(lang)})
		}
		v.Attributes[i] = av
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func language(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l != "" {
		return l
	}
	return events.DefaultLanguage
}

func (in *Intake) listServices(w http.ResponseWriter, r *http.Request) {
	lang := language(r)
	out := make([]serviceView, len(in.cfg.Catalog.Services))
	for i := range in.cfg.Catalog.Services {
		out[i] = viewService(&in.cfg.Catalog.Services[i], lang)
	}
	writeJSON(w, http.StatusOK, map[string]any{"services": out})
}

func (in *Intake) getService(w http.ResponseWriter, r *http.Request) {
	s, ok := in.cfg.Catalog.Service(r.PathValue("code"))
	if !ok {
		writeError(w, http.StatusNotFound, &apiError{Code: "not_found", Message: "no service has that code", Field: "code"})
		return
	}
	writeJSON(w, http.StatusOK, viewService(s, language(r)))
}
