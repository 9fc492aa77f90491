package deskapi

import (
	"cmp"
	"net/http"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/jsonapi"
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

// languageOf picks the catalogue language a request asks for: ?lang=xx, else
// its Accept-Language header; English when the catalogue lacks it.
func languageOf(r *http.Request, c *events.Catalog) string {
	return c.Language(cmp.Or(r.URL.Query().Get("lang"), r.Header.Get("Accept-Language")))
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request) {
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	out := make([]serviceView, len(catalog.Services))
	for i := range catalog.Services {
		out[i] = viewService(&catalog.Services[i], lang)
	}
	w.Header().Set("Content-Language", lang)
	jsonapi.Write(w, http.StatusOK, map[string]any{"services": out})
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) {
	catalog := a.cfg.Catalog.Current()
	s, ok := catalog.Service(r.PathValue("code"))
	if !ok {
		jsonapi.WriteError(w, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no service has that code", Field: "code"})
		return
	}
	lang := languageOf(r, catalog)
	w.Header().Set("Content-Language", lang)
	jsonapi.Write(w, http.StatusOK, viewService(s, lang))
}
