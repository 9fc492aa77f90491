package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// certificates writes a CA and a certificate it issued for 127.0.0.1, with
// its key, as PEM files, and returns their paths.
func certificates(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spotflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestRun_ServesHTTPSAndRequiresTLSOnNATSGivenACertificate runs the
// all-in-one with a certificate: HTTP and NATS speak TLS only, and a
// client that trusts the issuer gets through.
func TestRun_ServesHTTPSAndRequiresTLSOnNATSGivenACertificate(t *testing.T) {
	t.Parallel()
	ca, cert, key := certificates(t)
	m := &Main{
		Config: Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DatabaseURL: pgtest.Schema(t),
			Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32), TLSCert: cert, TLSKey: key, NATSCA: ca,
		},
		Roles: allRoles,
		Embed: true,
	}
	runMain(t, m)

	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	resp, err := trusting.Get("https://" + m.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS with the CA: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("GET /healthz over HTTPS: %d %q", resp.StatusCode, body)
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("https://" + m.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("a client that does not trust the issuer got through")
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + m.HTTPAddr() + "/healthz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was answered 200")
		}
		resp.Body.Close()
	}

	admin, err := m.Config.credential(natsbus.Admin)
	if err != nil {
		t.Fatal(err)
	}
	nc, _, err := natsbus.Connect(m.NATSURL(), t.Name(), admin, slog.New(slog.DiscardHandler), nats.RootCAs(ca))
	if err != nil {
		t.Fatalf("NATS over TLS with the CA: %v", err)
	}
	if err := nc.Flush(); err != nil || !nc.TLSRequired() {
		t.Errorf("NATS connection: flush %v, TLS required %v", err, nc.TLSRequired())
	}
	nc.Close()
	opts, err := admin.Options()
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := nats.Connect(m.NATSURL(), append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())...); err == nil {
		plain.Close()
		t.Error("a NATS client that does not trust the issuer got through")
	}
}
