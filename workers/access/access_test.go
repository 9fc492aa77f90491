package access_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/access"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

const secret = "op-secret-0123456789"

// tokenOf is the check of secret, or no check at all for "".
func tokenOf(t *testing.T, secret string) access.Operators {
	t.Helper()
	if secret == "" {
		return nil
	}
	token, err := access.NewToken(secret)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestToken_AcceptsTheTokenAsBearerOrBasicPasswordOnly(t *testing.T) {
	t.Parallel()
	token, err := access.NewToken(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, authorization string
		want                bool
	}{
		{"a bearer token is accepted", "Bearer " + secret, true},
		{"the scheme's case does not matter", "bearer " + secret, true},
		{"a basic password is accepted whatever the user name", basic("anyone", secret), true},
		{"a basic password with no user name is accepted", basic("", secret), true},
		{"a wrong bearer token is refused", "Bearer " + secret + "x", false},
		{"a prefix of the token is refused", "Bearer " + secret[:len(secret)-1], false},
		{"a wrong basic password is refused", basic("operator", "guess"), false},
		{"the token as basic user name is refused", basic(secret, ""), false},
		{"an empty bearer token is refused", "Bearer ", false},
		{"the bare token is refused", secret, false},
		{"another scheme is refused", "Token " + secret, false},
		{"no credential is refused", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.authorization != "" {
				r.Header.Set("Authorization", tc.authorization)
			}
			if got := token.Operator(r); got != tc.want {
				t.Errorf("Operator with %q = %v, want %v", tc.authorization, got, tc.want)
			}
		})
	}
}

func TestNewToken_RefusesAnEmptySecret(t *testing.T) {
	t.Parallel()
	if _, err := access.NewToken(""); err == nil {
		t.Fatal("NewToken(\"\") succeeded; an empty token would let anyone in")
	}
}

// serve sends a GET with authorization (if any) through p.Require.
func serve(t *testing.T, p access.Policy, authorization string) *http.Response {
	t.Helper()
	h := p.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") }))
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestPolicy_RequireBeyondLoopbackLetsOnlyOperatorsIn(t *testing.T) {
	t.Parallel()
	p := access.NewPolicy("0.0.0.0:8080", tokenOf(t, secret))
	if p.Loopback {
		t.Fatal("0.0.0.0 taken for loopback")
	}
	for _, tc := range []struct {
		name, authorization string
		want                int
	}{
		{"the bearer token passes", "Bearer " + secret, http.StatusOK},
		{"the basic password passes", basic("me", secret), http.StatusOK},
		{"a wrong token is challenged", "Bearer nope", http.StatusUnauthorized},
		{"a wrong password is challenged", basic("me", "nope"), http.StatusUnauthorized},
		{"no credential is challenged", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := serve(t, p, tc.authorization)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusOK {
				if string(body) != "metrics" {
					t.Errorf("body %q, want the handler's", body)
				}
				return
			}
			if strings.Contains(string(body), "metrics") {
				t.Errorf("a refused request got the handler's body: %q", body)
			}
			challenges := resp.Header.Values("WWW-Authenticate")
			if len(challenges) != 2 || challenges[0] != `Basic realm="spotflow operators", charset="UTF-8"` ||
				!strings.HasPrefix(challenges[1], `Bearer realm="spotflow operators"`) {
				t.Errorf("challenges %q, want Basic then Bearer for realm \"spotflow operators\"", challenges)
			}
			wantInvalid := strings.HasPrefix(tc.authorization, "Bearer ")
			if got := strings.Contains(challenges[len(challenges)-1], `error="invalid_token"`); got != wantInvalid {
				t.Errorf("Bearer challenge %q: invalid_token %v, want %v", challenges[len(challenges)-1], got, wantInvalid)
			}
		})
	}
}

func TestPolicy_RequireBeyondLoopbackWithoutATokenSaysHowToSetOne(t *testing.T) {
	t.Parallel()
	p := access.NewPolicy(":8080", nil)
	for _, authorization := range []string{"", "Bearer anything", basic("me", "anything")} {
		resp := serve(t, p, authorization)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--operator-token") {
			t.Errorf("with %q: %d %q, want 403 naming --operator-token", authorization, resp.StatusCode, body)
		}
	}
}

