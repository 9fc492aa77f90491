package receipts

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Keys are the receipt keys of a directory: for each key ID, <id>.pub (the
// public key, PKIX PEM) and, while it may sign, <id>.key (the private key,
// PKCS #8 PEM, mode 0600). Key IDs start with the time they were made, so
// the newest that has its private key signs; the others verify what they
// signed. Rotating adds a key; deleting a .key file retires it for good
// while its .pub keeps it published. Keys is safe for concurrent use.
type Keys struct {
	dir string

	mu      sync.RWMutex
	public  map[string]ed25519.PublicKey
	signing string
	private ed25519.PrivateKey
}

// OpenKeys reads the keys of dir, making the directory and a first key
// when there is none.
func OpenKeys(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("receipt keys: %w", err)
	}
	k := &Keys{dir: dir}
	if err := k.load(); err != nil {
		return nil, err
	}
	if k.private == nil {
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Keys) load() error {
	pubs, err := filepath.Glob(filepath.Join(k.dir, "*.pub"))
	if err != nil {
		return err
	}
	public := make(map[string]ed25519.PublicKey, len(pubs))
	var ids []string
	for _, p := range pubs {
		id := strings.TrimSuffix(filepath.Base(p), ".pub")
		pub, err := readPublic(p)
		if err != nil {
			return err
		}
		public[id] = pub
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var signing string
	var private ed25519.PrivateKey
	for _, id := range slices.Backward(ids) {
		priv, err := readPrivate(filepath.Join(k.dir, id+".key"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !priv.Public().(ed25519.PublicKey).Equal(public[id]) {
			return fmt.Errorf("receipt keys: %s.key is not the private key of %s.pub", id, id)
		}
		signing, private = id, priv
		break
	}
	k.mu.Lock()
	k.public, k.signing, k.private = public, signing, private
	k.mu.Unlock()
	return nil
}

func readPublic(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("receipt keys: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("receipt keys: %s is not a PEM public key", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	pub, ok := key.(ed25519.PublicKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("receipt keys: %s is not an Ed25519 public key", path)
	}
	return pub, nil
}

func readPrivate(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("receipt keys: %s is not a PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	priv, ok := key.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("receipt keys: %s is not an Ed25519 private key", path)
	}
	return priv, nil
}

// Rotate makes a new key, which signs from now on, and returns its ID.
// The keys before it stay published.
func (k *Keys) Rotate() (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(pub)
	id := time.Now().UTC().Format("20060102T150405.000000") + "-" + hex.EncodeToString(sum[:4])
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	// The private key first: a public key without it is a retired key.
	if err := os.WriteFile(filepath.Join(k.dir, id+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return "", fmt.Errorf("receipt keys: %w", err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, id+".pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), 0o644); err != nil {
		return "", fmt.Errorf("receipt keys: %w", err)
	}
	if err := k.load(); err != nil {
		return "", err
	}
	return id, nil
}

// Sign signs r with the current key.
func (k *Keys) Sign(r Receipt) (Signed, error) {
	k.mu.RLock()
	id, priv := k.signing, k.private
	k.mu.RUnlock()
	return Sign(r, id, priv)
}

// Public is every published key by ID.
func (k *Keys) Public() map[string]ed25519.PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make(map[string]ed25519.PublicKey, len(k.public))
	for id, p := range k.public {
		out[id] = p
	}
	return out
}

// Published is the list of public keys as spotflow serves it
// (/receipts/keys.json) and `spotflow receipt verify` reads it.
type Published struct {
	Keys []PublishedKey `json:"keys"`
}

// PublishedKey is one public key: its ID, algorithm and the 32 bytes of
// the key in base64url.
type PublishedKey struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"`
	// Signing says whether it signs new receipts now.
	Signing bool `json:"signing"`
}

// Published lists the public keys, oldest first.
func (k *Keys) Published() Published {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := Published{Keys: []PublishedKey{}}
	for id, p := range k.public {
		out.Keys = append(out.Keys, PublishedKey{KeyID: id, Algorithm: "Ed25519", PublicKey: base64.RawURLEncoding.EncodeToString(p), Signing: id == k.signing})
	}
	slices.SortFunc(out.Keys, func(a, b PublishedKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	return out
}

// ParsePublished reads a list of public keys as Published writes it.
func ParsePublished(data []byte) (map[string]ed25519.PublicKey, error) {
	var p Published
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("receipt keys: %w", err)
	}
	out := make(map[string]ed25519.PublicKey, len(p.Keys))
	for _, k := range p.Keys {
		b, err := base64.RawURLEncoding.DecodeString(k.PublicKey)
		if err != nil || k.Algorithm != "Ed25519" || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("receipt keys: key %q is not an Ed25519 public key", k.KeyID)
		}
		out[k.KeyID] = ed25519.PublicKey(b)
	}
	return out, nil
}
