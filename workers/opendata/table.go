package opendata

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/spotflow/spotflow/events"
)

// The thresholds of the disclosure rules (docs/open-data.md).
const (
	// MinCount is the smallest count published: a count under it (zero
	// included) is published empty, and so is every figure that would
	// rest on fewer cases.
	MinCount = 5
	// MinCompletedForP90 is the fewest completions whose 90th percentile
	// is published. With fewer, the 90th percentile falls in the bucket of
	// the slowest completion, which would come close to publishing one
	// person's waiting time.
	MinCompletedForP90 = 10
)

// Columns are the CSV's header, in order; the JSON rows use the same names.
var Columns = []string{"month", "municipality", "service_code", "submitted", "completed",
	"median_hours", "p90_hours", "within_service_level_share"}

// monthLayout is how months are written: YYYY-MM.
const monthLayout = "2006-01"

// Row is one published cell: the requests of one service at the desks of
// one municipality in one calendar month (UTC). A nil figure was
// suppressed.
type Row struct {
	Month        string `json:"month"`
	Municipality string `json:"municipality"`
	ServiceCode  string `json:"service_code"`
	// Submitted counts the requests submitted in the month.
	Submitted *int64 `json:"submitted"`
	// Completed counts the requests completed in the month, whenever they
	// were submitted.
	Completed *int64 `json:"completed"`
	// MedianHours and P90Hours are the median and 90th percentile of those
	// completions' times from submission, in hours, to two significant
	// digits.
	MedianHours *float64 `json:"median_hours"`
	P90Hours    *float64 `json:"p90_hours"`
	// WithinServiceLevelShare is the share, from 0 to 1 to three decimals,
	// of those completions within the service's expected completion time,
	// among those measured against one.
	WithinServiceLevelShare *float64 `json:"within_service_level_share"`
}

// Publish applies the disclosure rules to one month's tally of one service
// in one municipality, with the histogram of its completions' times, and
// returns what may be published of it; false when nothing may, so that the
// cell is left out. Only the month, the municipality and the tally's key
// (the service code) are copied; nothing else of the input is.
//
//   - submitted and completed are published when at least MinCount;
//   - the median when completed and the histogram both count at least
//     MinCount; the 90th percentile when they count at least
//     MinCompletedForP90;
//   - the share within the service level when completed is published and
//     both the completions within it and those past it number at least
//     MinCount: with the published completed count, the share gives both
//     numbers exactly, so each must pass the rule a count does.
func Publish(month time.Time, municipality string, t events.Tally, h *events.Histogram) (Row, bool) {
	r := Row{Month: month.UTC().Format(monthLayout), Municipality: municipality, ServiceCode: t.Key}
	r.Submitted = count(t.Submitted)
	r.Completed = count(t.Completed)
	if r.Completed == nil && r.Submitted == nil {
		return Row{}, false
	}
	if r.Completed == nil {
		return r, true
	}
	if h == nil {
		h = new(events.Histogram)
	}
	if n := h.Count(); n >= MinCount {
		r.MedianHours = hours(h.Quantile(0.5))
		if n >= MinCompletedForP90 && t.Completed >= MinCompletedForP90 {
			r.P90Hours = hours(h.Quantile(0.9))
		}
	}
	if t.WithinSLA >= MinCount && t.Breached >= MinCount {
		share, _ := t.SLAShare()
		share = math.Round(share*1000) / 1000
		r.WithinServiceLevelShare = &share
	}
	return r, true
}

// count is n, or nil when it is under MinCount.
func count(n int64) *int64 {
	if n < MinCount {
		return nil
	}
	return &n
}

// hours is d in hours to two significant digits: the histogram's buckets
// are √2 wide, so more digits would claim a precision the figures do not
// have.
func hours(d time.Duration) *float64 {
	h, _ := strconv.ParseFloat(strconv.FormatFloat(d.Hours(), 'g', 2, 64), 64)
	return &h
}

// writeCSV renders rows as CSV (RFC 4180: CRLF line ends, a header row),
// suppressed figures as empty fields.
func writeCSV(rows []Row) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	_ = w.Write(Columns)
	rec := make([]string, len(Columns))
	for _, r := range rows {
		rec[0], rec[1], rec[2] = r.Month, r.Municipality, r.ServiceCode
		rec[3], rec[4] = formatInt(r.Submitted), formatInt(r.Completed)
		rec[5], rec[6], rec[7] = formatFloat(r.MedianHours), formatFloat(r.P90Hours), formatFloat(r.WithinServiceLevelShare)
		_ = w.Write(rec)
	}
	w.Flush()
	return buf.Bytes()
}

func formatInt(n *int64) string {
	if n == nil {
		return ""
	}
	return strconv.FormatInt(*n, 10)
}

func formatFloat(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

// serviceInfo is what the JSON file tells of a service from the catalogue.
type serviceInfo struct {
	Name              events.Text `json:"name"`
	ServiceLevelHours float64     `json:"service_level_hours"`
}

// jsonFile is the JSON distribution: the rows, with what a reader needs to
// use them.
type jsonFile struct {
	Title     string    `json:"title"`
	License   string    `json:"license"`
	Publisher publisher `json:"publisher"`
	// Dataset is the address of the dataset's description (DCAT-AP).
	Dataset string `json:"dataset"`
	// From and To are the first and last months the rows may cover: from
	// the month asked, else the first published; to the month asked, at
	// most the last complete month. Absent when from would come after to.
	From     string   `json:"from,omitempty"`
	To       string   `json:"to,omitempty"`
	MinCount int      `json:"min_count"`
	Columns  []string `json:"columns"`
	Rows     []Row    `json:"rows"`
	// Services names the services of the rows and gives their expected
	// completion times, as the catalogue has them now.
	Services map[string]serviceInfo `json:"services"`
}

type publisher struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
}

// writeJSON renders v as JSON.
func writeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return buf.Bytes()
}
