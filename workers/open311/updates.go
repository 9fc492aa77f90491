package open311

import (
	"net/http"
	"time"

	"github.com/spotflow/spotflow/events"
)

// updateView is an entry of GET servicerequestupdates, FixMyStreet's
// extension of GeoReport v2 for following requests
// (https://github.com/mysociety/fixmystreet/wiki/Open311-FMS---Proposed-differences-to-Open311):
// one event of a request's timeline.
type updateView struct {
	UpdateID         string `xml:"update_id" json:"update_id"`
	ServiceRequestID string `xml:"service_request_id" json:"service_request_id"`
	// Status is the request's, open or closed, once the update happened.
	Status          string   `xml:"status" json:"status"`
	UpdatedDatetime string   `xml:"updated_datetime" json:"updated_datetime"`
	Description     nullable `xml:"description" json:"description"`
	MediaURL        nullable `xml:"media_url" json:"media_url"`
	// ExternalStatusCode is spotflow's status of what the update is about:
	// the agency's work item, or the request as a whole.
	ExternalStatusCode string `xml:"external_status_code" json:"external_status_code"`
	// AgencyResponsible names the agency that reported the update, when
	// one did.
	AgencyResponsible nullable `xml:"agency_responsible" json:"agency_responsible"`
}

type updateList struct {
	Updates []updateView `xml:"request_update"`
}

// serveUpdates lists the timeline events of the desk's requests in a
// window (start_date, end_date; as GET requests reads them), oldest first,
// at most requestsLimit: a client asks again from the last one's time for
// more, and knows what it has seen by update_id.
func (a *API) serveUpdates(w http.ResponseWriter, r *http.Request, format string) {
	_ = r.ParseForm()
	desk, ok := a.authenticate(w, r, format, true)
	if !ok {
		return
	}
	from, to, desc := window(r.Form, time.Now())
	if desc != "" {
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, desc)
		return
	}
	found, err := a.cfg.Store.RequestUpdates(r.Context(), events.UpdateQuery{DeskID: desk.ID, From: from, To: to, Limit: requestsLimit})
	if err != nil {
		a.cfg.Logger.Error("open311: read updates", "desk", desk.ID, "err", err)
		writeUnavailable(w, format, "cannot read updates right now; retry later")
		return
	}
	catalog := a.cfg.Catalog.Current()
	lang := languageOf(r, catalog)
	list := make([]updateView, len(found))
	for i, u := range found {
		list[i] = updateView{
			UpdateID:           u.EventID,
			ServiceRequestID:   u.RequestID,
			Status:             u.RequestStatus.Open311(),
			UpdatedDatetime:    w3(u.At),
			Description:        nullable(u.Note),
			ExternalStatusCode: string(u.Status),
		}
		if ag, ok := catalog.Agency(u.Agency); ok {
			list[i].AgencyResponsible = nullable(ag.Name.In(lang))
		}
	}
	w.Header().Set("Content-Language", lang)
	if format == "json" {
		write(w, format, http.StatusOK, "service_request_updates", list)
		return
	}
	write(w, format, http.StatusOK, "service_request_updates", updateList{list})
}
