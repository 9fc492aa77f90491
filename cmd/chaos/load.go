package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	// retryFor bounds how long one submission is retried (503, connection
	// errors, timeouts) before the suite gives up on it.
	retryFor = 3 * time.Minute
	// inFlight bounds the submissions under way at once.
	inFlight = 256
)

// submission is one desk submission: a desk, an Idempotency-Key and a body.
type submission struct {
	Num     int // numbers the submission across the run
	Desk    int
	Key     string
	Body    []byte
	Service string
	// At, when set, is when in the load's window it is sent; otherwise the
	// window is shared evenly.
	At time.Duration
}

// outcome is the final answer to a submission after its retries.
type outcome struct {
	Status   int    // the last HTTP status; 0 when none came
	ID       string // the request ID of a 202
	Code     string // the error code of a 4xx
	Attempts int
	// Throttled counts the 429 answers, each waited out as its
	// Retry-After said before the next attempt.
	Throttled int
	// Unavailable counts the 503 answers before the final one: intake
	// could not store the request then.
	Unavailable int
	Err         error // why the submission got no final answer
}

// loader posts submissions to intake on behalf of the desks, retrying each
// with the same key and body until it gets a final answer. It is safe for
// concurrent use.
type loader struct {
	bases  []string // the intakes, as a desk's balancer would share them
	desks  []desk
	client *http.Client
}

func newLoader(bases []string, desks []desk) *loader {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = inFlight
	t.MaxIdleConnsPerHost = inFlight
	return &loader{bases: bases, desks: desks, client: &http.Client{Timeout: 15 * time.Second, Transport: t}}
}

// run submits subs at an even pace over window, each in its own goroutine
// (at most inFlight at once), and returns their outcomes in order once all
// have a final answer.
func (l *loader) run(ctx context.Context, subs []submission, window time.Duration) []outcome {
	twins := l.runCopies(ctx, subs, window, 1)
	out := make([]outcome, len(subs))
	for i := range twins {
		out[i] = twins[i][0]
	}
	return out
}

// runCopies is run with every submission sent copies times at the same
// moment, each copy retried on its own; it returns the copies' outcomes.
func (l *loader) runCopies(ctx context.Context, subs []submission, window time.Duration, copies int) [][]outcome {
	out := make([][]outcome, len(subs))
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range subs {
		out[i] = make([]outcome, copies)
		at := start.Add(window * time.Duration(i) / time.Duration(len(subs)))
		if subs[i].At > 0 {
			at = start.Add(subs[i].At)
		}
		if !sleepUntil(ctx, at) {
			for c := range out[i] {
				out[i][c] = outcome{Err: ctx.Err()}
			}
			continue
		}
		for c := range copies {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i][c] = outcome{Err: ctx.Err()}
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				out[i][c] = l.submit(ctx, subs[i])
			})
		}
	}
	wg.Wait()
	return out
}

// submit posts s until it gets 202 or a 4xx other than 429, as a desk's
// software would: 5xx answers, connection errors and timeouts are retried
// with the same key and body after a growing pause, a 429 after the
// Retry-After it gives, for at most retryFor.
func (l *loader) submit(ctx context.Context, s submission) outcome {
	deadline := time.Now().Add(retryFor)
	backoff := 100 * time.Millisecond
	var o outcome
	for {
		o.Attempts++
		// Each attempt to the next intake, as a balancer moves on from one
		// that failed.
		a := l.post(ctx, l.bases[(s.Desk+o.Attempts)%len(l.bases)], s)
		if a.err == nil && a.status == http.StatusServiceUnavailable {
			o.Unavailable++
		}
		o.Status, o.ID, o.Code = a.status, a.id, a.code
		pause := backoff/2 + rand.N(backoff)
		switch {
		case a.err == nil && a.status == http.StatusTooManyRequests:
			o.Throttled++
			o.Err = fmt.Errorf("HTTP 429 %s", a.code)
			// Spread over a second, so the throttled do not all come back
			// at the same instant.
			pause = a.retryAfter + rand.N(time.Second)
		case a.err == nil && a.status < 500:
			return o
		case a.err != nil:
			o.Err = a.err
		default:
			o.Err = fmt.Errorf("HTTP %d %s", a.status, a.code)
		}
		if time.Now().Add(pause).After(deadline) {
			o.Err = fmt.Errorf("no final answer after %d attempts in %v: %w", o.Attempts, retryFor, o.Err)
			return o
		}
		if !sleepUntil(ctx, time.Now().Add(pause)) {
			o.Err = ctx.Err()
			return o
		}
		if a.status != http.StatusTooManyRequests {
			backoff = min(backoff*2, 2*time.Second)
		}
	}
}

