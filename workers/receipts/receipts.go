// Package receipts makes and checks the signed receipts a citizen takes
// home from a visit: what was submitted on their behalf, when, to whom, and
// when each request is due; never their national ID or their answers.
//
// A receipt is signed with Ed25519 (crypto/ed25519) over its canonical
// encoding (Canonical), and names the key that signed it, so that keys can
// rotate: a signed receipt verifies with the public key of its key ID for
// as long as that key is published, which is for ever. The keys live in a
// directory of their own (KeyDir), apart from the database.
package receipts

import (
	"bytes"
	"compress/flate"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Version is the receipts' format: "spotflow-receipt/1".
const Version = "spotflow-receipt/1"

// Receipt is what a visit's receipt says. Times are UTC, to the second.
type Receipt struct {
	Version string `json:"version"`
	// Visit is the visit's ID: the receipt's reference.
	Visit        string `json:"visit"`
	Desk         string `json:"desk"`
	DeskName     string `json:"desk_name"`
	Municipality string `json:"municipality"`
	// Mediator is the mediator's username.
	Mediator string `json:"mediator"`
	// Language is the citizen's: the one the receipt is printed in.
	Language string `json:"language"`
	// ConsentVersion is the consent text the citizen agreed to.
	ConsentVersion string    `json:"consent_version"`
	ConsentAt      time.Time `json:"consent_at"`
	StartedAt      time.Time `json:"started_at"`
	Requests       []Request `json:"requests"`
	// Training marks the receipt of a practice visit: its requests went
	// to simulated agencies only.
	Training bool `json:"training,omitempty"`
}

// Request is one request of the visit, as its receipt lists it.
type Request struct {
	// ID is the request's reference.
	ID          string    `json:"id"`
	Service     string    `json:"service"`
	Agencies    []string  `json:"agencies"`
	SubmittedAt time.Time `json:"submitted_at"`
	// ExpectedBy is when it should be completed: submitted plus the
	// service's level.
	ExpectedBy time.Time `json:"expected_by"`
}

// Signed is a receipt with its signature, as it is printed, downloaded and
// verified: {"receipt": …, "key_id": …, "signature": …}, the signature in
// base64url without padding.
type Signed struct {
	Receipt   Receipt `json:"receipt"`
	KeyID     string  `json:"key_id"`
	Signature string  `json:"signature"`
}

// Canonical is the receipt's canonical encoding, the bytes that are
// signed: JSON with the fields in the order of the Receipt and Request
// types (which is their JSON order above), no spaces, UTF-8 unescaped
// (only ", \ and control characters are escaped), times in RFC 3339 UTC to
// the second. The same receipt always encodes to the same bytes; any
// change to any field changes them.
func (r Receipt) Canonical() ([]byte, error) {
	r.ConsentAt, r.StartedAt = second(r.ConsentAt), second(r.StartedAt)
	r.Requests = append([]Request(nil), r.Requests...)
	for i := range r.Requests {
		r.Requests[i].SubmittedAt, r.Requests[i].ExpectedBy = second(r.Requests[i].SubmittedAt), second(r.Requests[i].ExpectedBy)
		if r.Requests[i].Agencies == nil {
			r.Requests[i].Agencies = []string{}
		}
	}
	if r.Requests == nil {
		r.Requests = []Request{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("receipt: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func second(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// Sign signs r with key, named keyID.
func Sign(r Receipt, keyID string, key ed25519.PrivateKey) (Signed, error) {
	r.Version = Version
	msg, err := r.Canonical()
	if err != nil {
		return Signed{}, err
	}
	// The receipt as signed: times in UTC to the second, no nil lists.
	var signed Receipt
	if err := json.Unmarshal(msg, &signed); err != nil {
		return Signed{}, fmt.Errorf("receipt: %w", err)
	}
	return Signed{Receipt: signed, KeyID: keyID, Signature: base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, msg))}, nil
}

// The reasons a receipt does not verify.
var (
	ErrUnknownKey   = errors.New("receipt: signed with a key that is not published")
	ErrBadSignature = errors.New("receipt: the signature does not match the receipt: it was changed, or not signed by spotflow")
	ErrBadVersion   = errors.New("receipt: not a receipt of a known version")
)

// Verify checks s's signature with the public key of its key ID among
// keys.
func Verify(s Signed, keys map[string]ed25519.PublicKey) error {
	if s.Receipt.Version != Version {
		return ErrBadVersion
	}
	pub, ok := keys[s.KeyID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKey, s.KeyID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return ErrBadSignature
	}
	msg, err := s.Receipt.Canonical()
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

// Parse reads a signed receipt from its JSON, refusing unknown fields.
func Parse(data []byte) (Signed, error) {
	var s Signed
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Signed{}, fmt.Errorf("receipt: read: %w", err)
	}
	return s, nil
}

// Compact is s as a short URL-safe text, for the QR code's link: the
// base64url of its JSON compressed with DEFLATE (RFC 1951), which makes
// the code's modules fewer and so larger on paper.
func Compact(s Signed) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(z.Bytes()), nil
}

// maxCompact bounds what FromCompact inflates: a receipt is a few KiB.
const maxCompact = 64 << 10

// FromCompact reverses Compact.
func FromCompact(text string) (Signed, error) {
	z, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil {
		return Signed{}, fmt.Errorf("receipt: read: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(z)), maxCompact+1))
	if err != nil || len(b) > maxCompact {
		return Signed{}, fmt.Errorf("receipt: read: not a compressed receipt")
	}
	return Parse(b)
}
