package deskapp

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/receipts"
)

// Receipts signs the visits' receipts and publishes the keys that verify
// them (*receipts.Keys).
type Receipts interface {
	Sign(r receipts.Receipt) (receipts.Signed, error)
	Public() map[string]ed25519.PublicKey
	Published() receipts.Published
}

// receiptOf is the receipt of visit v, served at desk: the requests
// submitted in it so far.
func (a *App) receiptOf(v *events.Visit, desk events.Desk) receipts.Receipt {
	c := a.cfg.Catalog.Current()
	r := receipts.Receipt{Visit: v.ID, Desk: desk.ID, DeskName: desk.Name, Municipality: desk.Municipality,
		Mediator: v.Username, Language: v.Language, StartedAt: v.StartedAt, Requests: []receipts.Request{}, Training: v.Training}
	if v.Consent != nil {
		r.ConsentVersion, r.ConsentAt = v.Consent.Version, v.Consent.At
	}
	for _, vs := range v.Services {
		if vs.RequestID == "" {
			continue
		}
		req := receipts.Request{ID: vs.RequestID, Service: vs.ServiceCode, SubmittedAt: vs.SubmittedAt, Agencies: []string{}}
		if svc, ok := c.Service(vs.ServiceCode); ok {
			req.Agencies, req.ExpectedBy = svc.Agencies, vs.SubmittedAt.Add(svc.SLA())
		}
		r.Requests = append(r.Requests, req)
	}
	return r
}

// receiptView is a signed receipt as its printed page shows it, in the
// citizen's language.
type receiptView struct {
	Signed   receipts.Signed
	Desk     string
	Requests []receiptLine
	// VerifyURL is where the QR code leads; QR is the code itself.
	VerifyURL string
	QR        template.HTML
}

type receiptLine struct {
	ID, Service string
	Agencies    []string
	SubmittedAt time.Time
	ExpectedBy  time.Time
}

func (a *App) viewReceipt(r *http.Request, s receipts.Signed, lang string) (receiptView, error) {
	c := a.cfg.Catalog.Current()
	v := receiptView{Signed: s, Desk: s.Receipt.DeskName}
	for _, req := range s.Receipt.Requests {
		line := receiptLine{ID: req.ID, Service: req.Service, SubmittedAt: req.SubmittedAt, ExpectedBy: req.ExpectedBy}
		if svc, ok := c.Service(req.Service); ok {
			line.Service = svc.Name.In(lang)
		}
		for _, code := range req.Agencies {
			line.Agencies = append(line.Agencies, agencyName(c, code, lang))
		}
		v.Requests = append(v.Requests, line)
	}
	compact, err := receipts.Compact(s)
	if err != nil {
		return v, err
	}
	v.VerifyURL = a.publicBase(r) + "/receipts/verify?r=" + url.QueryEscape(compact)
	if v.QR, err = qrSVG(v.VerifyURL); err != nil {
		return v, err
	}
	return v, nil
}

// publicBase is the address the public reaches spotflow at: PublicURL, or
// the one this request came to.
func (a *App) publicBase(r *http.Request) string {
	if a.cfg.PublicURL != "" {
		return strings.TrimSuffix(a.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// qrSVG draws text's QR code as inline SVG: one path of dark modules,
// with the quiet zone around, so that it prints sharp at any size and
// needs nothing loaded.
func qrSVG(text string) (template.HTML, error) {
	q, err := qrcode.New(text, qrcode.Low)
	if err != nil {
		return "", fmt.Errorf("receipt QR code: %w", err)
	}
	bits := q.Bitmap()
	var path strings.Builder
	for y, row := range bits {
		for x, dark := range row {
			if dark {
				fmt.Fprintf(&path, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	n := len(bits)
	return template.HTML(fmt.Sprintf(`<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-hidden="true" focusable="false" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path d="%s" fill="#000"/></svg>`,
		n, n, n, n, path.String())), nil
}

// receiptPage prints the receipt of the visit under way, or of the visit
// ?visit= of the mediator's, in the citizen's language; receipt.json is
// its file.
func (a *App) receiptPage(w http.ResponseWriter, r *http.Request, s *events.Session) {
	if a.cfg.Receipts == nil {
		a.notFound(w, r, a.languageOf(r, s))
		return
	}
	var v *events.Visit
	var err error
	if id := r.URL.Query().Get("visit"); id != "" {
		v, err = a.cfg.Store.Visit(r.Context(), id, s.Mediator.Username)
	} else {
		v, err = a.cfg.Store.OpenVisit(r.Context(), s.Mediator.Username)
	}
	if errors.Is(err, events.ErrNotFound) {
		a.notFound(w, r, a.languageOf(r, s))
		return
	}
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	signed, err := a.cfg.Receipts.Sign(a.receiptOf(v, s.Desk))
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	if strings.HasSuffix(r.URL.Path, ".json") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="receipt-%s.json"`, v.ID))
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		_ = enc.Encode(signed)
		return
	}
	view, err := a.viewReceipt(r, signed, v.Language)
	if err != nil {
		a.unavailable(w, r, s, err)
		return
	}
	if v.EndedAt.IsZero() {
		a.step(r, v.ID, "receipt")
	}
	a.render(w, r, http.StatusOK, "receipt", v.Language, s, nil, view)
}

// verifyData is what the public page that checks a receipt shows.
type verifyData struct {
	Given   bool
	Valid   bool
	Reason  string
	Receipt receiptView
	// Status is each request's current status, by reference.
	Status map[string]string
}

// verifyPage checks the receipt in ?r= (as its QR code links it) against
// the published keys, and shows its requests' current status: public
// fields only, nothing personal.
func (a *App) verifyPage(w http.ResponseWriter, r *http.Request) {
	lang := a.languageOf(r, nil)
	data := verifyData{}
	compact := r.URL.Query().Get("r")
	if compact == "" || a.cfg.Receipts == nil {
		a.render(w, r, http.StatusOK, "verify", lang, nil, nil, data)
		return
	}
	data.Given = true
	signed, err := receipts.FromCompact(compact)
	if err == nil {
		// The receipt's language, the citizen's, unless another is asked for.
		if r.URL.Query().Get("lang") == "" {
			lang = a.cfg.Catalog.Current().Language(signed.Receipt.Language)
		}
		err = receipts.Verify(signed, a.cfg.Receipts.Public())
	}
	if err != nil {
		data.Reason = a.i18n.text(lang, "verify.invalid.reason")
		a.render(w, r, http.StatusOK, "verify", lang, nil, nil, data)
		return
	}
	data.Valid = true
	if data.Receipt, err = a.viewReceipt(r, signed, lang); err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	data.Status, err = a.statuses(r.Context(), signed.Receipt, lang)
	if err != nil {
		a.unavailable(w, r, nil, err)
		return
	}
	a.render(w, r, http.StatusOK, "verify", lang, nil, nil, data)
}

// statuses reads the current status of a receipt's requests, by ID.
func (a *App) statuses(ctx context.Context, rc receipts.Receipt, lang string) (map[string]string, error) {
	ids := make([]string, len(rc.Requests))
	for i, req := range rc.Requests {
		ids[i] = req.ID
	}
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	found, err := a.cfg.Store.SearchRequests(ctx, events.RequestQuery{IDs: ids, Limit: len(ids)})
	if err != nil {
		return nil, err
	}
	for _, f := range found {
		out[f.ID] = a.i18n.text(lang, "status."+string(f.Status))
	}
	return out, nil
}

// keysFile serves the public keys that verify receipts.
func (a *App) keysFile(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Receipts == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.cfg.Receipts.Published())
}