func TestPolicy_RequireOnLoopbackLetsAnyoneIn(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", secret} {
		p := access.NewPolicy("127.0.0.1:8080", tokenOf(t, token))
		for _, authorization := range []string{"", "Bearer wrong", "Bearer " + secret} {
			if resp := serve(t, p, authorization); resp.StatusCode != http.StatusOK {
				t.Errorf("token %q, authorization %q: status %d, want 200 on loopback", token, authorization, resp.StatusCode)
			}
		}
	}
}

func TestPolicy_OperatorTellsTheDashboardsTwoAudiencesApart(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/dashboard", nil)
	withToken := httptest.NewRequest(http.MethodGet, "/dashboard", nil)
	withToken.SetBasicAuth("", secret)
	on := access.NewPolicy("127.0.0.1:8080", tokenOf(t, secret))
	off := access.NewPolicy("127.0.0.1:8080", nil)
	if on.Operator(r) || !on.Operator(withToken) {
		t.Errorf("with a token: Operator without a credential %v, with %v; want false, true", on.Operator(r), on.Operator(withToken))
	}
	if off.Operator(withToken) {
		t.Error("without a token configured, a request was taken for an operator's")
	}
	if (access.Policy{}).Operator(withToken) {
		t.Error("the zero Policy took a request for an operator's")
	}
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":         true,
		"127.0.0.1:0":            true,
		"127.8.9.10:80":          true,
		"[::1]:8080":             true,
		"::1":                    true,
		"[::1]":                  true,
		"[::ffff:127.0.0.1]:80":  true,
		"localhost:8080":         true,
		"LocalHost:8080":         true,
		"localhost":              true,
		"127.0.0.1":              true,
		"0.0.0.0:8080":           false,
		":8080":                  false,
		"":                       false,
		"[::]:8080":              false,
		"192.168.1.10:8080":      false,
		"10.0.0.1:8080":          false,
		"[fe80::1%eth0]:8080":    false,
		"example.org:8080":       false,
		"localhost.example:8080": false,
		"128.0.0.1:8080":         false,
	} {
		if got := access.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// recorder is a Lookup's Known that recognises one secret and records what
// it was asked and in which request's context.
type recorder struct {
	known string
	asked []string
}

type ctxKey struct{}

func (k *recorder) lookup() *access.Lookup {
	return access.NewLookup(func(ctx context.Context, secret string) (bool, error) {
		k.asked = append(k.asked, fmt.Sprintf("%s in %v", secret, ctx.Value(ctxKey{})))
		return secret == k.known, nil
	}, 0)
}

func TestLookup_TrustsWhatItRecognisedForAWhileAndThroughAnOutageOnly(t *testing.T) {
	t.Parallel()
	const named = "sfo_named-credential"
	var known bool
	var down error
	asked := 0
	l := access.NewLookup(func(ctx context.Context, secret string) (bool, error) {
		asked++
		return known, down
	}, time.Hour)
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+named)
	// Unknown, and the database down: refused.
	down = errors.New("database down")
	if l.Operator(r) {
		t.Error("a secret never recognised was let in while Known failed")
	}
	down = nil
	if l.Operator(r) || asked != 2 {
		t.Errorf("an unknown secret: let in, or not asked about (asked %d times)", asked)
	}
	known = true
	first, second := l.Operator(r), l.Operator(r)
	if !first || !second || asked != 3 {
		t.Errorf("a known secret is not trusted without asking again within Fresh (asked %d times)", asked)
	}
	// Past Fresh, it asks again: a secret revoked meanwhile is refused.
	l = access.NewLookup(func(ctx context.Context, secret string) (bool, error) { return known, down }, time.Nanosecond)
	if !l.Operator(r) {
		t.Fatal("a known secret refused")
	}
	down = errors.New("database down")
	if !l.Operator(r) {
		t.Error("a secret recognised before was refused while Known failed")
	}
	down, known = nil, false
	if l.Operator(r) {
		t.Error("a revoked secret is still let in once Fresh is past")
	}
	down = errors.New("database down")
	if l.Operator(r) {
		t.Error("a secret refused last was let in while Known failed")
	}
}

