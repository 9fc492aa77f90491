package open311

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// createdAnswer is the answer to POST requests.
type createdAnswer struct {
	ServiceRequestID string   `xml:"service_request_id" json:"service_request_id"`
	ServiceNotice    nullable `xml:"service_notice" json:"service_notice"`
	AccountID        nullable `xml:"account_id" json:"account_id"`
}

type createdAnswerList struct {
	Requests []createdAnswer `xml:"request"`
}

// attributeParam matches attribute[code] and attribute[code][].
var attributeParam = regexp.MustCompile(`^attribute\[([^\[\]]*)\](\[\])?$`)

func (a *API) serveSubmit(w http.ResponseWriter, r *http.Request) {
	resource, format, ok := splitPathFormat(w, r, "resource")
	if !ok {
		return
	}
	if resource != "requests" {
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, "no such Open311 resource: POST "+r.URL.Path)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, "the body must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, format, http.StatusBadRequest, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", a.cfg.MaxBody))
			return
		}
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, "the body is not a valid form: "+err.Error())
		return
	}
	desk, ok := a.authenticate(w, r, format, true)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if fe := events.CheckIdempotencyKey(key); fe != nil {
			writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, fe.Message)
			return
		}
	}
	catalog := a.cfg.Catalog.Current()
	sub, status, desc := submission(r.Form, catalog)
	if desc != "" {
		writeError(w, format, status, status, desc)
		return
	}
	id, svc, err := a.cfg.Intake.Accept(r.Context(), desk, key, sub)
	var fe *events.FieldError
	var th *events.Throttled
	switch {
	case errors.As(err, &th):
		w.Header().Set("Retry-After", strconv.Itoa(th.RetryAfterSeconds()))
		writeError(w, format, http.StatusTooManyRequests, http.StatusTooManyRequests, "this desk is "+th.Error())
		return
	case errors.As(err, &fe) && fe.Code == events.CodeUnknownService:
		writeError(w, format, http.StatusNotFound, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", sub.ServiceCode))
		return
	case errors.As(err, &fe):
		writeError(w, format, http.StatusBadRequest, http.StatusBadRequest, fieldName(fe.Field)+": "+fe.Message)
		return
	case errors.Is(err, events.ErrIdempotencyConflict):
		writeError(w, format, http.StatusBadRequest, http.StatusConflict, "this Idempotency-Key was used for a different request")
		return
	case errors.Is(err, events.ErrUnavailable):
		writeUnavailable(w, format, "the request could not be stored; send it again")
		return
	case err != nil:
		a.cfg.Logger.Error("open311: accept request", "err", err)
		writeError(w, format, http.StatusInternalServerError, http.StatusInternalServerError, "cannot take the request")
		return
	}
	lang := languageOf(r, catalog)
	created := createdAnswer{
		ServiceRequestID: id,
		ServiceNotice:    nullable(catalog.Notice(svc, lang, time.Now().Add(svc.SLA()))),
		AccountID:        nullable(sub.Mediator),
	}
	w.Header().Set("Location", prefix+"requests/"+id+"."+format)
	if format == "json" {
		write(w, format, http.StatusOK, "service_requests", []createdAnswer{created})
		return
	}
	write(w, format, http.StatusOK, "service_requests", createdAnswerList{[]createdAnswer{created}})
}

