package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/loadprofile"
	"github.com/spotflow/spotflow/workers/postgres"
)

// loadgenConfig is what `spotflow loadgen` is told.
type loadgenConfig struct {
	URL         string
	Desks       int
	Rate        string // requests per second, or "max"
	Duration    time.Duration
	Concurrency int
	Mix         string
	Drain       time.Duration
	JSONOut     string
	// Profile, when "national-day", replaces Desks, Rate, Duration and
	// Mix with loadprofile.NationalDay.
	Profile string
}

// loadReport is what a load run measured. Latencies are in milliseconds.
type loadReport struct {
	Started         time.Time `json:"started"`
	TargetRate      string    `json:"target_rate"`
	Desks           int       `json:"desks"`
	DurationSeconds float64   `json:"duration_seconds"`
	Submitted       int64     `json:"submitted"`
	Accepted        int64     `json:"accepted"`
	Completed       int64     `json:"completed"`
	Errors          int64     `json:"errors"`
	Retries         int64     `json:"retries"`
	// Throttled counts submissions refused 429 for a desk's limits; they
	// are not retried.
	Throttled       int64              `json:"throttled"`
	SubmittedPerSec float64            `json:"submitted_per_second"`
	AcceptedPerSec  float64            `json:"accepted_per_second"`
	CompletedPerSec float64            `json:"completed_per_second"`
	Accept          map[string]float64 `json:"submit_to_accepted_ms"`
	// Complete is what a desk waits for: from the client's first send of
	// a submission to the moment its request is readable as completed
	// (or rejected), as CompleteMeasured says.
	Complete         map[string]float64 `json:"submit_to_completed_ms"`
	CompleteMeasured string             `json:"submit_to_completed_measured"`
	// ServerComplete is the pipeline's own part: from the request's
	// submitted_at to the time of its completion event.
	ServerComplete map[string]float64 `json:"server_submitted_to_completion_event_ms"`
	// CPU is, when the load generator sees the system's processes on this
	// machine, milliseconds of CPU per completed request of each kind of
	// process ("spotflow", "postgres", "nats-server"), from the first
	// submission to the last completion; CPUMeasured says how.
	CPU         map[string]float64 `json:"cpu_ms_per_request,omitempty"`
	CPUMeasured string             `json:"cpu_measured"`
}

func loadgenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	var lc loadgenConfig
	fs := newFlagSet("loadgen", "loadgen [flags]",
		"Drives a running spotflow with desk submissions: registers --desks desks, submits at\n"+
			"--rate requests a second (or \"max\") for --duration, retrying 503s with the same\n"+
			"Idempotency-Key, shows progress every second, then waits for the requests to finish\n"+
			"and reports throughput, submit→accepted and submit→completed latencies, and the CPU per\n"+
			"request of the system's processes when they run on this machine, as text and, with --json,\n"+
			"as JSON. submit→completed is what a desk waits for: from the client's first send to the\n"+
			"commit of the transaction that made the request completed in Postgres (its commit\n"+
			"timestamp; the server needs track_commit_timestamp = on, as spotflow's own cluster has),\n"+
			"else to the completion event's time, and the report says which.", stderr)
	fs.StringVar(&lc.URL, "url", "http://127.0.0.1:8080", "spotflow's HTTP address")
	fs.IntVar(&lc.Desks, "desks", 10, "desks to register and submit from")
	fs.StringVar(&lc.Rate, "rate", "100", "requests per second, or max")
	fs.DurationVar(&lc.Duration, "duration", 30*time.Second, "how long to submit")
	fs.IntVar(&lc.Concurrency, "concurrency", 128, "submissions in flight at most")
	fs.StringVar(&lc.Mix, "mix", "", "service mix as code=weight,...; default: every service, equally")
	fs.DurationVar(&lc.Drain, "drain", 2*time.Minute, "how long to wait for submitted requests to finish")
	fs.StringVar(&lc.JSONOut, "json", "", "also write the report as JSON to this file (- for stdout)")
	fs.StringVar(&lc.Profile, "profile", "", "national-day: a country's day of desks (765 desks in 308 municipalities, 45,900 requests in a realistic service mix, two peaks, a few desks offline for a while) compressed to ten minutes, instead of --desks, --rate, --duration and --mix")
	cfg.flags(fs, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		r, err := runLoad(ctx, store, lc, stderr)
		if err != nil {
			return err
		}
		r.print(stdout)
		if lc.JSONOut != "" {
			out := stdout
			if lc.JSONOut != "-" {
				f, err := os.Create(lc.JSONOut)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}
		return nil
	})
}

