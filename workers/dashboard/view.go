package dashboard

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow/spotflow/events"
)

// pageView is what the whole page shows around its live part.
type pageView struct {
	Filter         events.DashboardFilter
	Ranges         []events.Range
	Municipalities []string
	Live           template.HTML
}

// figures are the dashboard's headline numbers, shown on the page with
// data-figure attributes and served as JSON at /dashboard/figures.
type figures struct {
	Range             events.Range `json:"range"`
	Municipality      string       `json:"municipality"`
	Since             time.Time    `json:"since"`
	Submitted         int64        `json:"submitted"`
	Completed         int64        `json:"completed"`
	Rejected          int64        `json:"rejected"`
	Failed            int64        `json:"failed"`
	WithinSLA         int64        `json:"within_sla"`
	Breached          int64        `json:"breached"`
	P50Millis         int64        `json:"p50_ms"`
	P95Millis         int64        `json:"p95_ms"`
	P99Millis         int64        `json:"p99_ms"`
	LastHourSubmitted int64        `json:"last_hour_submitted"`
	LastHourCompleted int64        `json:"last_hour_completed"`
	Backlog           uint64       `json:"backlog"`
	DeadLetters       int64        `json:"pending_dead_letters"`
}

// liveView is the part of the page that server-sent events replace.
type liveView struct {
	Figures        figures
	Municipalities []string
	RangeLabel     string
	Scope          string
	Since, Updated string
	SLAShare       string
	P50, P95, P99  string
	Throughput     lineChart
	BacklogKnown   bool
	Backlog        barChart
	BacklogRows    []backlogRow
	LatencyChart   barChart
	LatencyRows    []latencyRow
	SLAChart       barChart
	SLAServices    []slaRow
	SLAAgencies    []slaRow
	Tables         []tallyTable
}

type backlogRow struct {
	Agency                           string
	Pending, AckPending, Redelivered uint64
	DeadLetters, Failed              int64
}

type latencyRow struct {
	Service, Expected string
	Completed         int64
	P50, P95, P99     string
}

type slaRow struct {
	Name, Expected      string
	Completed, Breached int64
	Within              int64
	Share               string
}

type tallyTable struct {
	ID, Title, KeyHeader, SubmittedHeader, Note string
	Rows                                        []tallyRow
}

type tallyRow struct {
	Name                                           string
	Submitted, Completed, Rejected, Failed, Breach int64
	Share, Mean                                    string
}

