package open311

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spotflow/spotflow/events"
)

// serveCollection serves GET services.{format} and GET requests.{format}.
func (a *API) serveCollection(w http.ResponseWriter, r *http.Request) {
	resource, format, ok := splitPathFormat(w, r, "resource")
	if !ok {
		return
	}
	switch resource {
	case "services":
		a.serveServices(w, r, format)
	case "requests":
		a.serveRequests(w, r, format)
	case "servicerequestupdates":
		a.serveUpdates(w, r, format)
	default:
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: "+r.URL.Path)
	}
}

// serviceView is an entry of GET services.
type serviceView struct {
	ServiceCode string `xml:"service_code" json:"service_code"`
	ServiceName string `xml:"service_name" json:"service_name"`
	Description string `xml:"description" json:"description"`
	Metadata    bool   `xml:"metadata" json:"metadata"`
	Type        string `xml:"type" json:"type"`
	Keywords    string `xml:"keywords" json:"keywords"`
	Group       string `xml:"group" json:"group"`
}

type serviceList struct {
	Services []serviceView `xml:"service"`
}

func (a *API) serveServices(w http.ResponseWriter, r *http.Request, format string) {
	_ = r.ParseForm()
	if _, ok := a.authenticate(w, r, format, false); !ok {
		return
	}
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	list := make([]serviceView, len(catalog.Services))
	for i, s := range catalog.Services {
		list[i] = serviceView{
			ServiceCode: s.Code,
			ServiceName: s.Name.In(lang),
			Description: s.Description.In(lang),
			// Every service asks at least for the citizen.
			Metadata: true,
			Type:     "realtime",
			Keywords: strings.Join(s.Keywords, ", "),
			Group:    s.Group,
		}
	}
	w.Header().Set("Content-Language", lang)
	if format == "json" {
		write(w, format, http.StatusOK, "services", list)
		return
	}
	write(w, format, http.StatusOK, "services", serviceList{list})
}

// definition is GET services/{code}: the service's attributes, the
// citizen's first.
type definition struct {
	ServiceCode string          `xml:"service_code" json:"service_code"`
	Attributes  []attributeView `xml:"attributes>attribute" json:"attributes"`
}

type attributeView struct {
	Variable            bool            `xml:"variable" json:"variable"`
	Code                string          `xml:"code" json:"code"`
	Datatype            events.Datatype `xml:"datatype" json:"datatype"`
	Required            bool            `xml:"required" json:"required"`
	DatatypeDescription nullable        `xml:"datatype_description" json:"datatype_description"`
	Order               int             `xml:"order" json:"order"`
	Description         string          `xml:"description" json:"description"`
	// Values of a list attribute: <values><value>… in XML, an array in JSON.
	Values    []valueView `xml:"-" json:"values,omitempty"`
	XMLValues *valueList  `xml:"values,omitempty" json:"-"`
}

type valueList struct {
	Values []valueView `xml:"value"`
}

type valueView struct {
	Key  string `xml:"key" json:"key"`
	Name string `xml:"name" json:"name"`
}

func (a *API) serveService(w http.ResponseWriter, r *http.Request) {
	code, format, ok := splitPathFormat(w, r, "code")
	if !ok {
		return
	}
	_ = r.ParseForm()
	if _, ok := a.authenticate(w, r, format, false); !ok {
		return
	}
	catalog := a.cfg.Catalog.Current()
	s, found := catalog.Service(code)
	if !found {
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", code))
		return
	}
	lang := languageOf(r, catalog)
	def := definition{ServiceCode: s.Code, Attributes: []attributeView{
		{Variable: true, Code: citizenNationalIDAttribute, Datatype: events.DatatypeString, Required: true, Order: 1,
			Description: catalog.CitizenFields.NationalID.In(lang)},
		{Variable: true, Code: citizenNameAttribute, Datatype: events.DatatypeString, Required: true, Order: 2,
			Description: catalog.CitizenFields.Name.In(lang)},
	}}
	for _, a := range s.Attributes {
		attr := attributeView{
			Variable: true, Code: a.Code, Datatype: a.Datatype, Required: a.Required,
			Order: a.Order + 2, Description: a.Description.In(lang),
		}
		for _, v := range a.Values {
			attr.Values = append(attr.Values, valueView{Key: v.Key, Name: v.Name.In(lang)})
		}
		if attr.Values != nil {
			attr.XMLValues = &valueList{attr.Values}
		}
		def.Attributes = append(def.Attributes, attr)
	}
	w.Header().Set("Content-Language", lang)
	write(w, format, http.StatusOK, "service_definition", def)
}