// loadBody is a valid submission body for a service, built from its
// definition in the catalogue.
func loadBody(svc events.Service, n int) []byte {
	body, _ := json.Marshal(map[string]any{
		"service_code": svc.Code,
		"citizen":      map[string]string{"national_id": strconv.Itoa(10000000 + n%90000000), "name": "Load Test"},
		"attributes":   svc.SampleAnswers(n),
	})
	return body
}

// mixOf picks services by weight.
func mixOf(services []events.Service, spec string) ([]events.Service, error) {
	if spec == "" {
		return services, nil
	}
	var out []events.Service
	for part := range strings.SplitSeq(spec, ",") {
		code, w, _ := strings.Cut(strings.TrimSpace(part), "=")
		weight, err := strconv.Atoi(cmp.Or(w, "1"))
		if err != nil || weight < 0 {
			return nil, fmt.Errorf("mix: bad weight in %q", part)
		}
		i := slices.IndexFunc(services, func(s events.Service) bool { return s.Code == code })
		if i < 0 {
			return nil, fmt.Errorf("mix: no service %q", code)
		}
		for range weight {
			out = append(out, services[i])
		}
	}
	if len(out) == 0 {
		return nil, errors.New("mix: empty")
	}
	return out, nil
}

// runLoad registers the desks, submits for the configured duration and
// rate, waits for the accepted requests to finish, and reports.
func runLoad(ctx context.Context, store *postgres.Store, lc loadgenConfig, progress io.Writer) (*loadReport, error) {
	l, err := newLoad(ctx, store, lc)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go l.reportProgress(ctx, progress, done)
	cpu0 := processCPU()
	begin := time.Now()
	l.drive(ctx, begin)
	submitEnd := time.Since(begin)
	completed := l.drain(ctx)
	cpu1 := processCPU()
	close(done)
	serverMs, lastDone, err := completionLatencies(ctx, store, l.deskIDs)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	sent := l.sent
	l.mu.Unlock()
	completeMs, measured, err := readableLatencies(ctx, store, sent)
	if err != nil {
		return nil, err
	}
	if completeMs == nil {
		completeMs = serverMs
	}
	r := l.report
	r.DurationSeconds = submitEnd.Seconds()
	r.Submitted, r.Accepted, r.Completed, r.Errors, r.Retries = l.submitted.Load(), l.accepted.Load(), completed, l.failed.Load(), l.retries.Load()
	r.Throttled = l.throttled.Load()
	r.SubmittedPerSec = float64(r.Submitted) / submitEnd.Seconds()
	r.AcceptedPerSec = float64(r.Accepted) / submitEnd.Seconds()
	if span := lastDone.Sub(begin).Seconds(); span > 0 {
		r.CompletedPerSec = float64(r.Completed) / span
	}
	l.mu.Lock()
	r.Accept = percentiles(l.acceptMs)
	l.mu.Unlock()
	r.Complete, r.CompleteMeasured = percentiles(completeMs), measured
	r.ServerComplete = percentiles(serverMs)
	r.CPU, r.CPUMeasured = cpuPerRequest(cpu0, cpu1, r.Completed)
	return r, nil
}

// load is one run of the load generator: its desks, what it submits, and
// what it has counted so far. Its counters are safe for concurrent use.
type load struct {
	lc       loadgenConfig
	store    *postgres.Store
	client   *http.Client
	mix      []events.Service
	deskIDs  []string
	tokens   []string
	interval time.Duration // between submissions; 0 for as fast as possible
	run      string        // names this run's idempotency keys
	report   *loadReport
	// day, with a profile, is the planned submissions.
	day []loadprofile.Submission

	submitted, accepted, failed, retries, throttled atomic.Int64
	mu                                              sync.Mutex
	acceptMs                                        []float64
	// sent is when each accepted request's submission was first sent.
	sent map[string]time.Time
}

// newLoad reads the catalogue the system serves and registers the desks.
func newLoad(ctx context.Context, store *postgres.Store, lc loadgenConfig) (*load, error) {
	l := &load{
		lc: lc, store: store, run: fmt.Sprintf("%x", rand.Uint32()), sent: map[string]time.Time{},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: lc.Concurrency}},
	}
	services, err := fetchServices(ctx, l.client, lc.URL)
	if err != nil {
		return nil, err
	}
	if l.mix, err = mixOf(services, lc.Mix); err != nil {
		return nil, err
	}
	municipality := func(i int) string { return fmt.Sprintf("load-%d", i%50) }
	switch lc.Profile {
	case "":
	case "national-day":
		day := loadprofile.NationalDay
		l.day = day.Plan(&events.Catalog{Services: services}, rand.Int64())
		lc.Desks, lc.Duration, lc.Rate, municipality = day.Desks, day.Length, "profile", day.Municipality
		l.lc = lc
	default:
		return nil, fmt.Errorf("loadgen: unknown --profile %q (national-day)", lc.Profile)
	}
	for i := range max(lc.Desks, 1) {
		d, tok, err := store.CreateDesk(ctx, municipality(i), fmt.Sprintf("Load desk %d", i))
		if err != nil {
			return nil, err
		}
		l.deskIDs, l.tokens = append(l.deskIDs, d.ID), append(l.tokens, tok)
	}
	if l.day != nil {
		l.report = &loadReport{Started: time.Now().UTC(), TargetRate: "national-day", Desks: len(l.deskIDs)}
		return l, nil
	}
	if lc.Rate != "max" {
		rate, err := strconv.ParseFloat(lc.Rate, 64)
		if err != nil || rate <= 0 {
			return nil, fmt.Errorf("loadgen: --rate must be a positive number or max")
		}
		l.interval = time.Duration(float64(time.Second) / rate)
	}
	l.report = &loadReport{Started: time.Now().UTC(), TargetRate: lc.Rate, Desks: len(l.deskIDs)}
	return l, nil
}

