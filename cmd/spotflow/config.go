package main

import (
	"cmp"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/spotflow/spotflow/events/natsbus"
)

// Config is everything a spotflow process can be told. Every field has a
// flag and an environment variable; the flag wins.
type Config struct {
	// DataDir holds the embedded NATS store, the local Postgres cluster and
	// the citizen key file. SPOTFLOW_DATA_DIR, default ./.data.
	DataDir string
	// HTTPAddr is where the desk API, health and metrics listen; empty
	// turns HTTP off for roles other than intake. SPOTFLOW_HTTP_ADDR.
	HTTPAddr string
	// NATSURL is the NATS server to use. NATS_URL; when empty, `run`
	// embeds a server and the single roles use nats://127.0.0.1:4222.
	NATSURL string
	// LeafListen, when set, is where an embedded NATS server accepts the
	// leaf-node connections of desks' edges (spotflow edge).
	// SPOTFLOW_LEAF_LISTEN.
	LeafListen string
	// NATSListen is where an embedded NATS server listens.
	// SPOTFLOW_NATS_LISTEN, default 127.0.0.1:4222.
	NATSListen string
	// NATSNoSync lets an embedded JetStream acknowledge before its write is
	// synced to disk: faster, but a power loss may drop acknowledged
	// requests. SPOTFLOW_NATS_NO_SYNC.
	NATSNoSync bool
	// Replicas of each stream: 1 for one server, 3 on a cluster.
	// SPOTFLOW_STREAM_REPLICAS, default 1.
	Replicas int
	// DatabaseURL is the Postgres to use. DATABASE_URL; when empty, the
	// local cluster under DataDir, started if need be.
	DatabaseURL string
	// Agencies sets the simulated agencies' behaviour, e.g.
	// "*:latency=20ms;tax:latency=200ms,transient=0.1". SPOTFLOW_AGENCIES.
	Agencies string
	// CatalogFile replaces the built-in service catalogue.
	// SPOTFLOW_CATALOG.
	CatalogFile string
	// CitizenKey keys the hash stored in place of national IDs (hex, at
	// least 32 bytes). SPOTFLOW_CITIZEN_KEY; default: DataDir/citizen.key,
	// created on first use.
	CitizenKey string
	// ReceiptKeys is the directory of the keys that sign visits' receipts,
	// apart from the database. SPOTFLOW_RECEIPT_KEYS, default
	// <data-dir>/receipt-keys.
	ReceiptKeys string
	// NATSStoreKey encrypts the embedded JetStream store on disk (hex, at
	// least 32 bytes), so that a copy of the store holds no readable
	// national ID. SPOTFLOW_NATS_STORE_KEY; default: DataDir/nats-store.key,
	// beside the store and created on first use. Back it up apart from the
	// store: without it the store cannot be read.
	NATSStoreKey string
	// Delivery says how each agency receives its work items: simulated in
	// the dispatcher's process (the default), over HTTP to its own URL, or
	// from its own queue over NATS. A JSON object, or a file holding one
	// (docs/agencies.md#delivery). SPOTFLOW_DELIVERY.
	Delivery string
	// NATSIdentities is the directory of the seeds of spotflow's own NATS
	// identities (admin.nk, intake.nk, router.nk, dispatcher.nk,
	// projector.nk). A process that runs the NATS server creates the
	// missing ones; any other reads the seeds of the identities it uses:
	// give each machine only those. SPOTFLOW_NATS_IDENTITIES; default
	// DataDir/identities.
	NATSIdentities string
	// TLSCert and TLSKey, a certificate and its key (PEM files), make the
	// HTTP server serve HTTPS and the embedded NATS server require TLS of
	// every client. SPOTFLOW_TLS_CERT, SPOTFLOW_TLS_KEY.
	TLSCert, TLSKey string
	// NATSCA is the CA certificate (PEM) a NATS server's certificate is
	// checked against; default: the system's, or TLSCert itself for the
	// process that embeds the server. SPOTFLOW_NATS_CA.
	NATSCA string
	// AckWait is how long a consumer waits for an acknowledgement before
	// redelivering. SPOTFLOW_ACK_WAIT, default 30s.
	AckWait time.Duration
	// MaxDeliveries caps deliveries of a work item to its agency before it
	// is dead-lettered. SPOTFLOW_MAX_DELIVERIES, default 100.
	MaxDeliveries int
	// UnknownEventFor is how long the projector retries a status event of a
	// request nobody accepted, or of a round no replay opened, before it
	// refuses it as poison. SPOTFLOW_UNKNOWN_EVENT_FOR, default 2m.
	UnknownEventFor time.Duration
	// ReconcileAfter is how long an accepted request may go without
	// progress before it is re-driven. SPOTFLOW_RECONCILE_AFTER, default 5m.
	ReconcileAfter time.Duration
	// ReconcileEvery is how often the router looks for stalled requests.
	// SPOTFLOW_RECONCILE_EVERY, default 30s.
	ReconcileEvery time.Duration
	// RequestRetention is how long a request is kept once it ended
	// (completed, rejected or failed), with its work items, timeline,
	// idempotency key and dead letters; the roll-ups keep counting it.
	// Requests under way are kept however old. SPOTFLOW_REQUEST_RETENTION,
	// default 400d (the flag takes days, "400d", or a Go duration); 0 keeps
	// them for ever, and so does the zero Config. It must be longer than
	// StreamMaxAge (docs/personal-data.md).
	RequestRetention time.Duration
	// TrainingRetention is how long training requests and visits are kept,
	// for trainers to go through them, from their start.
	// SPOTFLOW_TRAINING_RETENTION, default 7d.
	TrainingRetention time.Duration
	// StreamMaxAge is how long the events stream keeps requests (with the
	// citizen's personal data) and status events, and the advisories
	// stream its advisories: longer than the longest outage of a consumer
	// (the router, the projector) to ride out. SPOTFLOW_STREAM_MAX_AGE,
	// default 7d; the zero Config takes natsbus.DefaultMaxAge.
	StreamMaxAge time.Duration
	// DeskRate is how many submissions a second a desk may make to one
	// intake process, on average; DeskBurst how many at once; 0 is no
	// limit. SPOTFLOW_DESK_RATE (default 10), SPOTFLOW_DESK_BURST (50).
	DeskRate  float64
	DeskBurst int
	// DeskMaxOpen is how many requests a desk may have under way; 0 is no
	// limit. SPOTFLOW_DESK_MAX_OPEN, default 10,000.
	DeskMaxOpen int
	// AuthFailures is how many failed authentications a minute one source
	// address may make before it is refused without a look at its
	// credential. SPOTFLOW_AUTH_FAILURES, default 30.
	AuthFailures int
	// DeskSessionIdle ends a mediator's session in the desk application
	// after this long unused. SPOTFLOW_DESK_SESSION_IDLE, default 30
	// minutes.
	DeskSessionIdle time.Duration
	// PublicURL is the address the public reaches spotflow at, for absolute
	// links in the open data's description; default: links relative to it.
	// SPOTFLOW_PUBLIC_URL.
	PublicURL string
	// OpenDataLicense, OpenDataPublisher and OpenDataPublisherURL describe
	// the open data: its licence (default CC BY 4.0) and who publishes it.
	// SPOTFLOW_OPEN_DATA_LICENSE, SPOTFLOW_OPEN_DATA_PUBLISHER,
	// SPOTFLOW_OPEN_DATA_PUBLISHER_URL.
	OpenDataLicense, OpenDataPublisher, OpenDataPublisherURL string
	// OperatorToken is a machine credential of the operator role for the
	// operator API (/v1/ops/), beside the named ones kept in Postgres.
	// SPOTFLOW_OPERATOR_TOKEN; empty: none.
	OperatorToken string
	// HTTPReadHeaderTimeout is how long a client may take to send a
	// request's headers. SPOTFLOW_HTTP_READ_HEADER_TIMEOUT, default 10s.
	//
	// Of this and the other HTTP limits below, a zero value takes the
	// default and a negative one turns the limit off.
	HTTPReadHeaderTimeout time.Duration
	// HTTPReadTimeout is how long a client may take to send a whole
	// request, headers and body; a handler may work on after it.
	// SPOTFLOW_HTTP_READ_TIMEOUT, default 30s.
	HTTPReadTimeout time.Duration
	// HTTPWriteTimeout bounds the time from the end of a request's headers
	// to the end of its response; on a live stream (the dashboard's
	// server-sent events), each write instead. SPOTFLOW_HTTP_WRITE_TIMEOUT,
	// default 60s.
	HTTPWriteTimeout time.Duration
	// HTTPIdleTimeout is how long a kept-alive connection may wait for its
	// next request. SPOTFLOW_HTTP_IDLE_TIMEOUT, default 60s.
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes caps a request's line and headers; a larger one is
	// answered 431. SPOTFLOW_HTTP_MAX_HEADER_BYTES, default 32 KiB.
	HTTPMaxHeaderBytes int
	// HTTPMaxConns caps the HTTP connections open at once; further clients
	// wait to be accepted. SPOTFLOW_HTTP_MAX_CONNS, default 2048.
	HTTPMaxConns int
	// HTTPMaxStreams caps the live streams (the dashboard's server-sent
	// events) open at once; a further one is answered 503.
	// SPOTFLOW_HTTP_MAX_STREAMS, default 100.
	HTTPMaxStreams int
	// Pprof serves Go's profiles under /debug/pprof/ on the HTTP address.
	// SPOTFLOW_PPROF; off by default.
	Pprof bool
	// LogLevel is debug, info, warn or error. SPOTFLOW_LOG_LEVEL.
	LogLevel string
}

