// Package httpadapter is a workers.Adapter that hands work items to an
// agency's back office over HTTP. It imports the domain (events) and workers
// (for the Adapter it implements), no other adapter.
//
// # The agency HTTP contract (version 1)
//
// For every delivery the adapter sends
//
//	POST <endpoint>
//	Content-Type: application/json
//	Accept: application/json
//	Idempotency-Key: <work item id>
//	Webhook-Id, Webhook-Timestamp, Webhook-Signature (with a signing secret)
//
// with the agency's credential header, when one is configured, and the work
// item as the body, exactly as events.WorkItem marshals it (schema
// "spotflow.work_item.v1", see schemas/messages/work_item.v1.json). The
// signature headers follow the Standard Webhooks specification (see
// SigningSecret).
// The endpoint may contain "{agency}", which is replaced by the work item's
// agency code, so one endpoint can serve many agencies. The body carries the
// citizen's personal data: the adapter never logs it.
//
// The agency answers 200, 201 or 202 with a JSON object
//
//	{"status": "accepted" | "in_progress" | "completed" | "rejected", "note": "optional, for the desk"}
//
// The same work item may be delivered more than once (after a timeout, a
// crash or a replay). An agency that receives an Idempotency-Key it has seen
// before must answer as it did the first time, without applying the work item
// again.
//
// Any other answer is a failure, classified as follows:
//
//   - 408, 429 and 5xx, timeouts, connection errors, redirects, and a 2xx
//     whose body does not parse or names an unknown status are transient: the
//     delivery is retried later. On 429 and 503 a Retry-After header (in
//     seconds, or an HTTP date) is honoured by returning a *RetryAfterError
//     carrying the delay.
//   - Every other 4xx (400, 404, 409, 410, 413, 422, …) is a definitive
//     refusal: the error is marked with events.Permanent and the work item is
//     dead-lettered. The error names the status and quotes at most 200 bytes
//     of the agency's answer.
package httpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
)

// AgencyPlaceholder is replaced in Config.Endpoint by the work item's agency.
const AgencyPlaceholder = "{agency}"

const (
	// defaultTimeout bounds a whole call with the default client.
	defaultTimeout = 30 * time.Second
	// maxAnswer is the most of a successful answer the adapter reads.
	maxAnswer = 64 << 10
	// maxSnippet is the most of a failed answer quoted in an error.
	maxSnippet = 200
	// maxDrain is how much of an unread body is discarded so that the
	// connection can be reused; longer bodies close the connection instead.
	maxDrain = 64 << 10
)

// Config configures a Client.
type Config struct {
	// Endpoint is the URL work items are posted to, http or https. It may
	// contain "{agency}", replaced by the work item's agency code (path
	// escaped). Required.
	Endpoint string
	// Client makes the calls. Default: a client with a 30-second timeout per
	// call, a keep-alive pool sized for concurrent deliveries, and
	// redirects refused (reported as transient errors) so that a work item
	// is never re-sent somewhere the operator did not configure. A caller's
	// client is used as is: give it a timeout.
	Client *http.Client
	// Header holds extra headers sent with every call, such as the
	// agency's credential in Authorization. Content-Type, Accept,
	// Idempotency-Key and the signature headers are set by the adapter and
	// override any given here.
	Header http.Header
	// SigningSecret, when set, signs every delivery (see HeaderSignature),
	// so that the agency can tell it comes from spotflow, unaltered and
	// recent.
	SigningSecret SigningSecret
}

// Client delivers work items to an agency's HTTP endpoint. It is safe for
// concurrent use and holds no resources beyond its HTTP client's idle
// connections.
type Client struct {
	endpoint string
	http     *http.Client
	header   http.Header
	secret   SigningSecret
}

