// Package access decides who may reach spotflow's operator-facing HTTP
// surfaces: the dashboard and the Prometheus metrics. It checks the
// operator's credential (the configured operator token, named machine
// credentials, a signed-in operator's session: anything satisfying the
// Operators interface) and applies one policy: on an
// HTTP address bound to loopback only, anyone on the machine may look; on
// any other, only an operator may.
package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spotflow/spotflow/workers/ratelimit"
)

// Realm is the protection space named in the challenges: a browser keeps
// the operator's credential for it.
const Realm = "spotflow operators"

// Operators tells whether a request carries an operator's credential. The
// operators' shared token (Token) satisfies it today; a check of personal
// operator sessions can satisfy it later. Implementations are safe for
// concurrent use and fail closed: a check that cannot decide says false.
type Operators interface {
	Operator(r *http.Request) bool
}

// Token is the operators' shared secret (spotflow's --operator-token),
// accepted as "Authorization: Bearer <token>" (Prometheus, scripts) or as
// the password of HTTP Basic authentication (a browser's prompt), whatever
// the user name. It keeps only the token's SHA-256 and compares in constant
// time. It is immutable and safe for concurrent use.
type Token struct {
	sum [sha256.Size]byte
}

var _ Operators = (*Token)(nil)

// NewToken returns the check of secret, which must not be empty.
func NewToken(secret string) (*Token, error) {
	if secret == "" {
		return nil, errors.New("operator token: empty")
	}
	return &Token{sum: sha256.Sum256([]byte(secret))}, nil
}

// Operator reports whether r presents the token, as a Bearer token or as a
// Basic password. Both sides are hashed first, so the comparison takes the
// same time whatever the length or content of what was presented.
func (t *Token) Operator(r *http.Request) bool {
	given, ok := presented(r)
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// presented is the secret r's Authorization header carries: a Bearer token
// or a Basic password; false when it carries neither.
func presented(r *http.Request) (string, bool) {
	scheme, rest, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case !ok:
		return "", false
	case strings.EqualFold(scheme, "Bearer"):
		token := strings.TrimSpace(rest)
		return token, token != ""
	case strings.EqualFold(scheme, "Basic"):
		_, password, ok := r.BasicAuth()
		return password, ok && password != ""
	}
	return "", false
}

// Any recognises a request that any of its checks recognises: the shared
// token, named machine credentials, a signed-in operator's session.
type Any []Operators

var _ Operators = Any(nil)

// Operator reports whether one of a's checks recognises r.
func (a Any) Operator(r *http.Request) bool {
	for _, o := range a {
		if o != nil && o.Operator(r) {
			return true
		}
	}
	return false
}

// Lookup recognises the secrets (a Bearer token or a Basic password) that
// Known says are an operator's credential in force: machine credentials
// kept in the database. A secret recognised is trusted for Fresh without
// asking again (default 5 s: a revocation takes effect within it), and for
// as long as Known fails (the database down: /metrics stays scrapable);
// one refused is asked about every time, and refused while Known fails.
// With Failures set, every secret Known refuses counts against the
// address it came from, and a secret it never recognised from an address
// that has had too many is refused without asking Known, so that guessing
// costs the database nothing.
// Use NewLookup; it is safe for concurrent use.
type Lookup struct {
	known func(ctx context.Context, secret string) (bool, error)
	fresh time.Duration
	// Failures counts refused secrets by source address (nil: no limit).
	Failures *ratelimit.Buckets

	mu      sync.Mutex
	checked map[[sha256.Size]byte]time.Time
}

var _ Operators = (*Lookup)(nil)

// NewLookup returns the check of secrets with known, trusting what it
// recognised for fresh (0: 5 s).
func NewLookup(known func(ctx context.Context, secret string) (bool, error), fresh time.Duration) *Lookup {
	if fresh <= 0 {
		fresh = 5 * time.Second
	}
	return &Lookup{known: known, fresh: fresh, checked: map[[sha256.Size]byte]time.Time{}}
}