func env(name, def string) string { return cmp.Or(os.Getenv(name), def) }

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return f
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// flags registers the configuration's flags on fs with defaults taken from
// the environment. httpDefault is the role's default HTTP address.
func (c *Config) flags(fs *flag.FlagSet, httpDefault string) {
	fs.StringVar(&c.DataDir, "data-dir", env("SPOTFLOW_DATA_DIR", ".data"), "data directory (SPOTFLOW_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http", env("SPOTFLOW_HTTP_ADDR", httpDefault), "HTTP listen address; empty for none (SPOTFLOW_HTTP_ADDR)")
	fs.StringVar(&c.NATSURL, "nats-url", os.Getenv("NATS_URL"), "NATS server URL (NATS_URL)")
	fs.StringVar(&c.NATSListen, "nats-listen", env("SPOTFLOW_NATS_LISTEN", "127.0.0.1:4222"), "listen address of the embedded NATS server (SPOTFLOW_NATS_LISTEN)")
	fs.StringVar(&c.LeafListen, "leaf-listen", os.Getenv("SPOTFLOW_LEAF_LISTEN"), "where the embedded NATS server accepts desks' edges as leaf nodes (spotflow edge), e.g. 0.0.0.0:7422; default: none (SPOTFLOW_LEAF_LISTEN)")
	fs.BoolVar(&c.NATSNoSync, "nats-no-sync", envBool("SPOTFLOW_NATS_NO_SYNC"), "embedded JetStream acks before fsync: faster, may lose acknowledged requests on power loss (SPOTFLOW_NATS_NO_SYNC)")
	fs.IntVar(&c.Replicas, "replicas", envInt("SPOTFLOW_STREAM_REPLICAS", 1), "replicas per stream: 1 on one server, 3 on a cluster (SPOTFLOW_STREAM_REPLICAS)")
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "Postgres URL; default: the local cluster under the data directory (DATABASE_URL)")
	fs.StringVar(&c.Agencies, "agencies", env("SPOTFLOW_AGENCIES", "*:latency=20ms"), "simulated agencies' behaviour (SPOTFLOW_AGENCIES)")
	fs.StringVar(&c.CatalogFile, "catalog", os.Getenv("SPOTFLOW_CATALOG"), "service catalogue file; default: the built-in one (SPOTFLOW_CATALOG)")
	fs.StringVar(&c.ReceiptKeys, "receipt-keys", os.Getenv("SPOTFLOW_RECEIPT_KEYS"), "directory of the keys that sign receipts; default: <data-dir>/receipt-keys (SPOTFLOW_RECEIPT_KEYS)")
	fs.StringVar(&c.CitizenKey, "citizen-key", os.Getenv("SPOTFLOW_CITIZEN_KEY"), "hex key for hashing national IDs; default: <data-dir>/citizen.key (SPOTFLOW_CITIZEN_KEY)")
	fs.StringVar(&c.NATSStoreKey, "nats-store-key", os.Getenv("SPOTFLOW_NATS_STORE_KEY"), "hex key encrypting the embedded JetStream store; default: <data-dir>/nats-store.key (SPOTFLOW_NATS_STORE_KEY)")
	fs.StringVar(&c.Delivery, "delivery", os.Getenv("SPOTFLOW_DELIVERY"), "how each agency receives its work items: simulated, http or nats; a JSON object or a file holding one; default: every agency simulated (SPOTFLOW_DELIVERY)")
	fs.StringVar(&c.NATSIdentities, "nats-identities", os.Getenv("SPOTFLOW_NATS_IDENTITIES"), "directory of the seeds of spotflow's own NATS identities; default <data-dir>/identities (SPOTFLOW_NATS_IDENTITIES)")
	fs.StringVar(&c.TLSCert, "tls-cert", os.Getenv("SPOTFLOW_TLS_CERT"), "certificate (PEM) for HTTPS and for the embedded NATS server's TLS (SPOTFLOW_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", os.Getenv("SPOTFLOW_TLS_KEY"), "the certificate's key (PEM) (SPOTFLOW_TLS_KEY)")
	fs.StringVar(&c.NATSCA, "nats-ca", os.Getenv("SPOTFLOW_NATS_CA"), "CA certificate (PEM) to check the NATS server's certificate against; default: the system's (SPOTFLOW_NATS_CA)")
	fs.DurationVar(&c.AckWait, "ack-wait", envDuration("SPOTFLOW_ACK_WAIT", 30*time.Second), "how long a consumer waits for an ack before redelivering (SPOTFLOW_ACK_WAIT)")
	fs.IntVar(&c.MaxDeliveries, "max-deliveries", envInt("SPOTFLOW_MAX_DELIVERIES", 100), "deliveries of a work item to its agency before it is dead-lettered (SPOTFLOW_MAX_DELIVERIES)")
	fs.DurationVar(&c.UnknownEventFor, "unknown-event-for", envDuration("SPOTFLOW_UNKNOWN_EVENT_FOR", 2*time.Minute), "how long a status event of an unknown request or unopened round is retried before it is refused (SPOTFLOW_UNKNOWN_EVENT_FOR)")
	fs.DurationVar(&c.ReconcileAfter, "reconcile-after", envDuration("SPOTFLOW_RECONCILE_AFTER", 5*time.Minute), "re-drive an accepted request that made no progress for this long (SPOTFLOW_RECONCILE_AFTER)")
	fs.DurationVar(&c.ReconcileEvery, "reconcile-every", envDuration("SPOTFLOW_RECONCILE_EVERY", 30*time.Second), "how often to look for stalled requests (SPOTFLOW_RECONCILE_EVERY)")
	c.RequestRetention = envDays("SPOTFLOW_REQUEST_RETENTION", defaultRequestRetention)
	fs.Var((*days)(&c.RequestRetention), "request-retention", "how long a request that ended is kept, with its timeline, work items and dead letters, in days (400d) or as a Go duration; 0 keeps them for ever; longer than --stream-max-age (SPOTFLOW_REQUEST_RETENTION)")
	c.TrainingRetention = envDays("SPOTFLOW_TRAINING_RETENTION", 7*24*time.Hour)
	fs.Var((*days)(&c.TrainingRetention), "training-retention", "how long requests and visits made in training mode are kept, in days (7d) or as a Go duration (SPOTFLOW_TRAINING_RETENTION)")
	c.StreamMaxAge = envDays("SPOTFLOW_STREAM_MAX_AGE", natsbus.DefaultMaxAge)
	fs.Var((*days)(&c.StreamMaxAge), "stream-max-age", "how long the events stream keeps requests (personal data) and status events, and the advisories stream its advisories, in days (7d) or as a Go duration (SPOTFLOW_STREAM_MAX_AGE)")
	fs.Float64Var(&c.DeskRate, "desk-rate", envFloat("SPOTFLOW_DESK_RATE", 10), "submissions a second a desk may make to one intake process; 0 for no limit (SPOTFLOW_DESK_RATE)")
	fs.IntVar(&c.DeskBurst, "desk-burst", envInt("SPOTFLOW_DESK_BURST", 50), "submissions a desk may make at once (SPOTFLOW_DESK_BURST)")
	fs.IntVar(&c.DeskMaxOpen, "desk-max-open", envInt("SPOTFLOW_DESK_MAX_OPEN", 10000), "requests a desk may have under way; 0 for no limit (SPOTFLOW_DESK_MAX_OPEN)")
	fs.DurationVar(&c.DeskSessionIdle, "desk-session-idle", envDuration("SPOTFLOW_DESK_SESSION_IDLE", 30*time.Minute), "end a mediator's session in the desk application after this long unused (SPOTFLOW_DESK_SESSION_IDLE)")
	fs.IntVar(&c.AuthFailures, "auth-failures", envInt("SPOTFLOW_AUTH_FAILURES", 30), "failed authentications a minute one address may make; 0 for no limit (SPOTFLOW_AUTH_FAILURES)")
	fs.StringVar(&c.PublicURL, "public-url", os.Getenv("SPOTFLOW_PUBLIC_URL"), "the address the public reaches spotflow at, for absolute links in the open data (SPOTFLOW_PUBLIC_URL)")
	fs.StringVar(&c.OpenDataLicense, "open-data-license", os.Getenv("SPOTFLOW_OPEN_DATA_LICENSE"), "URL of the open data's licence; default CC BY 4.0 (SPOTFLOW_OPEN_DATA_LICENSE)")
	fs.StringVar(&c.OpenDataPublisher, "open-data-publisher", os.Getenv("SPOTFLOW_OPEN_DATA_PUBLISHER"), "who publishes the open data; default spotflow (SPOTFLOW_OPEN_DATA_PUBLISHER)")
	fs.StringVar(&c.OpenDataPublisherURL, "open-data-publisher-url", os.Getenv("SPOTFLOW_OPEN_DATA_PUBLISHER_URL"), "the publisher's web address (SPOTFLOW_OPEN_DATA_PUBLISHER_URL)")
	fs.StringVar(&c.OperatorToken, "operator-token", os.Getenv("SPOTFLOW_OPERATOR_TOKEN"), "a machine credential of the operator role (token:operator-token): the operator API /v1/ops/, and /dashboard and /metrics when --http is not loopback-only; named ones come from spotflow operator token issue (SPOTFLOW_OPERATOR_TOKEN)")
	fs.DurationVar(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", envDuration("SPOTFLOW_HTTP_READ_HEADER_TIMEOUT", defaultHTTPReadHeaderTimeout), "how long a client may take to send a request's headers; -1s for no limit (SPOTFLOW_HTTP_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", envDuration("SPOTFLOW_HTTP_READ_TIMEOUT", defaultHTTPReadTimeout), "how long a client may take to send a whole request, headers and body; -1s for no limit (SPOTFLOW_HTTP_READ_TIMEOUT)")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", envDuration("SPOTFLOW_HTTP_WRITE_TIMEOUT", defaultHTTPWriteTimeout), "how long from a request's headers to the end of its response, or to the end of each write of a live stream; -1s for no limit (SPOTFLOW_HTTP_WRITE_TIMEOUT)")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", envDuration("SPOTFLOW_HTTP_IDLE_TIMEOUT", defaultHTTPIdleTimeout), "how long a kept-alive connection may wait for its next request; -1s for no limit (SPOTFLOW_HTTP_IDLE_TIMEOUT)")
	fs.IntVar(&c.HTTPMaxHeaderBytes, "http-max-header-bytes", envInt("SPOTFLOW_HTTP_MAX_HEADER_BYTES", defaultHTTPMaxHeaderBytes), "largest request line and headers, in bytes; larger is answered 431 (SPOTFLOW_HTTP_MAX_HEADER_BYTES)")
	fs.IntVar(&c.HTTPMaxConns, "http-max-conns", envInt("SPOTFLOW_HTTP_MAX_CONNS", defaultHTTPMaxConns), "HTTP connections open at once; further clients wait to be accepted; -1 for no limit (SPOTFLOW_HTTP_MAX_CONNS)")
	fs.IntVar(&c.HTTPMaxStreams, "http-max-streams", envInt("SPOTFLOW_HTTP_MAX_STREAMS", defaultHTTPMaxStreams), "live streams (the dashboard's server-sent events) open at once; a further one is answered 503; -1 for no limit (SPOTFLOW_HTTP_MAX_STREAMS)")
	fs.BoolVar(&c.Pprof, "pprof", envBool("SPOTFLOW_PPROF"), "serve Go's profiles under /debug/pprof/ (SPOTFLOW_PPROF)")
	fs.StringVar(&c.LogLevel, "log-level", env("SPOTFLOW_LOG_LEVEL", "info"), "debug, info, warn or error (SPOTFLOW_LOG_LEVEL)")
}