// buildView shapes data, the backlog and the catalogue into what the page
// shows.
func buildView(catalog *events.Catalog, data *events.DashboardData, backlog []events.QueueBacklog, backlogKnown bool, now time.Time) *liveView {
	total := data.Tallies[events.DimensionTotal][0]
	all := data.Latencies[""]
	if all == nil {
		all = new(events.Histogram)
	}
	v := &liveView{
		Municipalities: data.Municipalities,
		RangeLabel:     data.Filter.Range.Label(),
		Scope:          cmp.Or(data.Filter.Municipality, "every municipality"),
		Since:          data.Since.UTC().Format("2006-01-02 15:04 UTC"),
		Updated:        now.UTC().Format("15:04:05 UTC"),
		SLAShare:       share(total),
		P50:            duration(all.Quantile(0.5), all.Count()),
		P95:            duration(all.Quantile(0.95), all.Count()),
		P99:            duration(all.Quantile(0.99), all.Count()),
		BacklogKnown:   backlogKnown,
	}
	v.Figures = figures{
		Range: data.Filter.Range, Municipality: data.Filter.Municipality, Since: data.Since,
		Submitted: total.Submitted, Completed: total.Completed, Rejected: total.Rejected, Failed: total.Failed,
		WithinSLA: total.WithinSLA, Breached: total.Breached,
		P50Millis: all.Quantile(0.5).Milliseconds(), P95Millis: all.Quantile(0.95).Milliseconds(), P99Millis: all.Quantile(0.99).Milliseconds(),
	}
	for _, m := range data.Minutes {
		v.Figures.LastHourSubmitted += m.Submitted
		v.Figures.LastHourCompleted += m.Completed
	}
	for _, n := range data.PendingDeadLetters {
		v.Figures.DeadLetters += n
	}
	v.Throughput = throughputChart(data.Minutes)

	// Backlog and dead letters, by agency: every agency of the catalogue.
	agencyTallies := byKey(data.Tallies[events.DimensionAgency])
	queues := make(map[string]events.QueueBacklog)
	for _, b := range backlog {
		queues[b.Agency] = b
		v.Figures.Backlog += b.Pending + b.AckPending
	}
	for _, a := range catalog.Agencies {
		q := queues[a.Code]
		v.BacklogRows = append(v.BacklogRows, backlogRow{
			Agency: a.Name.In(events.DefaultLanguage), Pending: q.Pending, AckPending: q.AckPending, Redelivered: q.Redelivered,
			DeadLetters: data.PendingDeadLetters[a.Code], Failed: agencyTallies[a.Code].Failed,
		})
	}
	v.Backlog = backlogChart(v.BacklogRows)

	// Latency and SLA by service: every service of the catalogue, and any
	// other the roll-ups name (a service since removed).
	services := make(map[string]events.Tally)
	for _, t := range data.Tallies[events.DimensionService] {
		services[t.Key] = t
	}
	codes := make([]string, 0, len(catalog.Services))
	for _, s := range catalog.Services {
		codes = append(codes, s.Code)
	}
	for code := range services {
		if !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	v.LatencyRows = append(v.LatencyRows, latencyRow{Service: "All services", Completed: all.Count(), P50: v.P50, P95: v.P95, P99: v.P99})
	var latencies []events.Latency
	for _, code := range codes {
		name, expected := serviceName(catalog, code)
		h := data.Latencies[code]
		if h == nil {
			h = new(events.Histogram)
		}
		l := events.LatencyOf(name, h)
		latencies = append(latencies, l)
		v.LatencyRows = append(v.LatencyRows, latencyRow{Service: name, Expected: expected, Completed: l.Completed,
			P50: duration(l.P50, l.Completed), P95: duration(l.P95, l.Completed), P99: duration(l.P99, l.Completed)})
		t := services[code]
		v.SLAServices = append(v.SLAServices, slaRow{Name: name, Expected: expected, Completed: t.Completed,
			Within: t.WithinSLA, Breached: t.Breached, Share: share(t)})
	}
	v.LatencyChart = latencyChart(latencies)
	v.SLAChart = slaChart(v.SLAServices)
	for _, a := range catalog.Agencies {
		t := agencyTallies[a.Code]
		v.SLAAgencies = append(v.SLAAgencies, slaRow{Name: a.Name.In(events.DefaultLanguage), Completed: t.Completed,
			Within: t.WithinSLA, Breached: t.Breached, Share: share(t)})
	}

	names := func(dim events.Dimension) func(string) string {
		switch dim {
		case events.DimensionDesk:
			return func(id string) string { return cmp.Or(data.DeskNames[id], id) }
		case events.DimensionService:
			return func(code string) string { name, _ := serviceName(catalog, code); return name }
		case events.DimensionAgency:
			return func(code string) string { return agencyName(catalog, code) }
		}
		return func(key string) string { return key }
	}
	for _, t := range []struct {
		dim                 events.Dimension
		title, header, subm string
	}{
		{events.DimensionMunicipality, "By municipality", "Municipality", "Submitted"},
		{events.DimensionDesk, "By desk", "Desk", "Submitted"},
		{events.DimensionService, "By service", "Service", "Submitted"},
		{events.DimensionAgency, "By agency", "Agency", "Dispatched"},
	} {
		v.Tables = append(v.Tables, tallies(string(t.dim), t.title, t.header, t.subm, data.Tallies[t.dim], names(t.dim)))
	}
	return v
}

// maxTableRows caps the rows of a table; the busiest come first.
const maxTableRows = 50

func tallies(id, title, header, submittedHeader string, ts []events.Tally, name func(string) string) tallyTable {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b events.Tally) int {
		return cmp.Or(cmp.Compare(b.Submitted, a.Submitted), cmp.Compare(b.Completed, a.Completed), cmp.Compare(a.Key, b.Key))
	})
	t := tallyTable{ID: id, Title: title, KeyHeader: header, SubmittedHeader: submittedHeader}
	if len(ts) > maxTableRows {
		t.Note = fmt.Sprintf("The %d busiest of %d, by %s.", maxTableRows, len(ts), strings.ToLower(submittedHeader))
		ts = ts[:maxTableRows]
	}
	for _, x := range ts {
		t.Rows = append(t.Rows, tallyRow{Name: name(x.Key), Submitted: x.Submitted, Completed: x.Completed,
			Rejected: x.Rejected, Failed: x.Failed, Breach: x.Breached, Share: share(x), Mean: duration(x.MeanLatency(), x.Completed)})
	}
	return t
}

