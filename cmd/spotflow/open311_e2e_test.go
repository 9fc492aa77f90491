package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// open311Request is a request as Open311's GET requests shows it in XML.
type open311Request struct {
	ID                string `xml:"service_request_id" json:"service_request_id"`
	Status            string `xml:"status" json:"status"`
	StatusNotes       string `xml:"status_notes" json:"status_notes"`
	ServiceName       string `xml:"service_name" json:"service_name"`
	ServiceCode       string `xml:"service_code" json:"service_code"`
	AgencyResponsible string `xml:"agency_responsible" json:"agency_responsible"`
	ServiceNotice     string `xml:"service_notice" json:"service_notice"`
	Requested         string `xml:"requested_datetime" json:"requested_datetime"`
	Updated           string `xml:"updated_datetime" json:"updated_datetime"`
	Expected          string `xml:"expected_datetime" json:"expected_datetime"`
}

func httpDo(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// readOpen311 reads GET requests/{id} in format.
func readOpen311(t *testing.T, base, token, id, format string) open311Request {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/open311/v2/requests/"+id+"."+format+"?api_key="+url.QueryEscape(token), nil)
	status, body := httpDo(t, req)
	if status != http.StatusOK {
		t.Fatalf("GET requests/%s.%s: %d %s", id, format, status, body)
	}
	if format == "xml" {
		var list struct {
			Requests []open311Request `xml:"request"`
		}
		if err := xml.Unmarshal(body, &list); err != nil || len(list.Requests) != 1 {
			t.Fatalf("requests/%s.xml: %v %s", id, err, body)
		}
		return list.Requests[0]
	}
	var list []struct {
		open311Request
		Notes *string `json:"status_notes"`
	}
	if err := json.Unmarshal(body, &list); err != nil || len(list) != 1 {
		t.Fatalf("requests/%s.json: %v %s", id, err, body)
	}
	r := list[0].open311Request
	if list[0].Notes != nil {
		r.StatusNotes = *list[0].Notes
	}
	return r
}

// TestOpen311_ARequestSubmittedByFormIsReadBackClosed drives the real HTTP
// server and every role the way an Open311 client would: it lists services,
// reads a service definition, submits form-encoded requests, and reads them
// back in XML and JSON once every agency has answered.
func TestOpen311_ARequestSubmittedByFormIsReadBackClosed(t *testing.T) {
	m, dbURL := startMain(t, "*:latency=1ms")
	base := "http://" + m.HTTPAddr()
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	desk, token, err := store.CreateDesk(t.Context(), "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatal(err)
	}

	req, _ := http.NewRequest("GET", base+"/open311/v2/services.xml?lang=el&jurisdiction_id=lisboa", nil)
	status, body := httpDo(t, req)
	if status != http.StatusOK || !strings.Contains(string(body), "<service_name>Αλλαγή διεύθυνσης</service_name>") {
		t.Fatalf("GET services.xml in Greek: %d %.300s", status, body)
	}
	req, _ = http.NewRequest("GET", base+"/open311/v2/services/change-of-address.json", nil)
	if status, body = httpDo(t, req); status != http.StatusOK || !strings.Contains(string(body), `"code":"citizen_national_id"`) {
		t.Fatalf("GET services/change-of-address.json: %d %s", status, body)
	}

	forms := map[string]url.Values{
		"xml": {
			"api_key": {token}, "jurisdiction_id": {"lisboa"}, "service_code": {"change-of-address"},
			"attribute[citizen_national_id]": {"24681357"}, "attribute[citizen_name]": {"Ελένη Γεωργίου"},
			"attribute[street]": {"Rua da Prata 80"}, "attribute[postal_code]": {"1100-420"}, "attribute[locality]": {"Lisboa"},
			"account_id": {"m-3"},
		},
		"json": {
			"api_key": {token}, "service_code": {"driving-licence-renewal"},
			"first_name": {"João"}, "last_name": {"Gonçalves"}, "attribute[citizen_national_id]": {"13572468"},
			"attribute[licence_number]": {"L-2468"}, "attribute[categories][]": {"A", "B"},
		},
	}
	ids := map[string]string{}
	for format, form := range forms {
		req, _ := http.NewRequest("POST", base+"/open311/v2/requests."+format, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		status, body := httpDo(t, req)
		if status != http.StatusOK {
			t.Fatalf("POST requests.%s: %d %s", format, status, body)
		}
		if format == "xml" {
			var created struct {
				Requests []struct {
					ID     string `xml:"service_request_id"`
					Notice string `xml:"service_notice"`
				} `xml:"request"`
			}
			if err := xml.Unmarshal(body, &created); err != nil || len(created.Requests) != 1 || created.Requests[0].ID == "" {
				t.Fatalf("POST requests.xml answered %s (%v)", body, err)
			}
			ids[format] = created.Requests[0].ID
		} else {
			var created []struct {
				ID string `json:"service_request_id"`
			}
			if err := json.Unmarshal(body, &created); err != nil || len(created) != 1 || created[0].ID == "" {
				t.Fatalf("POST requests.json answered %s (%v)", body, err)
			}
			ids[format] = created[0].ID
		}
	}

	for _, id := range ids {
		workertest.WaitWithin(t, 60*time.Second, "request "+id+" to close", func() error {
			r := readOpen311(t, base, token, id, "json")
			if r.Status == "closed" {
				return nil
			}
			return errors.New(r.Status)
		})
	}

	address := ids["xml"]
	for _, format := range []string{"xml", "json"} {
		r := readOpen311(t, base, token, address, format)
		want := open311Request{
			ID: address, Status: "closed", ServiceName: "Change of address", ServiceCode: "change-of-address",
			AgencyResponsible: "Institute of Registries and Notary, Tax and Customs Authority, Social Security, National Health Service",
			ServiceNotice:     r.ServiceNotice, Requested: r.Requested, Updated: r.Updated, Expected: r.Expected,
		}
		if r != want {
			t.Errorf("requests/%s.%s = %+v, want %+v", address, format, r, want)
		}
		requested, err1 := time.Parse(time.RFC3339, r.Requested)
		updated, err2 := time.Parse(time.RFC3339, r.Updated)
		expected, err3 := time.Parse(time.RFC3339, r.Expected)
		if err1 != nil || err2 != nil || err3 != nil || updated.Before(requested) || expected.Sub(requested) != 120*time.Hour {
			t.Errorf("%s: requested %s, updated %s, expected %s; want ISO 8601 times, updated once closed, expected after the 120h SLA",
				format, r.Requested, r.Updated, r.Expected)
		}
	}

	// The desk API sees the same request, fanned out to four agencies.
	v, err := store.RequestForDesk(t.Context(), desk.ID, address)
	if err != nil || v.Status != events.StatusCompleted || len(v.WorkItems) != 4 {
		t.Fatalf("RequestForDesk = %+v, %v; want completed with four work items", v, err)
	}
	checkTimeline(t, v)

	// Both are listed as closed, newest first, without personal data.
	req, _ = http.NewRequest("GET", base+"/open311/v2/requests.xml?status=closed&api_key="+url.QueryEscape(token), nil)
	status, body = httpDo(t, req)
	var list struct {
		Requests []open311Request `xml:"request"`
	}
	if err := xml.Unmarshal(body, &list); err != nil || status != http.StatusOK || len(list.Requests) != 2 {
		t.Fatalf("GET requests.xml?status=closed: %d %v %s", status, err, body)
	}
	for _, personal := range []string{"Ελένη", "24681357", "Rua da Prata", "João", "13572468", "L-2468", "m-3"} {
		if bytes.Contains(body, []byte(personal)) {
			t.Errorf("GET requests shows %q, which is personal data", personal)
		}
	}
}

// writeCatalogFile writes the built-in catalogue to path after replacing
// old with new in it, and sets the file's modification time to mtime when
// it is not zero.
func writeCatalogFile(t *testing.T, path, old, new string, mtime time.Time) {
	t.Helper()
	data := bytes.Replace(schemas.Catalog, []byte(old), []byte(new), 1)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// changeset reads the catalogue version in force, which Open311's discovery
// document gives as its changeset.
func changeset(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/open311/discovery.json", nil)
	_, body := httpDo(t, req)
	var d struct {
		Changeset string `json:"changeset"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("discovery.json: %v %s", err, body)
	}
	return d.Changeset
}

// TestRun_ReloadsTheCatalogueOnSIGHUPAndKeepsTheLastGoodOne edits the
// catalogue file under a running process without changing its size or
// modification time, so that only SIGHUP can make the process read it.
func TestRun_ReloadsTheCatalogueOnSIGHUPAndKeepsTheLastGoodOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.json")
	const version = `"version": "2026.12.1"`
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeCatalogFile(t, path, version, version, mtime)
	m := &Main{
		Config: Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DatabaseURL: pgtest.Schema(t),
			Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32), CatalogFile: path,
		},
		Roles: allRoles,
		Embed: true,
	}
	var logs workertest.Log
	m.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runMain(t, m)
	base := "http://" + m.HTTPAddr()
	if v := changeset(t, base); v != "2026.12.1" {
		t.Fatalf("catalogue version %q at start", v)
	}

	// Broken (English is no longer among the languages), same size and time.
	writeCatalogFile(t, path, `"languages": ["pt", "en",`, `"languages": ["pt", "xx",`, mtime)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	workertest.WaitWithin(t, 10*time.Second, "the broken catalogue to be refused", func() error {
		if strings.Contains(logs.String(), "catalogue refused") && strings.Contains(logs.String(), path) {
			return nil
		}
		return errors.New(logs.String())
	})
	if v := changeset(t, base); v != "2026.12.1" {
		t.Errorf("catalogue version %q after a broken reload, want the last good one", v)
	}
	// Then repaired with a new version, again same size and time: the
	// process reads it only on the next SIGHUP.
	writeCatalogFile(t, path, version, `"version": "2026.12.2"`, mtime)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	workertest.WaitWithin(t, 10*time.Second, "the repaired catalogue to be in force", func() error {
		v := changeset(t, base)
		if v == "2026.12.2" {
			return nil
		}
		return errors.New(v)
	})
}

// TestRun_RefusesABrokenCatalogueNamingFilePathAndReason starts spotflow as
// a user would with a broken --catalog file.
func TestRun_RefusesABrokenCatalogueNamingFilePathAndReason(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.json")
	writeCatalogFile(t, path, `"sla_hours": 240,`, `"sla_hours": "ten days",`, time.Time{})
	var stdout, stderr bytes.Buffer
	err := dispatch(t.Context(), []string{"run", "--catalog", path, "--data-dir", t.TempDir(), "--log-level", "error"}, &stdout, &stderr)
	want := fmt.Sprintf("catalogue %s: services[0].sla_hours: got string, want number", path)
	if err == nil || err.Error() != want {
		t.Errorf("run with a broken catalogue: %v; want %q", err, want)
	}
}
