package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// natsNode is one node of the three-node NATS cluster a cluster run
// starts: the official nats-server, run with deploy/nats/cluster.conf as
// it is, through a link beside the authorization block the run prints.
type natsNode struct {
	name                         string
	client, route, monitor, leaf string // host:port
	proc                         *process
}

// clusterNodes is how many NATS nodes a cluster run starts.
const clusterNodes = 3

// buildNATSServer builds the nats-server of spotflow's go.mod into out.
func buildNATSServer(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/nats-io/nats-server/v2")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build nats-server: %v\n%s", err, b)
	}
	return nil
}

// startNATSCluster starts three nats-server nodes on loopback with TLS to
// clients and between nodes, the cluster's configuration read from
// confFile, and the authorization block of `spotflow nats-config`.
func (c *cluster) startNATSCluster(ctx context.Context, natsServer, confFile string) error {
	tlsDir := filepath.Join(c.dir, "tls")
	if err := writeTLS(tlsDir); err != nil {
		return err
	}
	c.natsCA = filepath.Join(tlsDir, "ca.pem")
	confDir := filepath.Join(c.dir, "nats-conf")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(confFile)
	if err != nil {
		return err
	}
	// The file itself, not a copy: its include finds auth.conf beside the link.
	if err := os.Symlink(abs, filepath.Join(confDir, "cluster.conf")); err != nil {
		return err
	}
	auth, err := c.spotflow(ctx, time.Minute, "nats-config")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(confDir, "auth.conf"), []byte(auth), 0o600); err != nil {
		return err
	}
	for i := 1; i <= clusterNodes; i++ {
		n := &natsNode{name: fmt.Sprintf("nats-%d", i)}
		for _, addr := range []*string{&n.client, &n.route, &n.monitor, &n.leaf} {
			port, err := freePort()
			if err != nil {
				return err
			}
			*addr = fmt.Sprintf("127.0.0.1:%d", port)
		}
		c.natsNodes = append(c.natsNodes, n)
	}
	var urls []string
	for _, n := range c.natsNodes {
		urls = append(urls, "tls://"+n.client)
	}
	c.natsURL = strings.Join(urls, ",")
	storeKey := make([]byte, 32)
	_, _ = rand.Read(storeKey)
	for _, n := range c.natsNodes {
		env := append(os.Environ(),
			"NATS_STORE_KEY="+hex.EncodeToString(storeKey),
			"NATS_SERVER_NAME="+n.name,
			"NATS_CLIENT_LISTEN="+n.client,
			"NATS_CLUSTER_LISTEN="+n.route,
			"NATS_MONITOR_LISTEN="+n.monitor,
			"NATS_LEAF_LISTEN="+n.leaf,
			"NATS_STORE_DIR="+filepath.Join(c.dir, n.name),
			"NATS_TLS_CERT="+filepath.Join(tlsDir, "node.pem"),
			"NATS_TLS_KEY="+filepath.Join(tlsDir, "node-key.pem"),
			"NATS_TLS_CA="+c.natsCA,
		)
		for i, m := range c.natsNodes {
			env = append(env, fmt.Sprintf("NATS_ROUTE_%d=nats-route://%s", i+1, m.route))
		}
		n.proc = c.sup.add(procSpec{
			Name:  n.name,
			Bin:   natsServer,
			Args:  []string{"-c", filepath.Join(confDir, "cluster.conf")},
			Env:   env,
			Probe: n.healthy,
		})
	}
	fmt.Fprintf(c.log, "chaos: starting a %d-node NATS cluster on %s\n", clusterNodes, c.natsURL)
	// Together: a node waits for the others to elect JetStream's leader.
	errs := make(chan error, len(c.natsNodes))
	for _, n := range c.natsNodes {
		go func() { errs <- n.proc.start(ctx) }()
	}
	var first error
	for range c.natsNodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// healthy asks the node's monitoring whether it and its JetStream are
// ready.
func (n *natsNode) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.monitor+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /healthz answered %d", n.name, resp.StatusCode)
	}
	return nil
}

// streamState is a stream as one node holds it.
type streamState struct {
	Messages, FirstSeq, LastSeq uint64
}

func (s streamState) String() string {
	return fmt.Sprintf("%d messages, %d–%d", s.Messages, s.FirstSeq, s.LastSeq)
}