// lookupCap bounds the secrets a Lookup remembers; past it, it forgets
// them all and asks again.
const lookupCap = 1024

// Operator reports whether r presents a secret Known recognises.
func (l *Lookup) Operator(r *http.Request) bool {
	given, ok := presented(r)
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	l.mu.Lock()
	at, seen := l.checked[sum]
	l.mu.Unlock()
	if seen && time.Since(at) < l.fresh {
		return true
	}
	// A secret it recognised before is asked about even from an address
	// that failed too often: one guesser behind a proxy must not lock out
	// Prometheus scraping through it.
	address := ratelimit.Host(r.RemoteAddr)
	if throttled, _ := l.Failures.Empty(address, time.Now()); throttled && !seen {
		return false
	}
	known, err := l.known(r.Context(), given)
	if err != nil {
		return seen
	}
	if !known {
		l.Failures.Take(address, time.Now())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !known:
		delete(l.checked, sum)
	case len(l.checked) >= lookupCap:
		clear(l.checked)
		fallthrough
	default:
		l.checked[sum] = time.Now()
	}
	return known
}

// Policy is who may see the operator-facing surfaces of one HTTP address.
// Its zero value lets no one in and says so (403). Policy is a value; it is
// safe for concurrent use if Operators is.
type Policy struct {
	// Operators recognises an operator's credential; nil when none is
	// configured.
	Operators Operators
	// Loopback says the HTTP address is bound to loopback only (see
	// Loopback): then anyone who reaches it is on this machine and may
	// look without a credential.
	Loopback bool
}

// NewPolicy is the policy of an HTTP server listening on addr, letting in
// the operators that operators recognises (nil: none).
func NewPolicy(addr string, operators Operators) Policy {
	return Policy{Loopback: Loopback(addr), Operators: operators}
}

// Operator reports whether r carries an operator's credential.
func (p Policy) Operator(r *http.Request) bool {
	return p.Operators != nil && p.Operators.Operator(r)
}

// Require serves next to whoever the policy lets in: anyone when the
// address is loopback-only; otherwise only a request with an operator's
// credential. Without one the answer is 401 with a Basic and a Bearer
// challenge (see Challenge); when no credential is configured at all, 403
// with a message saying how to configure one.
func (p Policy) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case p.Loopback:
		case p.Operators == nil:
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "spotflow: this HTTP address is reachable from other machines, so this page "+
				"is for operators only, and no operator token is set. Start spotflow with --operator-token "+
				"(or SPOTFLOW_OPERATOR_TOKEN) set to a long random secret and send it as \"Authorization: Bearer <token>\", "+
				"or listen on loopback only (--http 127.0.0.1:8080).", http.StatusForbidden)
			return
		case !p.Operators.Operator(r):
			Challenge(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Challenge answers 401 and asks for an operator's credential twice: HTTP
// Basic first, so that a browser prompts for it (the token is the password,
// the user name is ignored), then Bearer, for Prometheus and scripts. A
// Bearer token that was presented and refused is named invalid_token (RFC
// 6750).
func Challenge(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q, charset="UTF-8"`, Realm))
	bearer := fmt.Sprintf(`Bearer realm=%q`, Realm)
	if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
		bearer += `, error="invalid_token"`
	}
	h.Add("WWW-Authenticate", bearer)
	h.Set("Cache-Control", "no-store")
	http.Error(w, "spotflow: this page needs the operator's credential: send \"Authorization: Bearer <operator token>\", "+
		"or sign in with the operator token as the password (any user name).", http.StatusUnauthorized)
}

// Loopback reports whether a listen address ("host:port", or a host alone)
// binds loopback interfaces only: an IP address in 127.0.0.0/8 or ::1 (also
// IPv4-mapped), or the name localhost. An empty host or an unspecified
// address (0.0.0.0, ::) binds every interface and is not loopback; nor is
// any other name, which is not resolved here.
func Loopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		host = addr[1 : len(addr)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