func (c *Config) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// citizenKey returns the configured key, or the data directory's key file,
// creating it on first use.
func (c *Config) citizenKey() ([]byte, error) {
	return secretKey("citizen key", "SPOTFLOW_CITIZEN_KEY", c.CitizenKey, c.DataDir, "citizen.key")
}

// natsStoreKey returns the key that encrypts the embedded JetStream store:
// the configured one, or the data directory's key file beside the store,
// created on first use.
func (c *Config) natsStoreKey() ([]byte, error) {
	return secretKey("nats store key", "SPOTFLOW_NATS_STORE_KEY", c.NATSStoreKey, c.DataDir, "nats-store.key")
}

// secretKey returns value, a key of at least 32 bytes in hex, or else the
// key in dir/file, creating it with 32 random bytes on first use.
func secretKey(what, env, value, dir, file string) ([]byte, error) {
	if value != "" {
		key, err := hex.DecodeString(strings.TrimSpace(value))
		if err != nil || len(key) < 32 {
			return nil, fmt.Errorf("%s: %s must be at least 32 bytes in hex", what, env)
		}
		return key, nil
	}
	path := filepath.Join(dir, file)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return secretKey(what, env, value, dir, file) // another process created it first
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return key, f.Sync()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s: %s does not hold a hex key of at least 32 bytes", what, path)
	}
	return key, nil
}