// submission turns a POST requests form into a submission, typing
// each attribute by the service's definition so that Validate judges it as
// it would a desk's JSON. When the form cannot be one (no service_code, an
// unknown service, several values for an attribute that takes one, a value
// that is not clean text), desc says why, naming the field as the client
// sent it, and status is the HTTP status to answer with.
//
// Values are checked as sent: encoding an attribute's value as JSON would
// replace what is not UTF-8, hiding it from Validate.
func submission(form url.Values, catalog *events.Catalog) (sub *events.Submission, status int, desc string) {
	code := form.Get("service_code")
	if code == "" {
		return nil, http.StatusBadRequest, "service_code was not provided"
	}
	if fault := events.TextFault(code, false); fault != "" {
		return nil, http.StatusBadRequest, "service_code: the value " + fault
	}
	svc, ok := catalog.Service(code)
	if !ok {
		return nil, http.StatusNotFound, fmt.Sprintf("service_code %q was not found", code)
	}
	sub = &events.Submission{
		ServiceCode: code,
		Citizen:     &events.Citizen{},
		Attributes:  map[string]json.RawMessage{},
		Mediator:    form.Get("account_id"),
	}
	attrs := make(map[string]*events.Attribute, len(svc.Attributes))
	for i := range svc.Attributes {
		attrs[svc.Attributes[i].Code] = &svc.Attributes[i]
	}
	values := map[string][]string{}
	var order []string
	for param, vs := range form {
		m := attributeParam.FindStringSubmatch(param)
		if m == nil {
			continue
		}
		if fault := events.TextFault(m[1], false); fault != "" {
			return nil, http.StatusBadRequest, fmt.Sprintf("%q: the attribute's code %s", param, fault)
		}
		multiline := attrs[m[1]] != nil && attrs[m[1]].Datatype == events.DatatypeText
		if _, seen := values[m[1]]; !seen {
			order = append(order, m[1])
		}
		for _, v := range vs {
			// An empty value is no value, as Open311's optional
			// arguments are.
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if fault := events.TextFault(v, multiline); fault != "" {
				return nil, http.StatusBadRequest, param + ": the value " + fault
			}
			values[m[1]] = append(values[m[1]], v)
		}
	}
	slices.Sort(order)
	for _, attr := range order {
		vs := values[attr]
		if len(vs) == 0 {
			continue
		}
		a := attrs[attr]
		if len(vs) > 1 && (a == nil || a.Datatype != events.DatatypeMultiValueList) {
			return nil, http.StatusBadRequest, fmt.Sprintf("attribute[%s]: takes one value, got %d", attr, len(vs))
		}
		switch attr {
		case citizenNationalIDAttribute, citizenNameAttribute:
			if attr == citizenNationalIDAttribute {
				sub.Citizen.NationalID = vs[0]
			} else {
				sub.Citizen.Name = vs[0]
			}
			continue
		}
		switch {
		case a == nil:
			// Unknown to the service: Validate names it.
			sub.Attributes[attr], _ = json.Marshal(vs[0])
		case a.Datatype == events.DatatypeMultiValueList:
			sub.Attributes[attr], _ = json.Marshal(vs)
		case a.Datatype == events.DatatypeNumber:
			if number, ok := jsonNumber(vs[0]); ok {
				sub.Attributes[attr] = number
			} else {
				// Validate refuses a string where a number is due.
				sub.Attributes[attr], _ = json.Marshal(vs[0])
			}
		default:
			sub.Attributes[attr], _ = json.Marshal(vs[0])
		}
	}
	if sub.Citizen.Name == "" {
		for _, name := range []string{"first_name", "last_name"} {
			if fault := events.TextFault(form.Get(name), false); fault != "" {
				return nil, http.StatusBadRequest, name + ": the value " + fault
			}
		}
		sub.Citizen.Name = strings.TrimSpace(strings.TrimSpace(form.Get("first_name")) + " " + strings.TrimSpace(form.Get("last_name")))
	}
	return sub, 0, ""
}

// jsonNumber is v as the JSON of a finite number, when v is a decimal
// number: digits with a sign, a decimal point or an exponent, as
// strconv.ParseFloat reads them, but not the Inf, NaN, hexadecimal or
// underscored numbers it also reads, which JSON cannot carry.
func jsonNumber(v string) (json.RawMessage, bool) {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool { return !strings.ContainsRune("0123456789+-.eE", r) }) {
		return nil, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return nil, false
	}
	number, err := json.Marshal(f)
	return number, err == nil
}

// fieldName names a field of a submission the way an Open311 client sent it.
func fieldName(field string) string {
	switch {
	case field == "citizen" || field == "citizen.national_id":
		return "attribute[" + citizenNationalIDAttribute + "]"
	case field == "citizen.name":
		return "attribute[" + citizenNameAttribute + "]"
	case field == "mediator":
		return "account_id"
	case strings.HasPrefix(field, "attributes."):
		return "attribute[" + strings.TrimPrefix(field, "attributes.") + "]"
	}
	return field
}
