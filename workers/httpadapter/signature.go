package httpadapter

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Deliveries are signed as the Standard Webhooks specification
// (https://www.standardwebhooks.com) says, so that an agency can check them
// with any of its libraries or in a few lines of its own:
//
//	webhook-id:        the work item's ID (the same on every delivery of it)
//	webhook-timestamp: when this delivery was signed, in seconds since 1970
//	webhook-signature: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
//
// The key is the agency's signing secret, written "whsec_" followed by the
// key in base64. An agency refuses a delivery whose signature does not match
// or whose timestamp is more than SignatureTolerance away from its clock.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"

	// SignatureTolerance is how far a delivery's timestamp may be from the
	// receiver's clock.
	SignatureTolerance = 5 * time.Minute

	// maxDelivery bounds the body RequireSignature reads.
	maxDelivery = 1 << 20

	secretPrefix   = "whsec_"
	minSecretBytes = 24
)

// SigningSecret is the key deliveries to an agency are signed with.
type SigningSecret []byte

// NewSigningSecret makes a new secret of 32 random bytes, written as the
// specification writes them.
func NewSigningSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseSigningSecret reads a secret written "whsec_<base64>", of at least 24
// bytes. Surrounding white space, as a file's final newline, is ignored.
func ParseSigningSecret(s string) (SigningSecret, error) {
	s = strings.TrimSpace(s)
	encoded, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("signing secret: want %q followed by the key in base64", secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("signing secret: the key is not base64: %w", err)
	}
	if len(key) < minSecretBytes {
		return nil, fmt.Errorf("signing secret: the key has %d bytes, want at least %d", len(key), minSecretBytes)
	}
	return key, nil
}

// Sign sets the signature headers of a delivery of body with ID id at time
// at on h.
func (k SigningSecret) Sign(h http.Header, id string, at time.Time, body []byte) {
	ts := strconv.FormatInt(at.Unix(), 10)
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString(k.mac(id, ts, body)))
}

func (k SigningSecret) mac(id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return m.Sum(nil)
}

// ErrSignature is a delivery whose signature is missing, does not match,
// or is too old or too new.
var ErrSignature = errors.New("delivery signature does not verify")

// Verify checks the signature headers h of a delivery of body against k at
// time now: one of the v1 signatures must match, and the timestamp must lie
// within SignatureTolerance of now.
func (k SigningSecret) Verify(h http.Header, body []byte, now time.Time) error {
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	if id == "" || ts == "" || h.Get(HeaderSignature) == "" {
		return fmt.Errorf("%w: missing %s, %s or %s", ErrSignature, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrSignature)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return fmt.Errorf("%w: timestamp is %v away", ErrSignature, d.Round(time.Second))
	}
	want := k.mac(id, ts, body)
	for sig := range strings.FieldsSeq(h.Get(HeaderSignature)) {
		version, encoded, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(encoded); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no v1 signature matches", ErrSignature)
}

// RequireSignature serves next only deliveries signed with k; others are
// answered 401 Unauthorized. It is the check an agency's endpoint makes, for
// the reference agencies and tests.
func RequireSignature(k SigningSecret, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxDelivery))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if err := k.Verify(r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