// answer is what one POST got.
type answer struct {
	status     int
	id, code   string
	retryAfter time.Duration // what Retry-After said
	err        error
}

// post makes one POST /v1/requests to the intake at base.
func (l *loader) post(ctx context.Context, base string, s submission) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/requests", bytes.NewReader(s.Body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+l.desks[s.Desk].Token)
	req.Header.Set("Idempotency-Key", s.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		a.retryAfter = time.Duration(secs) * time.Second
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		a.err = fmt.Errorf("read answer: %w", err)
		return a
	}
	var body struct {
		ID    string `json:"id"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		a.err = fmt.Errorf("HTTP %d with an undecodable body %.100q", resp.StatusCode, data)
		return a
	}
	a.id, a.code = body.ID, body.Error.Code
	if resp.StatusCode == http.StatusAccepted && body.ID == "" {
		a.err = fmt.Errorf("202 without an id")
	}
	return a
}

// sleepUntil waits until t or ctx ends, and reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// makeSubmissions returns n submissions for scenario, spread over the desks,
// cycling through the catalogue's services; change of address, which fans
// out to four agencies, is every fifth. first numbers them across the run so
// that national IDs differ everywhere.
func makeSubmissions(scenario string, first, n, desks int) []submission {
	subs := make([]submission, n)
	for i := range subs {
		num := first + i
		service, body := validBody(num, "")
		subs[i] = submission{
			Num:     num,
			Desk:    num % desks,
			Key:     fmt.Sprintf("chaos-%s-%d", scenario, num),
			Body:    body,
			Service: service,
		}
	}
	return subs
}

// validBody returns the service and a valid body of the n-th submission;
// a non-empty variant changes the body (for a 409 with the same key).
func validBody(n int, variant string) (string, []byte) {
	nid := fmt.Sprintf("%08d", 20000000+n)
	name := "Citizen " + variant + fmt.Sprint(n)
	citizen := map[string]string{"national_id": nid, "name": name}
	var service string
	var attrs map[string]any
	switch n % 7 {
	case 0, 5:
		service = "change-of-address"
		attrs = map[string]any{"street": fmt.Sprintf("Rua Augusta %d", n), "postal_code": "1100-053", "locality": "Lisboa"}
	case 1:
		service = "driving-licence-renewal"
		attrs = map[string]any{"licence_number": fmt.Sprintf("L-%d", n), "categories": []string{"B"}}
	case 2:
		service = "health-appointment"
		attrs = map[string]any{"health_number": fmt.Sprint(n), "kind": "remote"}
	case 3:
		service = "criminal-record-certificate"
		attrs = map[string]any{"purpose": "employment", "copies": 1 + n%3}
	case 4:
		service = "tax-id-certificate"
		attrs = map[string]any{"tax_number": fmt.Sprintf("2%08d", n), "year": 2025}
	default:
		if n%2 == 0 {
			service = "social-benefit-application"
			attrs = map[string]any{"social_security_number": fmt.Sprintf("1%010d", n), "children": n % 4}
		} else {
			service = "birth-certificate"
			attrs = map[string]any{"format": "online"}
		}
	}
	body := map[string]any{"service_code": service, "citizen": citizen, "attributes": attrs}
	if n%3 == 0 {
		body["visit_id"] = fmt.Sprintf("visit-%d", n/3)
		body["mediator"] = fmt.Sprintf("mediator-%d", n%17)
	}
	data, _ := json.Marshal(body)
	return service, data
}
