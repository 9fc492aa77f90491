package deskapp

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/spotflow/spotflow/events"
)

// serviceView is a service as the desk shows it before adding it: what it
// is, what the citizen must show, who handles it and how long it takes.
type serviceView struct {
	Code, Name, Description, Group string
	Documents, Agencies            []string
	// Expected is the service level in the mediator's words.
	Expected string
}

func (a *App) serviceViewOf(svc *events.Service, lang string) serviceView {
	c := a.cfg.Catalog.Current()
	v := serviceView{Code: svc.Code, Name: svc.Name.In(lang), Description: svc.Description.In(lang), Group: svc.Group,
		Expected: a.duration(svc.SLAHours, lang)}
	if g, ok := c.Group(svc.Group); ok {
		v.Group = g.Name.In(lang)
	}
	for _, d := range svc.Documents {
		if doc, ok := c.Document(d); ok {
			v.Documents = append(v.Documents, doc.Name.In(lang))
		}
	}
	for _, code := range svc.Agencies {
		if ag, ok := c.Agency(code); ok {
			v.Agencies = append(v.Agencies, ag.Name.In(lang))
		}
	}
	return v
}

// duration says a service level in hours or, from two days, in days.
func (a *App) duration(hours float64, lang string) string {
	if hours >= 48 {
		return a.i18n.text(lang, "duration.days", int((hours+23)/24))
	}
	return a.i18n.text(lang, "duration.hours", int(hours+0.5))
}

// fold lowercases s and strips its accents, so that "conducao" finds
// "condução" and "αδεια" finds "άδεια".
func fold(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, strings.ToLower(s))
	if err != nil {
		return strings.ToLower(s)
	}
	return out
}

// match scores how well svc answers the words of a search, in lang first:
// 0 when some word is found nowhere; higher for words in the service's
// name in lang, then its names in other languages and its keywords, then
// its descriptions and group.
func match(c *events.Catalog, svc *events.Service, words []string, lang string) int {
	var name, names, rest strings.Builder
	name.WriteString(fold(svc.Name.In(lang)))
	for _, n := range svc.Name {
		names.WriteString(fold(n) + " ")
	}
	for _, k := range svc.Keywords {
		names.WriteString(fold(k) + " ")
	}
	names.WriteString(svc.Code)
	for _, d := range svc.Description {
		rest.WriteString(fold(d) + " ")
	}
	if g, ok := c.Group(svc.Group); ok {
		for _, n := range g.Name {
			rest.WriteString(fold(n) + " ")
		}
	}
	score := 0
	for _, w := range words {
		switch {
		case strings.Contains(name.String(), w):
			score += 3
		case strings.Contains(names.String(), w):
			score += 2
		case strings.Contains(rest.String(), w):
			score++
		default:
			return 0
		}
	}
	return score
}

// servicesData is what the page that finds services shows.
type servicesData struct {
	Query, GroupCode string
	Groups           []option
	Results          []serviceView
	// Searched says whether a search or a group was asked for.
	Searched bool
	// Visit is the visit services are added to; nil when none is under
	// way.
	Visit *visitView
}

// servicesPage finds services by words, in any of the catalogue's
// languages and its keywords, ranked for the mediator's language, or lists
// a group's.
func (a *App) servicesPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	lang := a.languageOf(r, s)
	c := a.cfg.Catalog.Current()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	group := r.URL.Query().Get("group")
	data := servicesData{Query: q, GroupCode: group, Searched: q != "" || group != ""}
	for _, g := range c.Groups {
		data.Groups = append(data.Groups, option{Key: g.Code, Name: g.Name.In(lang), Checked: g.Code == group})
	}
	words := strings.Fields(fold(q))
	type scored struct {
		svc   *events.Service
		score int
	}
	var found []scored
	for i := range c.Services {
		svc := &c.Services[i]
		if (group != "" && svc.Group != group) || (s.Training && !svc.Training) {
			continue
		}
		score := 1
		if len(words) > 0 {
			score = match(c, svc, words, lang)
		}
		if score > 0 {
			found = append(found, scored{svc, score})
		}
	}
	slices.SortStableFunc(found, func(x, y scored) int {
		return cmp.Or(cmp.Compare(y.score, x.score), strings.Compare(fold(x.svc.Name.In(lang)), fold(y.svc.Name.In(lang))))
	})
	for _, f := range found {
		data.Results = append(data.Results, a.serviceViewOf(f.svc, lang))
	}
	v, err := a.openVisit(r, s)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	if v != nil {
		vv := a.viewOf(v, lang)
		data.Visit = &vv
		if r.URL.Query().Get("partial") == "" {
			a.step(r, v.ID, "services")
		}
	}
	if r.URL.Query().Get("partial") == "results" {
		a.renderPart(w, r, "services", "results", lang, s, data)
		return
	}
	a.render(w, r, http.StatusOK, "services", lang, s, nil, data)
}

// renderPart writes only the template part of page name, for the script
// that refreshes that part in place.
func (a *App) renderPart(w http.ResponseWriter, r *http.Request, name, part, lang string, s *events.Session, data any) {
	a.writePart(w, name, part, a.newPage(lang, s, nil, data))
}

// writePart writes the template part of page name for p, alone.
func (a *App) writePart(w http.ResponseWriter, name, part string, p *page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := a.pages[name].ExecuteTemplate(w, part, p); err != nil {
		a.cfg.Logger.Error("desk application: render a part", "page", name, "part", part, "err", fmt.Sprint(err))
	}
}
