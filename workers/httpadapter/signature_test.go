package httpadapter_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/httpadapter"
)

// The example of the Standard Webhooks specification: its secret, message
// ID, timestamp and payload, and the signature it gives for them.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSigningSecret_SignsAsTheSpecificationsExample(t *testing.T) {
	t.Parallel()
	k, err := httpadapter.ParseSigningSecret(specSecret + "\n")
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	at := time.Unix(specTimestamp, 0)
	k.Sign(h, specID, at, []byte(specPayload))
	if got := h.Get(httpadapter.HeaderSignature); got != specSignature {
		t.Errorf("signature = %q, want %q", got, specSignature)
	}
	if h.Get(httpadapter.HeaderID) != specID || h.Get(httpadapter.HeaderTimestamp) != "1614265330" {
		t.Errorf("headers = %v", h)
	}
	if err := k.Verify(h, []byte(specPayload), at.Add(time.Minute)); err != nil {
		t.Errorf("Verify of its own signature: %v", err)
	}
}

func TestSigningSecret_VerifyRefusesWhatWasNotSignedThusNowWithIt(t *testing.T) {
	t.Parallel()
	k, _ := httpadapter.ParseSigningSecret(specSecret)
	other, _ := httpadapter.ParseSigningSecret(httpadapter.NewSigningSecret())
	at := time.Unix(specTimestamp, 0)
	signed := func() http.Header {
		h := http.Header{}
		k.Sign(h, specID, at, []byte(specPayload))
		return h
	}
	cases := []struct {
		name   string
		header func() http.Header
		body   string
		now    time.Time
	}{
		{"a body changed", signed, `{"test": 2432232315}`, at},
		{"another ID", func() http.Header { h := signed(); h.Set(httpadapter.HeaderID, "msg_other"); return h }, specPayload, at},
		{"another timestamp", func() http.Header { h := signed(); h.Set(httpadapter.HeaderTimestamp, "1614265331"); return h }, specPayload, at},
		{"too old", signed, specPayload, at.Add(httpadapter.SignatureTolerance + time.Second)},
		{"from the future", signed, specPayload, at.Add(-httpadapter.SignatureTolerance - time.Second)},
		{"no signature", func() http.Header { h := signed(); h.Del(httpadapter.HeaderSignature); return h }, specPayload, at},
		{"signed with another secret", func() http.Header {
			h := http.Header{}
			other.Sign(h, specID, at, []byte(specPayload))
			return h
		}, specPayload, at},
		{"an unknown version", func() http.Header {
			h := signed()
			h.Set(httpadapter.HeaderSignature, strings.Replace(h.Get(httpadapter.HeaderSignature), "v1,", "v2,", 1))
			return h
		}, specPayload, at},
	}
	for _, c := range cases {
		if err := k.Verify(c.header(), []byte(c.body), c.now); !errors.Is(err, httpadapter.ErrSignature) {
			t.Errorf("%s: Verify = %v, want ErrSignature", c.name, err)
		}
	}
	// Several signatures, as during a rotation: one that matches is enough.
	h := signed()
	h.Set(httpadapter.HeaderSignature, "v1,bm9wZQ== "+h.Get(httpadapter.HeaderSignature))
	if err := k.Verify(h, []byte(specPayload), at); err != nil {
		t.Errorf("one matching signature among several: %v", err)
	}
}

func TestParseSigningSecret_RefusesWhatIsNoSecret(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := httpadapter.ParseSigningSecret(s); err == nil {
			t.Errorf("ParseSigningSecret(%q) = nil error", s)
		}
	}
	a, b := httpadapter.NewSigningSecret(), httpadapter.NewSigningSecret()
	if a == b {
		t.Error("two new secrets are equal")
	}
	if _, err := httpadapter.ParseSigningSecret(a); err != nil {
		t.Errorf("a new secret does not parse: %v", err)
	}
}

func TestClient_SignsEveryDeliveryAndAnAgencyThatChecksAcceptsOnlyThose(t *testing.T) {
	t.Parallel()
	secret := httpadapter.NewSigningSecret()
	k, _ := httpadapter.ParseSigningSecret(secret)
	bodies := make(chan string, 1)
	agency := httptest.NewServer(httpadapter.RequireSignature(k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bodies <- string(body)
		io.WriteString(w, `{"status":"accepted"}`)
	})))
	t.Cleanup(agency.Close)
	endpoint := agency.URL + "/agencies/{agency}/work-items"

	signing, err := httpadapter.New(httpadapter.Config{Endpoint: endpoint, SigningSecret: k})
	if err != nil {
		t.Fatal(err)
	}
	item := workItem("tax")
	r, err := signing.Deliver(t.Context(), item)
	if err != nil || r.Status != "accepted" {
		t.Fatalf("signed delivery: %+v, %v", r, err)
	}
	if body := <-bodies; !strings.Contains(body, `"id":"req-1.tax"`) {
		t.Errorf("the agency read %s, not the work item", body)
	}

	// Unsigned, or signed with another secret: refused, permanently.
	otherKey, _ := httpadapter.ParseSigningSecret(httpadapter.NewSigningSecret())
	for name, cfg := range map[string]httpadapter.Config{
		"unsigned":             {Endpoint: endpoint},
		"another agency's key": {Endpoint: endpoint, SigningSecret: otherKey},
	} {
		c, err := httpadapter.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var serr *httpadapter.StatusError
		if _, err := c.Deliver(t.Context(), item); !errors.As(err, &serr) || serr.Code != http.StatusUnauthorized {
			t.Errorf("%s: Deliver = %v, want a 401 from the agency", name, err)
		}
	}
}