func TestLookup_AsksKnownOfTheBearerTokenOrBasicPasswordPresented(t *testing.T) {
	t.Parallel()
	const named = "sfo_named-credential"
	for _, tc := range []struct {
		name, authorization string
		want                bool
		asked               []string
	}{
		{"a known bearer token is accepted", "Bearer " + named, true, []string{named + " in request-1"}},
		{"a known basic password is accepted", basic("prometheus", named), true, []string{named + " in request-1"}},
		{"an unknown token is refused", "Bearer sfo_other", false, []string{"sfo_other in request-1"}},
		{"an empty bearer token is not looked up", "Bearer ", false, nil},
		{"an empty basic password is not looked up", basic("prometheus", ""), false, nil},
		{"another scheme is not looked up", "Token " + named, false, nil},
		{"no credential is not looked up", "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := &recorder{known: named}
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "request-1"))
			if tc.authorization != "" {
				r.Header.Set("Authorization", tc.authorization)
			}
			if got := k.lookup().Operator(r); got != tc.want {
				t.Errorf("Operator with %q = %v, want %v", tc.authorization, got, tc.want)
			}
			if !slices.Equal(k.asked, tc.asked) {
				t.Errorf("Known was asked %q, want %q (with the request's context)", k.asked, tc.asked)
			}
		})
	}
}

func TestAny_LetsInWhatAnyOfItsChecksRecognises(t *testing.T) {
	t.Parallel()
	token, err := access.NewToken(secret)
	if err != nil {
		t.Fatal(err)
	}
	const named = "sfo_named-credential"
	lookup := access.NewLookup(func(_ context.Context, s string) (bool, error) { return s == named, nil }, 0)
	either := access.Any{token, nil, lookup}
	for _, tc := range []struct {
		name   string
		checks access.Any
		auth   string
		want   bool
	}{
		{"the shared token passes the first check", either, "Bearer " + secret, true},
		{"a named credential passes the last", either, "Bearer " + named, true},
		{"a named credential as basic password passes", either, basic("me", named), true},
		{"what no check knows is refused", either, "Bearer sfo_other", false},
		{"no credential is refused", either, "", false},
		{"no checks refuse everyone", access.Any{}, "Bearer " + secret, false},
		{"nil checks refuse everyone", access.Any{nil, nil}, "Bearer " + secret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if got := tc.checks.Operator(r); got != tc.want {
				t.Errorf("Operator with %q = %v, want %v", tc.auth, got, tc.want)
			}
		})
	}

	p := access.Policy{Operators: either}
	for auth, want := range map[string]int{"Bearer " + named: http.StatusOK, "Bearer " + secret: http.StatusOK, "Bearer nope": http.StatusUnauthorized} {
		if resp := serve(t, p, auth); resp.StatusCode != want {
			t.Errorf("a policy beyond loopback with %q: %d, want %d", auth, resp.StatusCode, want)
		}
	}
}

func TestLookup_StopsAskingAboutAnAddressThatGuessedTooOften(t *testing.T) {
	t.Parallel()
	const good = "sfo_prometheus"
	asked := map[string]int{}
	l := access.NewLookup(func(ctx context.Context, secret string) (bool, error) {
		asked[secret]++
		return secret == good, nil
	}, time.Nanosecond)
	// Two refusals a minute per address, none refilled during the test.
	l.Failures = ratelimit.New(1.0/60, 2)
	from := func(addr, secret string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+secret)
		return r
	}
	// Prometheus, behind the same proxy as the guesser, is recognised once.
	if !l.Operator(from("10.0.0.9:4000", good)) {
		t.Fatal("the good secret was refused")
	}
	for i, guess := range []string{"guess-1", "guess-2", "guess-3", "guess-4"} {
		if l.Operator(from("10.0.0.9:4001", guess)) {
			t.Fatalf("guess %d let in", i+1)
		}
	}
	if asked["guess-1"] != 1 || asked["guess-2"] != 1 || asked["guess-3"] != 0 || asked["guess-4"] != 0 {
		t.Errorf("Known asked about %v; want the first two guesses only, the address throttled after them", asked)
	}
	// Another address is asked about as before.
	if l.Operator(from("10.0.0.10:4000", "guess-5")) || asked["guess-5"] != 1 {
		t.Errorf("a guess from another address: asked %d times, want once and refused", asked["guess-5"])
	}
	// A secret recognised before is still asked about from the throttled
	// address, and still lets Prometheus in.
	if !l.Operator(from("10.0.0.9:4000", good)) || asked[good] != 2 {
		t.Errorf("the good secret from the throttled address: asked %d times, want twice and let in", asked[good])
	}
}
