package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/httpadapter"
)

func TestLoadDeliveries_RefusesWhatCannotWorkAndAnySecretWrittenInIt(t *testing.T) {
	t.Parallel()
	catalog := eventstest.Catalog(t)
	for _, c := range []struct{ spec, want string }{
		{`{"tax": {"delivery": "http", "url": "https://tax.example/w", "signing_secret": "whsec_abc"}}`, "unknown field"},
		{`{"tax": {"delivery": "http", "url": "https://tax.example/w", "credential": "Bearer x", "signing_secret_env": "S"}}`, "unknown field"},
		{`{"tax": {"delivery": "http", "signing_secret_env": "S"}}`, "needs a url"},
		{`{"tax": {"delivery": "http", "url": "https://tax.example/w"}}`, "signing_secret_env or signing_secret_file"},
		{`{"tax": {"delivery": "http", "url": "https://tax.example/w", "signing_secret_env": "S", "signing_secret_file": "f"}}`, "not both"},
		{`{"tax": {"delivery": "http", "url": "https://tax.example/w", "signing_secret_env": "S", "credential_header": "X-Key"}}`, "credential_header needs"},
		{`{"tax": {"delivery": "nats", "url": "https://tax.example/w"}}`, "takes no other setting"},
		{`{"tax": {"delivery": "carrier-pigeon"}}`, "want simulated, http or nats"},
		{`{"taxes": {"delivery": "nats"}}`, "not in the catalogue"},
		{`{"tax": {"delivery": "nats"}`, "delivery configuration"},
		{filepath.Join(t.TempDir(), "missing.json"), "no such file"},
	} {
		if _, err := loadDeliveries(c.spec, catalog); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("loadDeliveries(%s) = %v, want an error saying %q", c.spec, err, c.want)
		}
	}
}

func TestLoadDeliveries_GivesEachAgencyItsOwnAndTheRestTheDefault(t *testing.T) {
	t.Parallel()
	catalog := eventstest.Catalog(t)
	file := filepath.Join(t.TempDir(), "delivery.json")
	spec := `{"justice": {"delivery": "nats"}, "tax": {"delivery": "http", "url": "https://tax.example/w", "signing_secret_file": "s"}}`
	if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{spec, file} {
		d, err := loadDeliveries(from, catalog)
		if err != nil {
			t.Fatal(err)
		}
		if d.of("justice").Mode != deliverNATS || d.of("tax").Mode != deliverHTTP || d.of("sns").Mode != deliverSimulated {
			t.Errorf("justice %q, tax %q, sns %q: want nats, http, simulated", d.of("justice").Mode, d.of("tax").Mode, d.of("sns").Mode)
		}
		adapters := d.adapterAgencies(catalog)
		if slices.Contains(adapters, "justice") || !slices.Contains(adapters, "tax") || !slices.Contains(adapters, "sns") {
			t.Errorf("the dispatcher's agencies %v: want all but justice", adapters)
		}
	}
	d, err := loadDeliveries(`{"*": {"delivery": "nats"}, "tax": {"delivery": "simulated"}}`, catalog)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.adapterAgencies(catalog); !slices.Equal(got, []string{"tax"}) {
		t.Errorf("with every agency but tax on NATS, the dispatcher's agencies are %v", got)
	}
	if d, err := loadDeliveries("", catalog); err != nil || len(d.adapterAgencies(catalog)) != len(catalog.AgencyCodes()) {
		t.Errorf("no configuration: %v, %d of %d agencies simulated", err, len(d.adapterAgencies(catalog)), len(catalog.AgencyCodes()))
	}
}

func TestDelivery_HTTPAdapterSendsTheCredentialFromItsFileAndSigns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := httpadapter.NewSigningSecret()
	write := func(name, value string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key, _ := httpadapter.ParseSigningSecret(secret)
	seen := make(chan string, 1)
	agency := httptest.NewServer(httpadapter.RequireSignature(key, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Agency-Key")
		w.Write([]byte(`{"status":"accepted"}`))
	})))
	t.Cleanup(agency.Close)
	e := delivery{Mode: deliverHTTP, URL: agency.URL + "/{agency}", CredentialHeader: "X-Agency-Key",
		CredentialFile: write("credential", "k-123"), SigningSecretFile: write("secret", secret)}
	client, err := e.httpAdapter()
	if err != nil {
		t.Fatal(err)
	}
	item := events.WorkItem{Schema: events.SchemaWorkItem, ID: events.WorkItemID("r1", "tax"), RequestID: "r1", Agency: "tax"}
	if r, err := client.Deliver(t.Context(), item); err != nil || r.Status != "accepted" {
		t.Fatalf("Deliver = %+v, %v", r, err)
	}
	if got := <-seen; got != "k-123" {
		t.Errorf("the agency got X-Agency-Key %q, want the file's k-123", got)
	}

	for name, broken := range map[string]delivery{
		"an empty environment variable": {Mode: deliverHTTP, URL: agency.URL, SigningSecretEnv: "SPOTFLOW_TEST_NO_SUCH_VARIABLE"},
		"a missing file":                {Mode: deliverHTTP, URL: agency.URL, SigningSecretFile: filepath.Join(dir, "none")},
		"a secret that is none":         {Mode: deliverHTTP, URL: agency.URL, SigningSecretFile: write("bad", "hunter2")},
	} {
		if _, err := broken.httpAdapter(); err == nil {
			t.Errorf("%s: an adapter was made", name)
		}
	}
}
