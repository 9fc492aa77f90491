package localpg

import (
	"fmt"
	"os"
	"path/filepath"
)

const (
	// certName and keyName are the files Open copies Config.TLSCert and
	// Config.TLSKey to, inside the cluster.
	certName = "server.crt"
	keyName  = "server.key"
	// tlsOptions are the settings pg_ctl passes to a server it starts with
	// TLS. The server reads the files relative to the cluster's directory.
	tlsOptions = "-c ssl=on -c ssl_cert_file=" + certName + " -c ssl_key_file=" + keyName
)

// installTLS copies the certificate and key into the cluster, owned by the
// user that runs PostgreSQL, with mode 0600: PostgreSQL refuses to start with
// a key that others may read or that belongs to a user other than itself or
// root.
func (c *Cluster) installTLS() error {
	for _, f := range []struct{ from, name string }{{c.tlsCert, certName}, {c.tlsKey, keyName}} {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return fmt.Errorf("install postgres tls files: %w", err)
		}
		path := filepath.Join(c.dir, f.name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("install postgres tls files: %w", err)
		}
		// WriteFile keeps the mode of a file that exists already.
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("install postgres tls files: %w", err)
		}
		if err := c.run.chown(path); err != nil {
			return fmt.Errorf("install postgres tls files: %w", err)
		}
	}
	return nil
}
