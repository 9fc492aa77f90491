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
	// Suppressed says the viewer is not an operator and sees no small
	// count; SignIn, when set, is where an operator signs in to see them.
	Suppressed bool
	SignIn     string
}

// MinCount is the smallest count the dashboard shows a viewer without the
// operator's credential: a count from 1 to MinCount-1 shows as "fewer than
// 5", and a figure drawn from fewer than MinCount cases is not shown.
const MinCount = 5

// audience is who a view is for. An operator sees every figure; anyone
// else sees no count from 1 to MinCount-1 and no figure drawn from so few
// cases (see docs/dashboard.md).
type audience struct{ operator bool }

// count is n as the audience may see it.
func (a audience) count(n int64) figure {
	return figure{N: n, Hidden: !a.operator && n > 0 && n < MinCount}
}

// enough says whether a figure drawn from n cases may be shown: always to
// an operator, and to anyone when n is 0 (the figure is then "—" anyway) or
// at least MinCount.
func (a audience) enough(n int64) bool { return a.operator || n == 0 || n >= MinCount }

// rank is what rows are sorted by: n, except that every hidden count ranks
// alike, so that the order of rows does not tell them apart.
func (a audience) rank(n int64) int64 {
	if a.count(n).Hidden {
		return 1
	}
	return n
}

// quantileMin is the fewest completions whose q-quantile the audience
// without a credential sees: MinCount, and enough that the quantile is not
// the slowest completion's time (20 for the 95th, 100 for the 99th).
func quantileMin(q float64) int64 { return max(MinCount, int64(math.Round(1/(1-q)))) }

// quantile is h's q-quantile for people and in milliseconds, hidden when
// it rests on too few completions for the audience.
func (a audience) quantile(h *events.Histogram, q float64) (string, figure, time.Duration) {
	n, d := h.Count(), h.Quantile(q)
	if !a.operator && n > 0 && n < quantileMin(q) {
		return "—", figure{Hidden: true}, 0
	}
	return duration(d, n), figure{N: d.Milliseconds()}, d
}

// share is t's share of completions within the expected time, hidden when
// the completions within or past it number 1 to MinCount-1: with the
// completions shown beside it, the share would give both away.
func (a audience) share(t events.Tally) (string, bool) {
	if !a.enough(t.WithinSLA) || !a.enough(t.Breached) {
		return "—", false
	}
	_, ok := t.SLAShare()
	return share(t), ok
}

// mean is t's mean time to complete, hidden when drawn from fewer than
// MinCount completions.
func (a audience) mean(t events.Tally) string {
	if !a.enough(t.Completed) {
		return "—"
	}
	return duration(t.MeanLatency(), t.Completed)
}

// figure is a number as its viewer may see it: Hidden when the viewer has
// no operator's credential and the number is a count from 1 to MinCount-1,
// or is drawn from fewer cases than it needs. A hidden figure is null in
// JSON; on the page a hidden count reads "fewer than 5" (web/dashboard.html
// writes MinCount out) and a hidden time or share "—", never its value.
type figure struct {
	N      int64
	Hidden bool
}

// MarshalJSON writes N, or null when hidden.
func (f figure) MarshalJSON() ([]byte, error) {
	if f.Hidden {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, f.N, 10), nil
}

// Text is the figure in words, for text alternatives.
func (f figure) Text() string {
	if f.Hidden {
		return fmt.Sprintf("fewer than %d", MinCount)
	}
	return strconv.FormatInt(f.N, 10)
}

// Short is the figure in a few characters, where it is also given in words.
func (f figure) Short() string {
	if f.Hidden {
		return fmt.Sprintf("<%d", MinCount)
	}
	return strconv.FormatInt(f.N, 10)
}

