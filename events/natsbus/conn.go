package natsbus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connect opens a connection to url as cred's identity that retries its
// first connection and reconnects forever after a loss, logging each change.
// name identifies the process in the server's monitoring. A zero cred
// connects anonymously, which only a server started without users (tests,
// benchmarks) accepts. extra adds options, such as the CA a TLS server's
// certificate is checked against (nats.RootCAs).
func Connect(url, name string, cred Credential, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	var auth []nats.Option
	if cred.Identity != "" || len(cred.Seed) > 0 {
		var err error
		if auth, err = cred.Options(); err != nil {
			return nil, nil, fmt.Errorf("connect to nats: %w", err)
		}
	}
	nc, err := nats.Connect(url, append(append(auth, extra...),
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(64<<20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
	)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open jetstream: %w", err)
	}
	return nc, js, nil
}
