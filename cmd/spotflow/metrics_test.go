package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// exercise drives m through every stage that has a metric: accepted and
// refused submissions, routing, dispatch, adapter calls, projection, a
// poison message (dead letter) and an event of an unknown request, which the
// projector retries (redeliveries). It returns the IDs of the requests.
func exercise(t *testing.T, m *Main, dbURL string, n int) []string {
	t.Helper()
	ctx := t.Context()
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	_, token, err := store.CreateDesk(ctx, "braga", "Loja do Cidadão Braga")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.HTTPAddr()
	var ids []string
	for i := range n {
		a := post(t, http.DefaultClient, base, token, submission{key: fmt.Sprintf("metrics-%d", i), body: validBody(i)})
		if a.status != http.StatusAccepted {
			t.Fatalf("submission %d: status %d (%s)", i, a.status, a.code)
		}
		ids = append(ids, a.id)
	}
	for i, bad := range invalidBodies[:3] {
		post(t, http.DefaultClient, base, token, submission{key: fmt.Sprintf("metrics-bad-%d", i), body: bad.body})
	}
	js := connectAs(t, m, roleRouter) // the router may publish requests and its own status events
	if _, err := js.Publish(ctx, events.RequestSubject("braga", "poison"), []byte(`{"schema":"not-a-request"}`)); err != nil {
		t.Fatal(err)
	}
	orphan, _ := json.Marshal(events.StatusEvent{Schema: events.SchemaStatus, ID: "orphan.routed", RequestID: "orphan",
		Status: events.StatusRouted, At: time.Now().UTC(), Actor: events.SourceRouter, Agencies: []string{"tax"}})
	if _, err := js.Publish(ctx, events.StatusSubject(events.SourceRouter), orphan); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	workertest.WaitWithin(t, 60*time.Second, "the requests to finish, a dead letter and a redelivery", func() error {
		var done, dead int
		err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM requests WHERE status IN ('completed', 'rejected', 'failed')),
			(SELECT count(*) FROM dead_letters)`).Scan(&done, &dead)
		if err != nil {
			return err
		}
		redelivered := gathered(t, m)["spotflow_redeliveries_total"] != nil
		if done == n && dead > 0 && redelivered {
			return nil
		}
		return fmt.Errorf("%d of %d finished, %d dead letters, redelivered %v", done, n, dead, redelivered)
	})
	return ids
}

func gathered(t *testing.T, m *Main) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	out := make(map[string]*dto.MetricFamily)
	for _, f := range families {
		out[f.GetName()] = f
	}
	return out
}

func TestMetrics_EveryStageIsCountedWithBoundedLabels(t *testing.T) {
	t.Parallel()
	m, dbURL := startMain(t, "*:latency=1ms")
	ids := exercise(t, m, dbURL, 20)
	families := gathered(t, m)
	for _, name := range []string{
		"spotflow_intake_accepted_total", "spotflow_intake_accepted_by_municipality_total", "spotflow_intake_refused_total",
		"spotflow_routed_total", "spotflow_dispatched_total", "spotflow_adapter_calls_total", "spotflow_adapter_call_seconds",
		"spotflow_projector_batch_size", "spotflow_projector_lag_seconds", "spotflow_messages_handled_total",
		"spotflow_redeliveries_total", "spotflow_dead_letters_total",
		"spotflow_consumer_pending_messages", "spotflow_consumer_ack_pending_messages",
	} {
		if families[name] == nil {
			t.Errorf("metric %s is missing after exercising every stage", name)
		}
	}
	var accepted float64
	for _, s := range families["spotflow_intake_accepted_total"].GetMetric() {
		accepted += s.GetCounter().GetValue()
	}
	if accepted != float64(len(ids)) {
		t.Errorf("spotflow_intake_accepted_total adds up to %v, want %d", accepted, len(ids))
	}
	// No label value is a request's ID, a desk's or a citizen's data.
	forbidden := slices.Concat(ids, []string{"Loja do Cidadão Braga", "Maria Silva", "orphan"})
	for name, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if slices.Contains(forbidden, l.GetValue()) || strings.HasPrefix(l.GetValue(), "1000") {
					t.Errorf("%s has label %s=%q: personal data or an identifier", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	resp, err := http.Get("http://" + m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "spotflow_consumer_pending_messages{consumer=\"agency-tax\"") {
		t.Errorf("GET /metrics: status %d, want 200 with the consumers' gauges; got:\n%.2000s", resp.StatusCode, body)
	}
}

func TestGrafanaDashboard_QueriesOnlyMetricsSpotflowExports(t *testing.T) {
	t.Parallel()
	queries := dashboardQueries(t)
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard, want at least 10", len(queries))
	}

	m, dbURL := startMain(t, "*:latency=1ms")
	exercise(t, m, dbURL, 10)
	families := gathered(t, m)
	exports := func(name string) bool {
		if families[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil &&
				(families[base].GetType() == dto.MetricType_HISTOGRAM || families[base].GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
		return false
	}
	for _, q := range queries {
		names := metricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", q.where, q.expr)
		}
		for _, name := range names {
			if !exports(name) {
				t.Errorf("%s: %q names %s, which spotflow does not export", q.where, q.expr, name)
			}
		}
	}
}

// dashboardQuery is one PromQL query of the Grafana dashboard, and where.
type dashboardQuery struct{ where, expr string }

// dashboardQueries reads the queries of deploy/grafana/spotflow.json: its
// panels' and its variables'.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	data, err := os.ReadFile("../../deploy/grafana/spotflow.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/spotflow.json is not valid JSON: %v", err)
	}
	var queries []dashboardQuery
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries = append(queries, dashboardQuery{"panel " + p.Title, target.Expr})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]\w*\)$`)
	for _, v := range dash.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil || q.Query == "" {
			continue
		}
		if m := labelValues.FindStringSubmatch(q.Query); m != nil {
			q.Query = m[1]
		}
		queries = append(queries, dashboardQuery{"variable " + v.Name, q.Query})
	}
	return queries
}