// figures are the dashboard's headline numbers, shown on the page with
// data-figure attributes and served as JSON at /dashboard/figures, where a
// hidden one is null and Suppressed is true.
type figures struct {
	Range             events.Range `json:"range"`
	Municipality      string       `json:"municipality"`
	Since             time.Time    `json:"since"`
	Submitted         figure       `json:"submitted"`
	Completed         figure       `json:"completed"`
	Rejected          figure       `json:"rejected"`
	Failed            figure       `json:"failed"`
	WithinSLA         figure       `json:"within_sla"`
	Breached          figure       `json:"breached"`
	P50Millis         figure       `json:"p50_ms"`
	P95Millis         figure       `json:"p95_ms"`
	P99Millis         figure       `json:"p99_ms"`
	LastHourSubmitted figure       `json:"last_hour_submitted"`
	LastHourCompleted figure       `json:"last_hour_completed"`
	// Backlog and DeadLetters count messages of the system, not
	// requests of a place: never hidden.
	Backlog     uint64 `json:"backlog"`
	DeadLetters int64  `json:"pending_dead_letters"`
	// Suppressed says that at least one figure above is null because it
	// was too small to show without the operator's credential.
	Suppressed bool `json:"suppressed"`
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

// backlogRow is one agency's work queue, a state of the system shown to
// everyone, and its failed work items, requests of the range, which are
// counts like any other.
type backlogRow struct {
	Agency                           string
	Pending, AckPending, Redelivered uint64
	DeadLetters                      int64
	Failed                           figure
}

type latencyRow struct {
	Service, Expected string
	Completed         figure
	P50, P95, P99     string
	// quantiles are p50, p95 and p99 for the chart, 0 where hidden.
	quantiles [3]time.Duration
}

type slaRow struct {
	Name, Expected              string
	Completed, Breached, Within figure
	Share                       string
	// shareShown says the share is shown and drawn.
	shareShown bool
	within     float64
}

type tallyTable struct {
	ID, Title, KeyHeader, SubmittedHeader, Note string
	Rows                                        []tallyRow
}

type tallyRow struct {
	Name                                           string
	Submitted, Completed, Rejected, Failed, Breach figure
	Share, Mean                                    string
}

// buildView shapes data, the backlog and the catalogue into what the page
// shows to a.
func buildView(catalog *events.Catalog, data *events.DashboardData, backlog []events.QueueBacklog, backlogKnown bool, now time.Time, a audience) *liveView {
	var total events.Tally
	if ts := data.Tallies[events.DimensionTotal]; len(ts) > 0 {
		total = ts[0]
	}
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
		BacklogKnown:   backlogKnown,
	}
	v.SLAShare, _ = a.share(total)
	v.Figures = figures{
		Range: data.Filter.Range, Municipality: data.Filter.Municipality, Since: data.Since,
		Submitted: a.count(total.Submitted), Completed: a.count(total.Completed), Rejected: a.count(total.Rejected),
		Failed: a.count(total.Failed), WithinSLA: a.count(total.WithinSLA), Breached: a.count(total.Breached),
	}
	v.P50, v.Figures.P50Millis, _ = a.quantile(all, 0.5)
	v.P95, v.Figures.P95Millis, _ = a.quantile(all, 0.95)
	v.P99, v.Figures.P99Millis, _ = a.quantile(all, 0.99)
	var lastHourSubmitted, lastHourCompleted int64
	for _, m := range data.Minutes {
		lastHourSubmitted += m.Submitted
		lastHourCompleted += m.Completed
	}
	v.Figures.LastHourSubmitted, v.Figures.LastHourCompleted = a.count(lastHourSubmitted), a.count(lastHourCompleted)
	for _, n := range data.PendingDeadLetters {
		v.Figures.DeadLetters += n
	}
	v.Throughput = throughputChart(data.Minutes, a)

	// Backlog and dead letters, by agency: every agency of the catalogue.
	agencyTallies := byKey(data.Tallies[events.DimensionAgency])
	queues := make(map[string]events.QueueBacklog)
	for _, b := range backlog {
		queues[b.Agency] = b
		v.Figures.Backlog += b.Pending + b.AckPending
	}
	for _, ag := range catalog.Agencies {
		q := queues[ag.Code]
		v.BacklogRows = append(v.BacklogRows, backlogRow{
			Agency: ag.Name.In(events.DefaultLanguage), Pending: q.Pending, AckPending: q.AckPending, Redelivered: q.Redelivered,
			DeadLetters: data.PendingDeadLetters[ag.Code], Failed: a.count(agencyTallies[ag.Code].Failed),
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
	v.LatencyRows = append(v.LatencyRows, latencyRow{Service: "All services", Completed: a.count(all.Count()), P50: v.P50, P95: v.P95, P99: v.P99})
	var chartRows []latencyRow
	for _, code := range codes {
		name, expected := serviceName(catalog, code)
		h := data.Latencies[code]
		if h == nil {
			h = new(events.Histogram)
		}
		r := latencyRow{Service: name, Expected: expected, Completed: a.count(h.Count())}
		r.P50, _, r.quantiles[0] = a.quantile(h, 0.5)
		r.P95, _, r.quantiles[1] = a.quantile(h, 0.95)
		r.P99, _, r.quantiles[2] = a.quantile(h, 0.99)
		chartRows = append(chartRows, r)
		v.SLAServices = append(v.SLAServices, slaRowOf(name, expected, services[code], a))
	}
	v.LatencyRows = append(v.LatencyRows, chartRows...)
	v.LatencyChart = latencyChart(chartRows)
	v.SLAChart = slaChart(v.SLAServices)
	for _, ag := range catalog.Agencies {
		v.SLAAgencies = append(v.SLAAgencies, slaRowOf(ag.Name.In(events.DefaultLanguage), "", agencyTallies[ag.Code], a))
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
		v.Tables = append(v.Tables, tallies(string(t.dim), t.title, t.header, t.subm, data.Tallies[t.dim], names(t.dim), a))
	}
	f := &v.Figures
	for _, x := range []figure{f.Submitted, f.Completed, f.Rejected, f.Failed, f.WithinSLA, f.Breached,
		f.P50Millis, f.P95Millis, f.P99Millis, f.LastHourSubmitted, f.LastHourCompleted} {
		f.Suppressed = f.Suppressed || x.Hidden
	}
	return v
}

func slaRowOf(name, expected string, t events.Tally, a audience) slaRow {
	r := slaRow{Name: name, Expected: expected, Completed: a.count(t.Completed), Within: a.count(t.WithinSLA), Breached: a.count(t.Breached)}
	r.Share, r.shareShown = a.share(t)
	if r.shareShown {
		r.within, _ = t.SLAShare()
	}
	return r
}

// maxTableRows caps the rows of a table; the busiest come first.
const maxTableRows = 50

func tallies(id, title, header, submittedHeader string, ts []events.Tally, name func(string) string, a audience) tallyTable {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(x, y events.Tally) int {
		return cmp.Or(cmp.Compare(a.rank(y.Submitted), a.rank(x.Submitted)), cmp.Compare(a.rank(y.Completed), a.rank(x.Completed)),
			cmp.Compare(x.Key, y.Key))
	})
	t := tallyTable{ID: id, Title: title, KeyHeader: header, SubmittedHeader: submittedHeader}
	if len(ts) > maxTableRows {
		t.Note = fmt.Sprintf("The %d busiest of %d, by %s.", maxTableRows, len(ts), strings.ToLower(submittedHeader))
		ts = ts[:maxTableRows]
	}
	for _, x := range ts {
		r := tallyRow{Name: name(x.Key), Submitted: a.count(x.Submitted), Completed: a.count(x.Completed),
			Rejected: a.count(x.Rejected), Failed: a.count(x.Failed), Breach: a.count(x.Breached), Mean: a.mean(x)}
		r.Share, _ = a.share(x)
		t.Rows = append(t.Rows, r)
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
	Rows                 []minuteRow
	Max                  int64
	// Gaps says some minutes are left out of the lines: their counts are
	// hidden.
	Gaps bool
}

type minuteRow struct {
	Label                string
	Submitted, Completed figure
}

// lineSeries is one line of a chart, drawn as a path that a hidden value
// interrupts.
type lineSeries struct {
	Name, Class, Path string
	Total             figure
}

type tick struct {
	Pos   int
	Label string
}

func throughputChart(minutes []events.MinuteCount, a audience) lineChart {
	c := lineChart{Width: 720, Height: 240, Left: 56, Right: 704, Top: 16, Bo: 208}
	// The scale follows the counts shown only, so that it tells nothing of
	// the hidden ones.
	var top int64 = 1
	if !a.operator {
		top = MinCount
	}
	for _, m := range minutes {
		r := minuteRow{Label: m.At.UTC().Format("15:04"), Submitted: a.count(m.Submitted), Completed: a.count(m.Completed)}
		for _, f := range []figure{r.Submitted, r.Completed} {
			if f.Hidden {
				c.Gaps = true
			} else {
				top = max(top, f.N)
			}
		}
		c.Rows = append(c.Rows, r)
	}
	c.Max = niceCeil(top)
	x := func(i int) int {
		if len(minutes) < 2 {
			return c.Left
		}
		return c.Left + i*(c.Right-c.Left)/(len(minutes)-1)
	}
	y := func(v int64) int { return c.Bo - int(v*int64(c.Bo-c.Top)/c.Max) }
	var sub, done linePath
	var subTotal, doneTotal int64
	for i, m := range minutes {
		r := c.Rows[i]
		sub.add(x(i), y(r.Submitted.N), r.Submitted.Hidden)
		done.add(x(i), y(r.Completed.N), r.Completed.Hidden)
		subTotal += m.Submitted
		doneTotal += m.Completed
		if i%10 == 0 || i == len(minutes)-1 {
			c.XTicks = append(c.XTicks, tick{Pos: x(i), Label: r.Label})
		}
	}
	c.Series = []lineSeries{
		{Name: "Submitted", Class: "submitted", Path: sub.String(), Total: a.count(subTotal)},
		{Name: "Completed", Class: "completed", Path: done.String(), Total: a.count(doneTotal)},
	}
	for _, v := range []int64{0, c.Max / 2, c.Max} {
		c.YTicks = append(c.YTicks, tick{Pos: y(v), Label: strconv.FormatInt(v, 10)})
	}
	return c
}

// linePath is the d attribute of an SVG path through points, broken where a
// point is hidden; a point alone between two gaps is drawn as a dot (the
// line's round caps on a segment of length 0).
type linePath struct {
	b   strings.Builder
	run int
}

func (p *linePath) add(x, y int, hidden bool) {
	switch {
	case hidden:
		p.end()
		return
	case p.run == 0:
		fmt.Fprintf(&p.b, "M%d,%d ", x, y)
	default:
		fmt.Fprintf(&p.b, "L%d,%d ", x, y)
	}
	p.run++
}

func (p *linePath) end() {
	if p.run == 1 {
		p.b.WriteString("h0 ")
	}
	p.run = 0
}

func (p *linePath) String() string {
	p.end()
	return strings.TrimSpace(p.b.String())
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

// latencyChart draws rows' quantiles; a hidden one is left out, and the
// scale follows those shown.
func latencyChart(rows []latencyRow) barChart {
	var top time.Duration
	labels := make([]string, len(rows))
	values := make([][]float64, len(rows))
	texts := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = r.Service
		q := r.quantiles
		values[i] = []float64{float64(q[0]), float64(q[1]), float64(q[2])}
		texts[i] = "p99 " + r.P99
		top = max(top, q[0], q[1], q[2])
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
		values[i] = []float64{0, 0}
		if r.shareShown {
			values[i] = []float64{r.within, 1 - r.within}
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
