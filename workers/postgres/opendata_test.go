package postgres_test

import (
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/opendata"
	"github.com/spotflow/spotflow/workers/postgres"
)

// The store is what the open data reads.
var _ opendata.Store = (*postgres.Store)(nil)

// openDataNow is mid-September 2026: June, July and August are complete.
var openDataNow = time.Date(2026, 9, 15, 12, 0, 0, 0, time.UTC)

// openDataCase is what openDataStore projected.
type openDataCase struct {
	store *postgres.Store
	// secrets are strings of personal data, or that single a request, a
	// desk or a person out, which must never be published.
	secrets []string
}

// privateRequest is a request of desk in municipality for service,
// submitted at, whose every personal field holds a string no aggregate may
// carry; it adds them to c.secrets.
func (c *openDataCase) privateRequest(municipality, desk, service string, at time.Time, i int) *events.Request {
	r := newRequest(desk, service, at)
	r.Municipality = municipality
	r.Mediator = fmt.Sprintf("mediador.reservado.%d", i)
	r.VisitID = fmt.Sprintf("visita-privada-%d", i)
	r.Citizen = events.Citizen{NationalID: fmt.Sprintf("98877%04d", i), Name: fmt.Sprintf("Zacarias Quintanilha Sigiloso %d", i)}
	r.Attributes = map[string]json.RawMessage{"street": json.RawMessage(fmt.Sprintf(`"Travessa do Segredo %d"`, i))}
	c.secrets = append(c.secrets, r.ID, desk, r.Mediator, r.VisitID, r.Citizen.NationalID, r.Citizen.Name,
		fmt.Sprintf("Travessa do Segredo %d", i))
	return r
}

// openDataStore projects, through the real store, requests whose monthly
// aggregates (months in UTC) are:
//
//	2026-06 lisboa change-of-address   12 submitted, 12 completed after 10, 20, ... 120 minutes (SLA 1 h: 6 within, 6 past)
//	2026-06 lisboa tax-id-certificate   3 submitted,  3 completed: a small cell
//	2026-06 porto  change-of-address    9 submitted,  7 completed after 20 minutes, 2 rejected
//	2026-06 faro   birth-certificate    6 submitted on 30 June at 23:30 UTC ...
//	2026-07 faro   birth-certificate    ... and completed an hour later, on 1 July (UTC)
//	2026-09 lisboa change-of-address    8 submitted and completed: the month in progress
func openDataStore(t *testing.T) *openDataCase {
	t.Helper()
	c := &openDataCase{store: slaStore(t)}
	var changes []events.Change
	n := 0
	add := func(municipality, desk, service string, at time.Time, took time.Duration, outcome events.Status) {
		n++
		r := c.privateRequest(municipality, desk, service, at, n)
		changes = append(changes, complete(r, at.Add(took), outcome, "civil-registry")...)
	}
	june := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	for i := range 12 {
		add("lisboa", fmt.Sprintf("desk-sigilo-%d", i%3), "change-of-address", june.Add(time.Duration(i)*30*time.Minute),
			time.Duration(i+1)*10*time.Minute, events.StatusCompleted)
	}
	for i := range 3 {
		add("lisboa", "desk-unico-1", "tax-id-certificate", june.Add(time.Duration(i)*time.Hour), 2*time.Hour, events.StatusCompleted)
	}
	for i := range 9 {
		outcome := events.StatusCompleted
		if i >= 7 {
			outcome = events.StatusRejected
		}
		add("porto", "desk-norte-reservado", "change-of-address", june.AddDate(0, 0, i), 20*time.Minute, outcome)
	}
	lastEvening := time.Date(2026, 6, 30, 23, 30, 0, 0, time.UTC)
	for i := range 6 {
		add("faro", "desk-sul-reservado", "birth-certificate", lastEvening.Add(time.Duration(i)*time.Second), time.Hour, events.StatusCompleted)
	}
	for i := range 8 {
		add("lisboa", "desk-sigilo-0", "change-of-address", time.Date(2026, 9, 2, 10, i, 0, 0, time.UTC), time.Minute, events.StatusCompleted)
	}
	mustProject(t, c.store, changes...)

	// The keyed hashes stored in place of national IDs are personal data
	// too.
	rows, err := c.store.Pool().Query(t.Context(), `SELECT citizen_ref FROM requests`)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if len(ref) > 0 {
			c.secrets = append(c.secrets, hex.EncodeToString(ref))
		}
	}
	return c
}

