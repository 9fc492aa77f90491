package main

import (
	"cmp"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The defaults of the HTTP servers' limits (docs/configuration.md).
const (
	defaultHTTPReadHeaderTimeout = 10 * time.Second
	defaultHTTPReadTimeout       = 30 * time.Second
	defaultHTTPWriteTimeout      = 60 * time.Second
	defaultHTTPIdleTimeout       = 60 * time.Second
	defaultHTTPMaxHeaderBytes    = 32 << 10
	defaultHTTPMaxConns          = 2048
	defaultHTTPMaxStreams        = 100
)

// streamPaths are the routes that answer with a stream of server-sent
// events held open for as long as the client stays: the dashboard's live
// updates (workers/dashboard) and the citizen's screen (workers/deskapp).
// A stream is not bound by the write timeout as a whole, only each of its
// writes, and only HTTPMaxStreams are open at once.
var streamPaths = map[string]bool{"/dashboard/live": true, "/desk/screen/events": true}

// httpLimits are the limits of an HTTP server: Config's, with zero taking
// the default and a negative value turning the limit off (0 here).
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
	maxConns, maxStreams          int
}

// httpLimits returns the configuration's HTTP limits.
func (c *Config) httpLimits() httpLimits {
	d := func(v, def time.Duration) time.Duration { return max(cmp.Or(v, def), 0) }
	n := func(v, def int) int { return max(cmp.Or(v, def), 0) }
	return httpLimits{
		readHeader:     d(c.HTTPReadHeaderTimeout, defaultHTTPReadHeaderTimeout),
		read:           d(c.HTTPReadTimeout, defaultHTTPReadTimeout),
		write:          d(c.HTTPWriteTimeout, defaultHTTPWriteTimeout),
		idle:           d(c.HTTPIdleTimeout, defaultHTTPIdleTimeout),
		maxHeaderBytes: n(c.HTTPMaxHeaderBytes, defaultHTTPMaxHeaderBytes),
		maxConns:       n(c.HTTPMaxConns, defaultHTTPMaxConns),
		maxStreams:     n(c.HTTPMaxStreams, defaultHTTPMaxStreams),
	}
}

// server is an HTTP server of handler under the limits. Serve it on
// l.listen's listener, so that the connection cap holds too.
//
// A request's headers must arrive within readHeader and the whole request
// within read; net/http lifts the read deadline once the body has been read,
// so a handler may work on. Its response must be written within write of
// the end of its headers, except on a stream (streamPaths), where each write
// must be done within write of its start, and the stream may last as long as
// the client stays.
func (l httpLimits) server(handler http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           l.handler(handler),
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    l.maxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// handler applies to next what http.Server cannot: the streams' cap and
// their write deadlines.
func (l httpLimits) handler(next http.Handler) http.Handler {
	var streams chan struct{}
	if l.maxStreams > 0 {
		streams = make(chan struct{}, l.maxStreams)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !streamPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		if streams != nil {
			select {
			case streams <- struct{}{}:
				defer func() { <-streams }()
			default:
				w.Header().Set("Retry-After", strconv.Itoa(30))
				http.Error(w, "too many live streams are open; try again later", http.StatusServiceUnavailable)
				return
			}
		}
		// The server's deadline, from the end of the request's headers,
		// gives way to one per write.
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		next.ServeHTTP(&streamWriter{ResponseWriter: w, rc: rc, timeout: l.write}, r)
	})
}

// listen wraps ln so that at most maxConns connections are open at once:
// Accept waits while that many are, as golang.org/x/net/netutil's
// LimitListener does, and the clients beyond wait in the kernel's backlog.
func (l httpLimits) listen(ln net.Listener) net.Listener {
	if l.maxConns <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, l.maxConns), done: make(chan struct{})}
}

// limitListener is a listener with at most cap(slots) connections open.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close closes the listener and ends a wait for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn frees its slot when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// streamWriter gives each write and flush of a stream timeout to complete,
// and lifts the deadline after it, so that the time between events does not
// count (HTTP/2 resets a stream whose write deadline passes even while it
// writes nothing).
type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *streamWriter) Write(p []byte) (int, error) {
	defer w.bound()()
	return w.ResponseWriter.Write(p)
}

// Flush sends what was written; the dashboard asserts http.Flusher.
func (w *streamWriter) Flush() {
	defer w.bound()()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bound sets the write deadline and returns the function that lifts it.
func (w *streamWriter) bound() func() {
	if w.timeout <= 0 {
		return func() {}
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return func() { _ = w.rc.SetWriteDeadline(time.Time{}) }
}