var _ workers.Adapter = (*Client)(nil)

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	probe := strings.ReplaceAll(cfg.Endpoint, AgencyPlaceholder, "agency")
	u, err := url.Parse(probe)
	if err != nil {
		return nil, fmt.Errorf("new http adapter: endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("new http adapter: endpoint %q: want an absolute http or https URL", u.Redacted())
	}
	hc := cfg.Client
	if hc == nil {
		hc = defaultClient()
	}
	return &Client{endpoint: cfg.Endpoint, http: hc, header: cfg.Header.Clone(), secret: cfg.SigningSecret}, nil
}

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The dispatcher delivers many work items of one agency at once; keep
	// enough idle connections to the agency to avoid reconnecting each time.
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{
		Timeout:   defaultTimeout,
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// answer is the body of an agency's successful answer.
type answer struct {
	Status events.Status `json:"status"`
	Note   string        `json:"note"`
}

// Deliver posts item to the agency's endpoint and returns the status the
// agency reached. Errors are classified as the package documentation says:
// permanent ones are marked with events.Permanent, and transient ones on 429
// or 503 with a Retry-After header are a *RetryAfterError.
func (c *Client) Deliver(ctx context.Context, item events.WorkItem) (workers.Receipt, error) {
	body, err := json.Marshal(item)
	if err != nil {
		return workers.Receipt{}, events.Permanent(fmt.Errorf("deliver work item %s: encode: %w", item.ID, err))
	}
	endpoint := strings.ReplaceAll(c.endpoint, AgencyPlaceholder, url.PathEscape(item.Agency))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return workers.Receipt{}, events.Permanent(fmt.Errorf("deliver work item %s: %w", item.ID, err))
	}
	maps.Copy(req.Header, c.header)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", item.ID)
	if c.secret != nil {
		c.secret.Sign(req.Header, item.ID, time.Now(), body)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		// Connection errors, timeouts and cancellation: all transient. The
		// *url.Error names the method and URL, never the body.
		return workers.Receipt{}, fmt.Errorf("deliver work item %s: %w", item.ID, err)
	}
	defer closeBody(resp.Body)

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		r, err := readAnswer(resp.Body)
		if err != nil {
			return workers.Receipt{}, fmt.Errorf("deliver work item %s: agency answered %d: %w", item.ID, resp.StatusCode, err)
		}
		return r, nil
	}

	serr := &StatusError{Code: resp.StatusCode, Body: snippet(resp.Body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if delay, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return workers.Receipt{}, fmt.Errorf("deliver work item %s: %w", item.ID, &RetryAfterError{Delay: delay, Err: serr})
		}
		return workers.Receipt{}, fmt.Errorf("deliver work item %s: %w", item.ID, serr)
	case serr.Permanent():
		return workers.Receipt{}, events.Permanent(fmt.Errorf("deliver work item %s: %w", item.ID, serr))
	default:
		return workers.Receipt{}, fmt.Errorf("deliver work item %s: %w", item.ID, serr)
	}
}

// readAnswer decodes a successful answer; any problem is transient.
func readAnswer(body io.Reader) (workers.Receipt, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxAnswer+1))
	if err != nil {
		return workers.Receipt{}, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > maxAnswer {
		return workers.Receipt{}, fmt.Errorf("answer longer than %d bytes", maxAnswer)
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return workers.Receipt{}, fmt.Errorf("decode answer: %w", err)
	}
	switch a.Status {
	case events.StatusAccepted, events.StatusInProgress, events.StatusCompleted, events.StatusRejected:
		return workers.Receipt{Status: a.Status, Note: a.Note}, nil
	}
	return workers.Receipt{}, fmt.Errorf("answer has unknown status %q", truncateRunes(string(a.Status), 40))
}

// StatusError is an agency's answer with an HTTP status other than 2xx.
// Deliver wraps it with events.Permanent when Permanent reports true; any
// other code, a redirect included, is transient.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Body is the start of the answer's body (at most 200 bytes, control
	// characters replaced), for people to read.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("agency answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Permanent reports whether the status is a definitive refusal: a 4xx other
// than 408 (request timeout) and 429 (too many requests).
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 &&
		e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

// RetryAfterError is a transient failure for which the agency said, with a
// Retry-After header on a 429 or 503, how long to wait before trying again.
// Callers may use Delay to schedule the retry; the delay is the agency's and
// is not capped here.
type RetryAfterError struct {
	// Delay is how long the agency asked callers to wait (zero or more).
	Delay time.Duration
	// Err is the failure itself, a *StatusError.
	Err error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.Delay)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter is the agency's delay; natsbus honours it when it schedules
// the redelivery.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.Delay }

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
// A date in the past is a zero delay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Bound the multiplication; a year is more than anyone means.
		return time.Duration(min(secs, 365*24*3600)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// snippet reads the start of a failed answer's body for an error message.
func snippet(body io.Reader) string {
	buf := make([]byte, maxSnippet+utf8.UTFMax)
	n, _ := io.ReadFull(body, buf)
	s := strings.ToValidUTF8(string(buf[:n]), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncateRunes(strings.TrimSpace(s), maxSnippet)
}

// truncateRunes cuts s to at most n bytes without splitting a rune, marking
// the cut with an ellipsis (counted in the n bytes).
func truncateRunes(s string, n int) string {
	const ellipsis = "…"
	if len(s) <= n {
		return s
	}
	cut := max(n-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// closeBody discards a bounded rest of body, so that the connection can go
// back to the pool, and closes it.
func closeBody(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}