func byKey(ts []events.Tally) map[string]events.Tally {
	m := make(map[string]events.Tally, len(ts))
	for _, t := range ts {
		m[t.Key] = t
	}
	return m
}

func serviceName(catalog *events.Catalog, code string) (name, expected string) {
	if s, ok := catalog.Service(code); ok {
		return s.Name.In(events.DefaultLanguage), duration(s.SLA(), 1)
	}
	return code, "—"
}

func agencyName(catalog *events.Catalog, code string) string {
	for _, a := range catalog.Agencies {
		if a.Code == code {
			return a.Name.In(events.DefaultLanguage)
		}
	}
	return code
}

func share(t events.Tally) string {
	s, ok := t.SLAShare()
	if !ok {
		return "—"
	}
	return strconv.FormatFloat(100*s, 'f', 1, 64) + " %"
}

// duration formats d for people, in the largest unit that keeps it above
// one; "—" when nothing was counted.
func duration(d time.Duration, n int64) string {
	switch {
	case n == 0:
		return "—"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.1f min", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%.1f d", d.Hours()/24)
}

// Charts are drawn on the server as SVG; each one has a title and a
// description, and a table with the same figures follows it on the page.

type lineChart struct {
	Width, Height        int
	Left, Right, Top, Bo int
	Series               []lineSeries
	YTicks, XTicks       []tick
	Rows                 []events.MinuteCount
	RowLabels            []string
	Max                  int64
}

type lineSeries struct {
	Name, Class, Points string
	Total               int64
}

type tick struct {
	Pos   int
	Label string
}

func throughputChart(minutes []events.MinuteCount) lineChart {
	c := lineChart{Width: 720, Height: 240, Left: 56, Right: 704, Top: 16, Bo: 208, Rows: minutes}
	var top int64 = 1
	for _, m := range minutes {
		top = max(top, m.Submitted, m.Completed)
	}
	c.Max = niceCeil(top)
	x := func(i int) int {
		if len(minutes) < 2 {
			return c.Left
		}
		return c.Left + i*(c.Right-c.Left)/(len(minutes)-1)
	}
	y := func(v int64) int { return c.Bo - int(v*int64(c.Bo-c.Top)/c.Max) }
	var sub, done strings.Builder
	var subTotal, doneTotal int64
	for i, m := range minutes {
		fmt.Fprintf(&sub, "%d,%d ", x(i), y(m.Submitted))
		fmt.Fprintf(&done, "%d,%d ", x(i), y(m.Completed))
		subTotal += m.Submitted
		doneTotal += m.Completed
		c.RowLabels = append(c.RowLabels, m.At.UTC().Format("15:04"))
		if i%10 == 0 || i == len(minutes)-1 {
			c.XTicks = append(c.XTicks, tick{Pos: x(i), Label: m.At.UTC().Format("15:04")})
		}
	}
	c.Series = []lineSeries{
		{Name: "Submitted", Class: "submitted", Points: strings.TrimSpace(sub.String()), Total: subTotal},
		{Name: "Completed", Class: "completed", Points: strings.TrimSpace(done.String()), Total: doneTotal},
	}
	for _, v := range []int64{0, c.Max / 2, c.Max} {
		c.YTicks = append(c.YTicks, tick{Pos: y(v), Label: strconv.FormatInt(v, 10)})
	}
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v int64) int64 {
	if v <= 1 {
		return 2
	}
	p := int64(math.Pow(10, math.Floor(math.Log10(float64(v)))))
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			if m*p%2 == 1 {
				return m * p * 2
			}
			return m * p
		}
	}
	return 10 * p
}

type barChart struct {
	Width, Height, PlotX, PlotW int
	Rows                        []barRow
	Legend                      []legendItem
	Scale                       string
}