// drive submits for the run's duration, at its rate (or, with a profile,
// each planned submission at its moment), with at most Concurrency
// submissions in flight, and returns once the last is answered.
func (l *load) drive(ctx context.Context, begin time.Time) {
	if l.day != nil {
		l.driveDay(ctx, begin)
		return
	}
	loadCtx, stop := context.WithTimeout(ctx, l.lc.Duration)
	defer stop()
	sem := make(chan struct{}, l.lc.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		if l.interval > 0 {
			if wait := time.Until(begin.Add(time.Duration(n) * l.interval)); wait > 0 {
				select {
				case <-loadCtx.Done():
				case <-time.After(wait):
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-loadCtx.Done():
		}
		if loadCtx.Err() != nil {
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			l.submit(ctx, n)
		})
	}
}

// driveDay sends the day's planned submissions, each at its moment.
func (l *load) driveDay(ctx context.Context, begin time.Time) {
	sem := make(chan struct{}, l.lc.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range l.day {
		if wait := time.Until(begin.Add(s.At)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			l.post(ctx, s.N, s.Body, l.tokens[s.Desk])
		})
	}
}

// submit posts the n-th submission, retrying what may be retried with the
// same key, and counts the outcome.
func (l *load) submit(ctx context.Context, n int) {
	l.post(ctx, n, loadBody(l.mix[n%len(l.mix)], n), l.tokens[n%len(l.tokens)])
}

// post posts body as the n-th submission with a desk's token, retrying what
// may be retried with the same key, and counts the outcome.
func (l *load) post(ctx context.Context, n int, body []byte, token string) {
	key := fmt.Sprintf("load-%s-%d", l.run, n)
	start := time.Now()
	l.submitted.Add(1)
	for attempt := 0; ; attempt++ {
		status, id := post1(ctx, l.client, l.lc.URL, token, key, body)
		if status == http.StatusAccepted {
			l.accepted.Add(1)
			l.mu.Lock()
			l.acceptMs = append(l.acceptMs, float64(time.Since(start).Microseconds())/1000)
			if id != "" {
				l.sent[id] = start
			}
			l.mu.Unlock()
			return
		}
		if status == http.StatusTooManyRequests {
			l.throttled.Add(1)
			return
		}
		retryable := status == http.StatusServiceUnavailable || status == 0
		if !retryable || attempt >= 20 || ctx.Err() != nil {
			l.failed.Add(1)
			return
		}
		l.retries.Add(1)
		time.Sleep(min(time.Duration(1<<attempt)*50*time.Millisecond, 5*time.Second))
	}
}

// reportProgress prints the rates every second until done is closed.
func (l *load) reportProgress(ctx context.Context, progress io.Writer, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case <-t.C:
			completed, _ := completedCount(ctx, l.store, l.deskIDs)
			a := l.accepted.Load()
			fmt.Fprintf(progress, "%5.0fs  rate %6d/s  accepted %8d  completed %8d  errors %d\n",
				time.Since(l.report.Started).Seconds(), a-last, a, completed, l.failed.Load())
			last = a
		}
	}
}

