// Package natsbus is spotflow's glue to NATS JetStream: an embedded server for
// the all-in-one and the tests, connections that reconnect on their own, the
// streams and durable consumers of the pipeline, publishing with
// deduplication IDs, and the one consume loop that decides how every message
// is settled (ack, NAK with delay, term). It imports the domain (events)
// and NATS's packages only.
package natsbus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// StoreKey, when set, encrypts what JetStream keeps on disk with
	// nats-server's own store encryption (ChaCha20-Poly1305), keyed by it;
	// a store written without it is encrypted at the next start. Keep it
	// apart from the store: a copy of the store is unreadable without it.
	StoreKey string
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port to listen on; 0 means the NATS default 4222, -1 a random free port.
	Port int
	// NoSync turns off the fsync before every JetStream acknowledgement. With
	// it set, JetStream syncs on its own schedule (every two minutes by
	// default), and a power loss can drop acknowledged messages.
	NoSync bool
	// Users are the identities the server lets in, each with its grant.
	// Required unless Anonymous.
	Users []User
	// Anonymous lets anyone in with every permission, for tests and
	// benchmarks only.
	Anonymous bool
	// TLS, when set, makes every client connection TLS with this
	// configuration (its certificate); clients need to trust its issuer.
	// Leaf-node connections too, when LeafPort is set.
	TLS *tls.Config
	// Name is the server's name; default "spotflow".
	Name string
	// LeafPort, when set, accepts leaf-node connections from desks' edges
	// (spotflow edge) on LeafHost (default Host) and this port; -1 a random
	// free port. They authenticate as Users marked Leaf.
	LeafHost string
	LeafPort int
	// Domain is the server's JetStream domain. A desk's edge has one of
	// its own, so that its JetStream and the hub's stay apart across the
	// leaf connection.
	Domain string
	// Hub, when set, makes this server a leaf node of the hub: it connects
	// to Hub.URLs as Hub.Seed, and keeps reconnecting while the link is
	// down.
	Hub *LeafRemote
	// Logger receives the server's log lines; nil keeps it quiet.
	Logger *slog.Logger
}

// LeafRemote is the hub a leaf node connects to.
type LeafRemote struct {
	// URLs of the hub's leaf-node listeners: nats-leaf://host:7422, or
	// tls://… for TLS.
	URLs []string
	// Seed is the edge's credential at the hub.
	Seed Seed
	// TLS, when the hub's leaf-node listener is TLS: the roots to trust.
	TLS *tls.Config
}

// Server is an embedded nats-server that RunServer started.
type Server struct {
	*server.Server
	mu   sync.Mutex
	opts *server.Options // as last applied
}

// RunServer starts an embedded nats-server with JetStream and waits until it
// accepts connections. The caller stops it with Shutdown and WaitForShutdown.
func RunServer(cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("run nats-server: a store directory is required")
	}
	if len(cfg.Users) == 0 && !cfg.Anonymous {
		return nil, errors.New("run nats-server: users are required: spotflow's server lets nobody in anonymously")
	}
	opts := &server.Options{
		ServerName: cmpOr(cfg.Name, "spotflow"),
		Host:       cmpOr(cfg.Host, "127.0.0.1"),
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: !cfg.NoSync,
		// Empty keeps the store in clear.
		JetStreamKey:    cfg.StoreKey,
		JetStreamCipher: server.ChaCha,
		NoSigs:          true,
		// Leave room for the all-in-one's many publishers and consumers.
		MaxPayload: 1 << 20,
	}
	if len(cfg.Users) > 0 {
		opts.Nkeys = nkeyUsers(cfg.Users)
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLS, 5
	}
	opts.JetStreamDomain = cfg.Domain
	if cfg.LeafPort != 0 {
		opts.LeafNode.Host, opts.LeafNode.Port = cmpOr(cfg.LeafHost, opts.Host), cfg.LeafPort
		// Edges reach the hub at the address they were given (through a
		// proxy, say), never at the one the server listens on.
		opts.LeafNode.NoAdvertise = true
		if cfg.TLS != nil {
			opts.LeafNode.TLSConfig, opts.LeafNode.TLSTimeout = cfg.TLS, 5
		}
	}
	if cfg.Hub != nil {
		remote := &server.RemoteLeafOpts{Nkey: string(cfg.Hub.Seed)}
		for _, u := range cfg.Hub.URLs {
			parsed, err := url.Parse(u)
			if err != nil {
				return nil, fmt.Errorf("run nats-server: hub %q: %w", u, err)
			}
			remote.URLs = append(remote.URLs, parsed)
		}
		if cfg.Hub.TLS != nil {
			remote.TLS, remote.TLSConfig, remote.TLSTimeout = true, cfg.Hub.TLS, 5
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
		// Try the link again soon after it dropped.
		opts.LeafNode.ReconnectInterval = time.Second
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("run nats-server: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(&serverLogger{cfg.Logger}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("run nats-server: not ready after 30s")
	}
	return &Server{Server: ns, opts: opts}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// serverLogger adapts slog to nats-server's logger interface.
type serverLogger struct{ l *slog.Logger }

func (s *serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Tracef(format string, v ...any)  {}

// LeafPort is the port the server accepts leaf-node connections on, once
// running; 0 when it accepts none.
func (s *Server) LeafPort() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.LeafNode.Port
}