// streams reads, from the node's own monitoring, the state of every stream
// it holds a replica of.
func (n *natsNode) streams(ctx context.Context) (map[string]streamState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.monitor+"/jsz?streams=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string `json:"name"`
				State struct {
					Messages uint64 `json:"messages"`
					FirstSeq uint64 `json:"first_seq"`
					LastSeq  uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, fmt.Errorf("%s: read /jsz: %w", n.name, err)
	}
	out := make(map[string]streamState)
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			out[s.Name] = streamState{s.State.Messages, s.State.FirstSeq, s.State.LastSeq}
		}
	}
	return out, nil
}

// sameStreams waits, up to within, until every node holds every stream of
// spotflow's in the same state, and says what each holds.
func (c *cluster) sameStreams(ctx context.Context, within time.Duration) (string, error) {
	want := []string{events.EventsStream, events.WorkStream, events.AdvisoryStream}
	deadline := time.Now().Add(within)
	for {
		var differ []string
		var first map[string]streamState
		for _, n := range c.natsNodes {
			got, err := n.streams(ctx)
			if err != nil {
				differ = append(differ, err.Error())
				continue
			}
			if first == nil {
				first = got
			}
			for _, s := range want {
				st, ok := got[s]
				switch {
				case !ok:
					differ = append(differ, fmt.Sprintf("%s holds no replica of %s", n.name, s))
				case st != first[s]:
					differ = append(differ, fmt.Sprintf("%s holds %s as %v, %s as %v", n.name, s, st, c.natsNodes[0].name, first[s]))
				}
			}
		}
		if len(differ) == 0 {
			var parts []string
			for _, s := range want {
				parts = append(parts, fmt.Sprintf("%s %v", s, first[s]))
			}
			return fmt.Sprintf("every node holds %s", strings.Join(parts, "; ")), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("nodes differ %v after the run: %s", within, strings.Join(differ, "; "))
		}
		if !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
			return "", ctx.Err()
		}
	}
}

// admin connects to the cluster as spotflow's admin identity.
func (c *cluster) admin() (*nats.Conn, jetstream.JetStream, error) {
	seed, err := natsbus.ReadSeed(filepath.Join(c.identities(), natsbus.Admin+".nk"))
	if err != nil {
		return nil, nil, err
	}
	return natsbus.Connect(c.natsURL, "chaos", natsbus.Credential{Identity: natsbus.Admin, Seed: seed},
		slog.New(slog.DiscardHandler), nats.RootCAs(c.natsCA))
}

// leaderWait bounds how long streamLeader waits for a stream's replicas to
// elect a leader, and leaderAsk each question it asks meanwhile: a stream
// between leaders (its last one just killed, a node just restarted) may
// leave a question unanswered.
const (
	leaderWait = 30 * time.Second
	leaderAsk  = 2 * time.Second
)

// streamLeader is the node that leads stream's replicas, waiting up to
// leaderWait for them to have one.
func (c *cluster) streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*natsNode, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		ask, cancel := context.WithTimeout(ctx, leaderAsk)
		node, err := c.currentStreamLeader(ask, js, stream)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return node, err
		}
		if !sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
			return nil, ctx.Err()
		}
	}
}

// currentStreamLeader is the node that leads stream's replicas now.
func (c *cluster) currentStreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*natsNode, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader", stream)
	}
	i := slices.IndexFunc(c.natsNodes, func(n *natsNode) bool { return n.name == info.Cluster.Leader })
	if i < 0 {
		return nil, fmt.Errorf("stream %s is led by %q, no node of the run", stream, info.Cluster.Leader)
	}
	return c.natsNodes[i], nil
}

// writeTLS makes a CA and one certificate, for 127.0.0.1 and localhost,
// that every node presents to clients and to the other nodes.
func writeTLS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spotflow chaos CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	node := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	nodeDER, err := x509.CreateCertificate(rand.Reader, node, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	files := []struct {
		name, kind string
		der        []byte
	}{{"ca.pem", "CERTIFICATE", caDER}, {"node.pem", "CERTIFICATE", nodeDER}, {"node-key.pem", "EC PRIVATE KEY", keyDER}}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}
