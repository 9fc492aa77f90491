package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// startLimited runs the intake role, which serves the desk API and the
// dashboard, with the HTTP limits of limits, and returns it with the URL of
// its database.
func startLimited(t *testing.T, limits Config) (*Main, string) {
	t.Helper()
	dbURL := pgtest.Schema(t)
	cfg := limits
	cfg.DataDir, cfg.HTTPAddr, cfg.NATSListen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.DatabaseURL, cfg.CitizenKey = dbURL, strings.Repeat("ab", 32)
	m := &Main{Config: cfg, Roles: []string{roleIntake}, Embed: true}
	runMain(t, m)
	return m, dbURL
}

// dial opens a TCP connection to m's HTTP address, closed when the test
// ends.
func dial(t *testing.T, m *Main) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", m.HTTPAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// readResponse reads one response from conn within limit.
func readResponse(conn net.Conn, r *bufio.Reader, limit time.Duration) (*http.Response, error) {
	if err := conn.SetReadDeadline(time.Now().Add(limit)); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp, errors.Join(err, resp.Body.Close())
}

// TestHTTP_CutsOffAClientThatDribblesItsBody sends a submission's headers
// and then its body a byte at a time, far slower than the read timeout
// allows: the server gives up on it within a bounded time, with an error or
// by closing the connection, and never accepts it, while a client sending
// the same submission at once is served.
func TestHTTP_CutsOffAClientThatDribblesItsBody(t *testing.T) {
	t.Parallel()
	const readTimeout = 500 * time.Millisecond
	m, dbURL := startLimited(t, Config{HTTPReadTimeout: readTimeout})
	_, token, err := postgres.NewStore(pgtest.Pool(t, dbURL), nil).CreateDesk(t.Context(), "lisboa", "Slow desk")
	if err != nil {
		t.Fatal(err)
	}
	body := `{"service_code":"criminal-record-certificate","citizen":{"national_id":"31337000","name":"Rui Lopes"},"attributes":{"purpose":"employment"}}`

	conn := dial(t, m)
	head := fmt.Sprintf("POST /v1/requests HTTP/1.1\r\nHost: spotflow\r\nAuthorization: Bearer %s\r\n"+
		"Idempotency-Key: slow-1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	go func() {
		// A byte every 100 ms: the whole body would take 14 s.
		n := 0
		for ; n < len(body); n++ {
			if _, err := conn.Write([]byte{body[n]}); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		sent <- n
	}()

	start := time.Now()
	resp, err := readResponse(conn, bufio.NewReader(conn), 10*time.Second)
	took := time.Since(start)

	switch {
	case err == nil && resp.StatusCode < 400:
		t.Errorf("the dribbling client was answered %s, want an error or the connection closed", resp.Status)
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("the server neither answered nor closed the connection within 10s (read timeout %v)", readTimeout)
	case err != nil:
		t.Logf("connection ended after %v: %v", took, err)
	default:
		t.Logf("answered %s after %v", resp.Status, took)
	}
	_ = conn.Close()
	if n := <-sent; n >= len(body) {
		t.Errorf("the client sent its whole body (%d bytes) before the server gave up, want it cut off", n)
	}

	// The same submission sent at once is taken.
	if a := post(t, http.DefaultClient, "http://"+m.HTTPAddr(), token, submission{key: "fast-1", body: body}); a.status != http.StatusAccepted {
		t.Errorf("a client sending its body at once: %d %s, want 202", a.status, a.code)
	}
}

// TestHTTP_AnswersHeadersOverTheLimitWith431 sends a header larger than the
// limit.
func TestHTTP_AnswersHeadersOverTheLimitWith431(t *testing.T) {
	t.Parallel()
	m, _ := startLimited(t, Config{HTTPMaxHeaderBytes: 1 << 10})

	for _, tc := range []struct {
		size int
		want int
	}{{100, http.StatusOK}, {16 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, err := http.NewRequest(http.MethodGet, "http://"+m.HTTPAddr()+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("p", tc.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /healthz with a header of %d bytes: %v", tc.size, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /healthz with a header of %d bytes: %s, want %d", tc.size, resp.Status, tc.want)
		}
	}
}

// TestHTTP_ServesNoConnectionBeyondTheCapUntilOneCloses holds the cap's
// worth of kept-alive connections open: a further one is not served while
// they are held, and is as soon as one of them closes.
func TestHTTP_ServesNoConnectionBeyondTheCapUntilOneCloses(t *testing.T) {
	t.Parallel()
	const maxConns = 3
	m, _ := startLimited(t, Config{HTTPMaxConns: maxConns})
	const get = "GET /healthz HTTP/1.1\r\nHost: spotflow\r\n\r\n"

	held := make([]net.Conn, maxConns)
	for i := range held {
		held[i] = dial(t, m)
		if _, err := io.WriteString(held[i], get); err != nil {
			t.Fatal(err)
		}
		// Answered, the connection stays open, kept alive.
		if resp, err := readResponse(held[i], bufio.NewReader(held[i]), 10*time.Second); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("held connection %d: %v %v, want 200", i, resp, err)
		}
	}

	extra := dial(t, m)
	if _, err := io.WriteString(extra, get); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(extra)
	if resp, err := readResponse(extra, r, time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d of a cap of %d: %v %v, want no answer while %d are held", maxConns+1, maxConns, resp, err, maxConns)
	}

	_ = held[0].Close()
	resp, err := readResponse(extra, r, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("connection %d once one closed: %v %v, want 200 within 10s", maxConns+1, resp, err)
	}
}

// TestHTTP_KeepsLiveStreamsOpenPastTheWriteTimeoutUpToTheirCap opens the
// dashboard's live stream on a server whose read and write timeouts are far
// shorter than the time between two events: the stream goes on past them.
// Streams beyond the cap are answered 503 while other requests are served,
// and a stream closing makes room for another.
func TestHTTP_KeepsLiveStreamsOpenPastTheWriteTimeoutUpToTheirCap(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	const maxStreams = 2
	m, _ := startLimited(t, Config{HTTPReadTimeout: timeout, HTTPWriteTimeout: timeout, HTTPMaxStreams: maxStreams})
	base := "http://" + m.HTTPAddr()

	first, stopFirst := openStream(t, base)
	opened := time.Now()
	for i := 1; i <= 2; i++ {
		select {
		case _, ok := <-first:
			if !ok {
				t.Fatalf("the stream ended after %v, before event %d, want it open past the write timeout (%v)", time.Since(opened), i, timeout)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no event %d within 15s", i)
		}
	}
	// The dashboard sends an event every two seconds.
	if took := time.Since(opened); took < timeout {
		t.Fatalf("two events within %v, want the second after the write timeout (%v)", took, timeout)
	}

	second, _ := openStream(t, base)
	if _, ok := <-second; !ok {
		t.Fatal("stream 2 of a cap of 2 ended at once, want it open")
	}
	resp, err := http.Get(base + "/dashboard/live")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("stream %d of a cap of %d: %s (Retry-After %q), want 503 with Retry-After", maxStreams+1, maxStreams, resp.Status, resp.Header.Get("Retry-After"))
	}
	if resp, err := http.Get(base + "/dashboard/figures"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /dashboard/figures with the streams at their cap: %v %v, want 200", resp, err)
	} else {
		_ = resp.Body.Close()
	}

	stopFirst()
	workertest.WaitFor(t, "a stream to be taken once one closed", func() error {
		resp, err := http.Get(base + "/dashboard/live?range=day")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /dashboard/live: %s", resp.Status)
		}
		return nil
	})
}

// openStream opens the dashboard's live stream and returns a channel that
// receives the name of each event and is closed when the stream ends, and a
// function that closes the stream; the test's end closes it too.
func openStream(t *testing.T, base string) (<-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/dashboard/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		t.Fatalf("GET /dashboard/live: %s, want 200", resp.Status)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20) // a figures event is the whole live part of the page
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				select {
				case events <- name:
				default:
				}
			}
		}
	}()
	return events, cancel
}