// serverTLS is the TLS configuration of the process's servers, or nil
// without a certificate.
func (c *Config) serverTLS() (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// natsOptions are the connection options every NATS connection of the
// process takes: the CA to check the server's certificate against, when
// one is set (for the process that embeds the server, its own
// certificate).
func (c *Config) natsOptions(embedded bool) []nats.Option {
	ca := c.NATSCA
	if ca == "" && embedded {
		ca = c.TLSCert
	}
	if ca == "" {
		return nil
	}
	return []nats.Option{nats.RootCAs(ca)}
}

// defaultRequestRetention keeps a request that ended for 400 days: a year
// of follow-up and year-on-year reading at the desk and in BI tools, and a
// month more for late complaints and appeals. The roll-ups keep counting it
// after.
const defaultRequestRetention = 400 * 24 * time.Hour

// days is a duration flag that also takes whole days ("400d"); "0" is 0.
type days time.Duration

func (d *days) String() string {
	if d == nil {
		return "0"
	}
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *days) Set(s string) error {
	v, err := parseDays(s)
	if err != nil {
		return err
	}
	*d = days(v)
	return nil
}

// parseDays reads a number of days ("400d") or a Go duration; it refuses a
// negative one.
func parseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var v time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("want a number of days (400d) or a Go duration (36h), got %q", s)
		}
		v = time.Duration(d) * 24 * time.Hour
	} else {
		var err error
		if v, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want a number of days (400d) or a Go duration (36h), got %q", s)
		}
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return v, nil
}

func envDays(name string, def time.Duration) time.Duration {
	if d, err := parseDays(os.Getenv(name)); err == nil && os.Getenv(name) != "" {
		return d
	}
	return def
}

// checkRetention refuses a request retention the events stream outlives:
// a projector reading the stream again would record a removed request
// anew, counted twice.
func (c *Config) checkRetention() error {
	maxAge := cmp.Or(c.StreamMaxAge, natsbus.DefaultMaxAge)
	if c.RequestRetention > 0 && c.RequestRetention <= maxAge {
		return fmt.Errorf("--request-retention (%v) must be 0 (for ever) or longer than --stream-max-age (%v)",
			(*days)(&c.RequestRetention), (*days)(&maxAge))
	}
	return nil
}
