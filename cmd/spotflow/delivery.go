package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/simagency"
)

// How an agency receives its work items.
const (
	// deliverSimulated: an agency simulated in the dispatcher's process,
	// behaving as --agencies says. The default.
	deliverSimulated = "simulated"
	// deliverHTTP: the dispatcher posts each work item to the agency's own
	// URL, with its credential header and a signature.
	deliverHTTP = "http"
	// deliverNATS: the agency consumes its own queue with its own
	// credential; the dispatcher leaves it alone.
	deliverNATS = "nats"
)

// delivery is one agency's entry in the delivery configuration. Secrets are
// never written in it: it names the environment variable or the file that
// holds each.
type delivery struct {
	Mode string `json:"delivery"`
	// URL is where work items are posted (http); "{agency}" stands for the
	// agency's code.
	URL string `json:"url,omitempty"`
	// CredentialHeader carries the agency's credential on each delivery;
	// default Authorization. Its value is read from CredentialEnv or
	// CredentialFile, for example "Bearer 8f3…".
	CredentialHeader string `json:"credential_header,omitempty"`
	CredentialEnv    string `json:"credential_env,omitempty"`
	CredentialFile   string `json:"credential_file,omitempty"`
	// SigningSecretEnv or SigningSecretFile holds the secret deliveries are
	// signed with ("whsec_…", see httpadapter.SigningSecret). Required for
	// http.
	SigningSecretEnv  string `json:"signing_secret_env,omitempty"`
	SigningSecretFile string `json:"signing_secret_file,omitempty"`
}

// deliveries is the delivery configuration: an entry per agency code, and
// "*" for the agencies not listed.
type deliveries map[string]delivery

// loadDeliveries reads the delivery configuration: spec is a JSON object
// itself, or the path of a file that holds one; empty, every agency is
// simulated. Every code must be one of catalog's agencies, and every entry
// complete; secrets are read only when an adapter is made (httpAdapter).
func loadDeliveries(spec string, catalog *events.Catalog) (deliveries, error) {
	if spec == "" {
		return deliveries{}, nil
	}
	data := []byte(spec)
	if !strings.HasPrefix(strings.TrimSpace(spec), "{") {
		var err error
		if data, err = os.ReadFile(spec); err != nil {
			return nil, fmt.Errorf("delivery configuration: %w", err)
		}
	}
	var d deliveries
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("delivery configuration: %w (secrets go in the environment or files: credential_env, credential_file, signing_secret_env, signing_secret_file)", err)
	}
	for code, e := range d {
		if _, ok := catalog.Agency(code); !ok && code != "*" {
			return nil, fmt.Errorf("delivery configuration: agency %q is not in the catalogue", code)
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("delivery configuration: agency %q: %w", code, err)
		}
	}
	return d, nil
}

func (e delivery) check() error {
	switch e.Mode {
	case deliverSimulated, deliverNATS:
		if e != (delivery{Mode: e.Mode}) {
			return fmt.Errorf("%s delivery takes no other setting", e.Mode)
		}
	case deliverHTTP:
		switch {
		case e.URL == "":
			return errors.New("http delivery needs a url")
		case e.SigningSecretEnv == "" && e.SigningSecretFile == "":
			return errors.New("http delivery needs signing_secret_env or signing_secret_file")
		case e.SigningSecretEnv != "" && e.SigningSecretFile != "":
			return errors.New("give signing_secret_env or signing_secret_file, not both")
		case e.CredentialEnv != "" && e.CredentialFile != "":
			return errors.New("give credential_env or credential_file, not both")
		case e.CredentialHeader != "" && e.CredentialEnv == "" && e.CredentialFile == "":
			return errors.New("credential_header needs credential_env or credential_file")
		}
	default:
		return fmt.Errorf("delivery %q: want %s, %s or %s", e.Mode, deliverSimulated, deliverHTTP, deliverNATS)
	}
	return nil
}

// of is agency's entry: its own, else "*", else simulated.
func (d deliveries) of(agency string) delivery {
	if e, ok := d[agency]; ok {
		return e
	}
	if e, ok := d["*"]; ok {
		return e
	}
	return delivery{Mode: deliverSimulated}
}

// adapterAgencies are catalog's agencies the dispatcher delivers to through
// an adapter: all but those that consume their own queue over NATS.
func (d deliveries) adapterAgencies(catalog *events.Catalog) []string {
	return slices.DeleteFunc(catalog.AgencyCodes(), func(a string) bool { return d.of(a).Mode == deliverNATS })
}

// httpAdapter makes the adapter of an agency delivered to over HTTP,
// reading its secrets.
func (e delivery) httpAdapter() (*httpadapter.Client, error) {
	raw, err := secret("signing secret", e.SigningSecretEnv, e.SigningSecretFile)
	if err != nil {
		return nil, err
	}
	key, err := httpadapter.ParseSigningSecret(raw)
	if err != nil {
		return nil, err
	}
	cfg := httpadapter.Config{Endpoint: e.URL, SigningSecret: key}
	if e.CredentialEnv != "" || e.CredentialFile != "" {
		value, err := secret("credential", e.CredentialEnv, e.CredentialFile)
		if err != nil {
			return nil, err
		}
		cfg.Header = http.Header{cmp.Or(e.CredentialHeader, "Authorization"): {value}}
	}
	return httpadapter.New(cfg)
}

// secret reads what the environment variable env, or else the file file,
// holds, without surrounding white space; it must not be empty.
func secret(what, env, file string) (string, error) {
	var value string
	if env != "" {
		value = os.Getenv(env)
		if strings.TrimSpace(value) == "" {
			return "", fmt.Errorf("%s: the environment variable %s is empty or not set", what, env)
		}
	} else {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		value = string(data)
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", fmt.Errorf("%s: %s is empty", what, file)
	}
	return value, nil
}

// adapters connects the dispatcher to every agency of catalog but those
// that consume their own queue over NATS: over HTTP to those so configured,
// and to agencies simulated in this process for the rest.
func (m *Main) adapters(catalog *events.Catalog) (map[string]workers.Adapter, error) {
	d, err := loadDeliveries(m.Config.Delivery, catalog)
	if err != nil {
		return nil, err
	}
	profiles, err := simagency.ParseProfiles(m.Config.Agencies)
	if err != nil {
		return nil, err
	}
	adapters := make(map[string]workers.Adapter)
	m.agencies = make(map[string]*simagency.Agency)
	for _, code := range d.adapterAgencies(catalog) {
		switch e := d.of(code); e.Mode {
		case deliverHTTP:
			client, err := e.httpAdapter()
			if err != nil {
				return nil, fmt.Errorf("agency %s: %w", code, err)
			}
			adapters[code] = client
		default:
			a := simagency.New(code, simagency.For(profiles, code))
			adapters[code], m.agencies[code] = a, a
		}
	}
	return adapters, nil
}