type barRow struct {
	Label          string
	LabelY, ValueY int
	Value          string
	Bars           []bar
}

type bar struct {
	Class      string
	X, Y, W, H int
}

type legendItem struct {
	Name, Class string
	X           int
}

const (
	barLabelW = 260
	barPlotW  = 360
	barValueW = 120
)

// barsOf lays out one row per entry; each row holds len(classes) bars side
// by side (stacked false) or end to end (stacked true).
func barsOf(labels []string, values [][]float64, texts []string, classes, names []string, stacked bool, scale float64) barChart {
	rowH := 26
	if !stacked && len(classes) > 1 {
		rowH = 10*len(classes) + 8
	}
	c := barChart{Width: barLabelW + barPlotW + barValueW, PlotX: barLabelW, PlotW: barPlotW}
	top := 30
	for i, n := range names {
		c.Legend = append(c.Legend, legendItem{Name: n, Class: classes[i], X: barLabelW + i*130})
	}
	if scale <= 0 {
		scale = 1
	}
	for i, label := range labels {
		y := top + i*rowH
		r := barRow{Label: label, LabelY: y + rowH/2 + 4, ValueY: y + rowH/2 + 4, Value: texts[i]}
		x := barLabelW
		for j, v := range values[i] {
			w := int(math.Round(v / scale * barPlotW))
			if v > 0 && w == 0 {
				w = 1
			}
			if stacked {
				r.Bars = append(r.Bars, bar{Class: classes[j], X: x, Y: y + 4, W: w, H: rowH - 8})
				x += w
			} else {
				r.Bars = append(r.Bars, bar{Class: classes[j], X: barLabelW, Y: y + 4 + j*10, W: w, H: 8})
			}
		}
		c.Rows = append(c.Rows, r)
	}
	c.Height = top + len(labels)*rowH + 8
	return c
}

func backlogChart(rows []backlogRow) barChart {
	var top float64
	labels := make([]string, len(rows))
	values := make([][]float64, len(rows))
	texts := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = r.Agency
		values[i] = []float64{float64(r.Pending), float64(r.AckPending)}
		texts[i] = fmt.Sprintf("%d + %d", r.Pending, r.AckPending)
		top = max(top, float64(r.Pending+r.AckPending))
	}
	c := barsOf(labels, values, texts, []string{"pending", "ackpending"}, []string{"Pending", "Awaiting ack"}, true, float64(niceCeil(int64(top))))
	c.Scale = fmt.Sprintf("Scale: 0 to %d work items", niceCeil(int64(top)))
	return c
}

func latencyChart(ls []events.Latency) barChart {
	var top time.Duration
	labels := make([]string, len(ls))
	values := make([][]float64, len(ls))
	texts := make([]string, len(ls))
	for i, l := range ls {
		labels[i] = l.Service
		values[i] = []float64{float64(l.P50), float64(l.P95), float64(l.P99)}
		texts[i] = "p99 " + duration(l.P99, l.Completed)
		top = max(top, l.P99)
	}
	c := barsOf(labels, values, texts, []string{"p50", "p95", "p99"}, []string{"p50", "p95", "p99"}, false, float64(top))
	c.Scale = "Scale: 0 to " + duration(top, 1)
	return c
}

func slaChart(rows []slaRow) barChart {
	labels := make([]string, len(rows))
	values := make([][]float64, len(rows))
	texts := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = r.Name
		n := r.Within + r.Breached
		if n > 0 {
			values[i] = []float64{float64(r.Within) / float64(n), float64(r.Breached) / float64(n)}
		} else {
			values[i] = []float64{0, 0}
		}
		texts[i] = r.Share
	}
	c := barsOf(labels, values, texts, []string{"within", "breached"}, []string{"Within SLA", "Breached"}, true, 1)
	c.Scale = "Scale: 0 to 100 % of completions with an expected time"
	return c
}

var templateFuncs = template.FuncMap{
	"percentOf": func(a, b int64) string {
		if b == 0 {
			return "—"
		}
		return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 1, 64) + " %"
	},
	"add": func(a, b int) int { return a + b },
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"sub": func(a, b int) int { return a - b },
}