// Every process with an HTTP address exports the same JetStream consumer
// gauges, read from the server: summed across processes, a backlog of 10
// on three processes would read 30. The dashboard takes their max, as the
// alert rules do.
func TestGrafanaDashboard_TakesTheConsumerGaugesMaxAcrossProcesses(t *testing.T) {
	t.Parallel()
	gauges := 0
	for _, q := range dashboardQueries(t) {
		if !strings.Contains(q.expr, "spotflow_consumer_") {
			continue
		}
		gauges++
		if !strings.HasPrefix(q.expr, "max by (consumer) (") {
			t.Errorf("%s: %q reads consumer gauges without taking their max by consumer across processes", q.where, q.expr)
		}
	}
	if gauges < 3 {
		t.Errorf("found %d queries of consumer gauges in the dashboard, want the work queues', the events stream's and the redelivered ones", gauges)
	}
}

// promqlWords are PromQL's keywords, which look like metric names.
var promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
	"and", "or", "unless", "inf", "nan", "atan2"}

// metricNames lists the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping
// clauses are removed, that are neither keywords nor called as functions.
func metricNames(expr string) []string {
	var b strings.Builder
	depth := map[byte]int{}
	closing := map[byte]byte{'}': '{', ']': '['}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j
			b.WriteByte(' ')
			continue
		case c == '{' || c == '[':
			depth[c]++
			b.WriteByte(' ')
			continue
		case c == '}' || c == ']':
			depth[closing[c]]--
			b.WriteByte(' ')
			continue
		}
		if depth['{'] == 0 && depth['['] == 0 {
			b.WriteByte(c)
		}
	}
	rest := regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(b.String(), " ")
	var names []string
	ident := regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	for _, loc := range ident.FindAllStringIndex(rest, -1) {
		word := rest[loc[0]:loc[1]]
		if loc[0] > 0 && (rest[loc[0]-1] >= '0' && rest[loc[0]-1] <= '9' || rest[loc[0]-1] == '.' || rest[loc[0]-1] == '$') {
			continue // a number's exponent or unit, or a variable
		}
		if strings.HasPrefix(strings.TrimSpace(rest[loc[1]:]), "(") || slices.Contains(promqlWords, strings.ToLower(word)) {
			continue
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	return names
}

func TestMetricNames_FindsSelectorsOnly(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (agency) (rate(a_total{agency=~"$agency"}[$__rate_interval]))`, []string{"a_total"}},
		{`histogram_quantile(0.95, sum by (le, agency) (rate(b_seconds_bucket[5m])))`, []string{"b_seconds_bucket"}},
		{`x{stream="S"} + on (consumer) group_left (agency) y`, []string{"x", "y"}},
		{`sum(rate(c_sum[1m])) / sum without (pod) (rate(c_count[1m])) > 1e3`, []string{"c_sum", "c_count"}},
		{`topk(10, d_total offset 5m) or vector(0)`, []string{"d_total"}},
		{`{__name__="e"}`, nil},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}