// drain waits, up to Drain, for the accepted requests to finish, and
// returns how many did; it stops waiting if it cannot count them.
func (l *load) drain(ctx context.Context) int64 {
	deadline := time.Now().Add(l.lc.Drain)
	for {
		completed, err := completedCount(ctx, l.store, l.deskIDs)
		if err != nil || completed >= l.accepted.Load() || time.Now().After(deadline) || ctx.Err() != nil {
			return completed
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fetchServices(ctx context.Context, client *http.Client, base string) ([]events.Service, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/services", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: list services: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Services []struct {
			Code       string `json:"code"`
			Attributes []struct {
				Code     string          `json:"code"`
				Datatype events.Datatype `json:"datatype"`
				Values   []struct {
					Key string `json:"key"`
				} `json:"values"`
			} `json:"attributes"`
		} `json:"services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Services) == 0 {
		return nil, fmt.Errorf("loadgen: list services: %d %v", resp.StatusCode, err)
	}
	services := make([]events.Service, len(out.Services))
	for i, s := range out.Services {
		services[i].Code = s.Code
		for _, a := range s.Attributes {
			attr := events.Attribute{Code: a.Code, Datatype: a.Datatype}
			for _, v := range a.Values {
				attr.Values = append(attr.Values, events.Value{Key: v.Key})
			}
			services[i].Attributes = append(services[i].Attributes, attr)
		}
	}
	return services, nil
}

// post1 submits once and returns the HTTP status, or 0 when no answer
// came, and the request's ID when it was accepted.
func post1(ctx context.Context, client *http.Client, base, token, key string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/requests", bytes.NewReader(body))
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var accepted struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&accepted)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, accepted.ID
}

// completedCount is how many of the desks' requests have finished, read
// from the dashboard's daily roll-ups (written with the statuses, a row per
// desk and day) so that asking every second costs the system under load
// next to nothing.
func completedCount(ctx context.Context, store *postgres.Store, desks []string) (int64, error) {
	var n int64
	err := store.Pool().QueryRow(ctx, `
		SELECT coalesce(sum(completed + rejected), 0) FROM dashboard_counts
		WHERE grain = 'day' AND scope = '' AND dim = 'desk' AND key = ANY($1)`, desks).Scan(&n)
	return n, err
}

// completionLatencies reads submit→completed of the desks' finished
// requests from their timelines, and when the last one finished.
func completionLatencies(ctx context.Context, store *postgres.Store, desks []string) ([]float64, time.Time, error) {
	rows, err := store.Pool().Query(ctx, `
		SELECT extract(epoch FROM t.at - r.submitted_at) * 1000, t.at
		FROM requests r JOIN timeline t ON t.request_id = r.id AND t.agency = '' AND t.status IN ('completed', 'rejected')
		WHERE r.desk_id = ANY($1)`, desks)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("loadgen: read timelines: %w", err)
	}
	defer rows.Close()
	var ms []float64
	var last time.Time
	for rows.Next() {
		var v float64
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, last, err
		}
		ms = append(ms, v)
		if at.After(last) {
			last = at
		}
	}
	return ms, last, rows.Err()
}

func percentiles(v []float64) map[string]float64 {
	out := map[string]float64{"p50": 0, "p95": 0, "p99": 0, "max": 0}
	if len(v) == 0 {
		return out
	}
	slices.Sort(v)
	at := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	out["p50"], out["p95"], out["p99"], out["max"] = at(0.50), at(0.95), at(0.99), v[len(v)-1]
	return out
}

func (r *loadReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nload: %d desks, target rate %s, %.1fs\n", r.Desks, r.TargetRate, r.DurationSeconds)
	fmt.Fprintf(w, "  submitted  %8d  %8.1f/s\n", r.Submitted, r.SubmittedPerSec)
	fmt.Fprintf(w, "  accepted   %8d  %8.1f/s\n", r.Accepted, r.AcceptedPerSec)
	fmt.Fprintf(w, "  completed  %8d  %8.1f/s\n", r.Completed, r.CompletedPerSec)
	fmt.Fprintf(w, "  errors     %8d  (retries %d)\n", r.Errors, r.Retries)
	if r.Throttled > 0 {
		fmt.Fprintf(w, "  throttled  %8d  (429: over a desk's limits; not retried)\n", r.Throttled)
	}
	fmt.Fprintf(w, "  submit→accepted   p50 %7.1f ms  p95 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n",
		r.Accept["p50"], r.Accept["p95"], r.Accept["p99"], r.Accept["max"])
	fmt.Fprintf(w, "  submit→completed  p50 %7.1f ms  p95 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%s)\n",
		r.Complete["p50"], r.Complete["p95"], r.Complete["p99"], r.Complete["max"], r.CompleteMeasured)
	fmt.Fprintf(w, "  in the pipeline   p50 %7.1f ms  p95 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (submitted_at to the completion event's time)\n",
		r.ServerComplete["p50"], r.ServerComplete["p95"], r.ServerComplete["p99"], r.ServerComplete["max"])
	if len(r.CPU) == 0 {
		fmt.Fprintf(w, "  CPU per request   %s\n", r.CPUMeasured)
		return
	}
	kinds := slices.Sorted(maps.Keys(r.CPU))
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %.2f ms", k, r.CPU[k]))
	}
	fmt.Fprintf(w, "  CPU per request   %s  (%s)\n", strings.Join(parts, ", "), r.CPUMeasured)
}