// openDataServer serves the open data of s, as of openDataNow.
func openDataServer(t *testing.T, s *postgres.Store) *httptest.Server {
	t.Helper()
	h, err := opendata.New(opendata.Config{Store: s, Catalog: eventstest.Catalog(t), Now: func() time.Time { return openDataNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func getOpenData(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// openDataCSV fetches the CSV and returns its records by
// "month municipality service", each by column.
func openDataCSV(t *testing.T, srv *httptest.Server) (string, map[string]map[string]string) {
	t.Helper()
	body := getOpenData(t, srv.URL+"/open-data/requests-monthly.csv")
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v\n%s", err, body)
	}
	out := make(map[string]map[string]string)
	for _, rec := range records[1:] {
		row := make(map[string]string)
		for i, col := range records[0] {
			row[col] = rec[i]
		}
		out[row["month"]+" "+row["municipality"]+" "+row["service_code"]] = row
	}
	return body, out
}

func TestOpenData_PublishesNoPersonalDataAndNoSmallCell(t *testing.T) {
	t.Parallel()
	c := openDataStore(t)
	srv := openDataServer(t, c.store)
	csvBody, rows := openDataCSV(t, srv)
	jsonBody := getOpenData(t, srv.URL+"/open-data/requests-monthly.json")
	published := map[string]string{
		"the CSV":         csvBody,
		"the JSON":        jsonBody,
		"the description": getOpenData(t, srv.URL+"/open-data/dataset.jsonld"),
		"the index":       getOpenData(t, srv.URL+"/open-data/"),
	}
	if len(c.secrets) < 40*7 {
		t.Fatalf("only %d secrets collected", len(c.secrets))
	}
	for what, body := range published {
		for _, secret := range c.secrets {
			if strings.Contains(body, secret) {
				t.Errorf("%s carries %q", what, secret)
			}
		}
		for _, leak := range []string{"desk-", "mediador", "Sigiloso", "Segredo", "visita", "reported by", "tax-id-certificate", "2026-09"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s carries %q", what, leak)
			}
		}
	}
	if len(rows) == 0 {
		t.Fatalf("nothing published:\n%s", csvBody)
	}

	// Every count is empty or at least 5, and so is every figure that
	// rests on the completions.
	checkRow := func(where string, submitted, completed *int64, median, p90, share *float64) {
		t.Helper()
		for name, n := range map[string]*int64{"submitted": submitted, "completed": completed} {
			if n != nil && *n < opendata.MinCount {
				t.Errorf("%s: %s = %d, a small count", where, name, *n)
			}
		}
		if completed == nil && (median != nil || p90 != nil || share != nil) {
			t.Errorf("%s: times or share published over a suppressed completed count", where)
		}
		if p90 != nil && *completed < opendata.MinCompletedForP90 {
			t.Errorf("%s: a 90th percentile over %d completions", where, *completed)
		}
	}
	parseInt := func(s string) *int64 {
		if s == "" {
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("count %q: %v", s, err)
		}
		return &n
	}
	parseFloat := func(s string) *float64 {
		if s == "" {
			return nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("figure %q: %v", s, err)
		}
		return &f
	}
	for key, r := range rows {
		checkRow("CSV "+key, parseInt(r["submitted"]), parseInt(r["completed"]),
			parseFloat(r["median_hours"]), parseFloat(r["p90_hours"]), parseFloat(r["within_service_level_share"]))
	}
	var doc struct{ Rows []opendata.Row }
	if err := json.Unmarshal([]byte(jsonBody), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Rows) != len(rows) {
		t.Errorf("the JSON has %d rows, the CSV %d", len(doc.Rows), len(rows))
	}
	for _, r := range doc.Rows {
		checkRow("JSON "+r.Month+" "+r.Municipality+" "+r.ServiceCode, r.Submitted, r.Completed, r.MedianHours, r.P90Hours, r.WithinServiceLevelShare)
	}
}

func TestOpenData_AggregatesMonthsInUTCWithPercentilesWithinTheHistogramsPrecision(t *testing.T) {
	t.Parallel()
	c := openDataStore(t)
	srv := openDataServer(t, c.store)
	body, rows := openDataCSV(t, srv)
	// withinBucket checks an estimate against the true value: the
	// histogram's buckets are √2 wide and the figure has two significant
	// digits.
	withinBucket := func(key, col string, want time.Duration) {
		t.Helper()
		got, err := strconv.ParseFloat(rows[key][col], 64)
		if err != nil {
			t.Errorf("%s %s = %q, want about %v", key, col, rows[key][col], want)
			return
		}
		if ratio := got / want.Hours(); ratio < 1/(math.Sqrt2*1.05) || ratio > math.Sqrt2*1.05 {
			t.Errorf("%s %s = %v h, want %v h within a factor of √2", key, col, got, want.Hours())
		}
	}
	want := map[string]map[string]string{
		"2026-06 lisboa change-of-address": {"submitted": "12", "completed": "12", "within_service_level_share": "0.5"},
		"2026-06 porto change-of-address":  {"submitted": "9", "completed": "7", "p90_hours": "", "within_service_level_share": ""},
		"2026-06 faro birth-certificate":   {"submitted": "6", "completed": "", "median_hours": "", "p90_hours": ""},
		"2026-07 faro birth-certificate":   {"submitted": "", "completed": "6", "p90_hours": "", "within_service_level_share": ""},
	}
	if len(rows) != len(want) {
		t.Errorf("published %d rows, want %d:\n%s", len(rows), len(want), body)
	}
	for key, cols := range want {
		got, ok := rows[key]
		if !ok {
			t.Errorf("no row %s:\n%s", key, body)
			continue
		}
		for col, v := range cols {
			if got[col] != v {
				t.Errorf("%s %s = %q, want %q", key, col, got[col], v)
			}
		}
	}
	// Twelve completions after 10, 20, ..., 120 minutes: the median is the
	// 6th, 60 minutes, the 90th percentile the 11th, 110 minutes.
	withinBucket("2026-06 lisboa change-of-address", "median_hours", 60*time.Minute)
	withinBucket("2026-06 lisboa change-of-address", "p90_hours", 110*time.Minute)
	withinBucket("2026-06 porto change-of-address", "median_hours", 20*time.Minute)
	withinBucket("2026-07 faro birth-certificate", "median_hours", time.Hour)

	// The store's own reading: months start at midnight UTC, from and to
	// bound them, and histograms count every completion.
	type key struct{ month, municipality, service string }
	read := func(from, to time.Time) map[key]events.Tally {
		t.Helper()
		out := make(map[key]events.Tally)
		var last key
		err := c.store.MonthlyServiceTallies(t.Context(), from, to, func(month time.Time, municipality string, tally events.Tally, h *events.Histogram) error {
			k := key{month.Format("2006-01"), municipality, tally.Key}
			if month.Location() != time.UTC || month.Day() != 1 || month.Hour() != 0 {
				t.Errorf("month %v does not start at midnight UTC", month)
			}
			if k.month+k.municipality+k.service < last.month+last.municipality+last.service {
				t.Errorf("%v came after %v", k, last)
			}
			if h.Count() != tally.Completed {
				t.Errorf("%v: histogram counts %d completions, the tally %d", k, h.Count(), tally.Completed)
			}
			last = k
			out[k] = tally
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := read(time.Time{}, openDataNow.AddDate(0, 1, 0))
	if got := all[key{"2026-06", "lisboa", "change-of-address"}]; got.Submitted != 12 || got.Completed != 12 || got.WithinSLA != 6 || got.Breached != 6 {
		t.Errorf("June lisboa change-of-address = %+v, want 12 submitted and completed, 6 within the SLA, 6 past", got)
	}
	if got := all[key{"2026-06", "porto", "change-of-address"}]; got.Submitted != 9 || got.Completed != 7 || got.Rejected != 2 {
		t.Errorf("June porto = %+v, want 9 submitted, 7 completed, 2 rejected", got)
	}
	if got := all[key{"2026-09", "lisboa", "change-of-address"}]; got.Submitted != 8 {
		t.Errorf("the store reads what it is asked for, the month in progress included: September = %+v", got)
	}
	for k := range all {
		if k.municipality == "" {
			t.Errorf("the store returned a total across municipalities: %v", k)
		}
	}
	some := read(time.Date(2026, 7, 20, 0, 0, 0, 0, time.UTC), time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
	if len(some) != 1 || some[key{"2026-07", "faro", "birth-certificate"}].Completed != 6 {
		t.Errorf("from 20 July (its month) to before September: %v, want July's faro only", some)
	}
}
