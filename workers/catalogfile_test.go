package workers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/workertest"
)

func TestLoadCatalog_TheBuiltInCatalogueFitsItsSchema(t *testing.T) {
	t.Parallel()
	c, err := workers.LoadCatalog(workers.BuiltInCatalog, schemas.Catalog)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	if len(c.Services) < 24 || len(c.Agencies) < 8 {
		t.Errorf("%d services of %d agencies; want at least 24 of 8", len(c.Services), len(c.Agencies))
	}
}

// builtIn returns the built-in catalogue as generic JSON, for a test to break.
func builtIn(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(schemas.Catalog, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func services(doc map[string]any) []any { return doc["services"].([]any) }

func service(doc map[string]any, i int) map[string]any { return services(doc)[i].(map[string]any) }

func attribute(doc map[string]any, s, a int) map[string]any {
	return service(doc, s)["attributes"].([]any)[a].(map[string]any)
}

func TestLoadCatalog_RefusesABrokenFileNamingFilePathAndReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(doc map[string]any)
		raw    string   // used instead of the mutated catalogue when set
		want   []string // after "catalogue services.json: "
	}{
		{
			name:   "a service name without Greek",
			mutate: func(doc map[string]any) { delete(service(doc, 3)["name"].(map[string]any), "el") },
			want:   []string{"services[3].name: ", `"el"`},
		},
		{
			name:   "an attribute with a datatype Open311 does not have",
			mutate: func(doc map[string]any) { attribute(doc, 0, 1)["datatype"] = "boolean" },
			want:   []string{"services[0].attributes[1].datatype: ", "'singlevaluelist'"},
		},
		{
			name:   "a list attribute without values",
			mutate: func(doc map[string]any) { delete(attribute(doc, 4, 1), "values") },
			want:   []string{"services[4].attributes[1]: ", "missing property 'values'"},
		},
		{
			name: "values on an attribute that is not a list",
			mutate: func(doc map[string]any) {
				attribute(doc, 0, 0)["values"] = []any{map[string]any{"key": "x", "name": map[string]any{"en": "X"}}}
			},
			want: []string{"services[0].attributes[0].values: ", "maxItems"},
		},
		{
			name:   "a service without an SLA",
			mutate: func(doc map[string]any) { delete(service(doc, 2), "sla_hours") },
			want:   []string{"services[2]: ", "missing property 'sla_hours'"},
		},
		{
			name:   "a negative SLA",
			mutate: func(doc map[string]any) { service(doc, 2)["sla_hours"] = -1 },
			want:   []string{"services[2].sla_hours: ", "exclusiveMinimum"},
		},
		{
			name:   "an unknown field",
			mutate: func(doc map[string]any) { service(doc, 5)["fee_eur"] = 10 },
			want:   []string{"services[5]: ", "'fee_eur'"},
		},
		{
			name:   "a required flag that is not a boolean",
			mutate: func(doc map[string]any) { attribute(doc, 1, 0)["required"] = "yes" },
			want:   []string{"services[1].attributes[0].required: ", "boolean"},
		},
		{
			name:   "a service code in upper case",
			mutate: func(doc map[string]any) { service(doc, 6)["code"] = "Passport" },
			want:   []string{"services[6].code: ", "'Passport'"},
		},
		{
			name:   "a service routed to an agency the catalogue lacks",
			mutate: func(doc map[string]any) { service(doc, 0)["agencies"] = []any{"imt", "nasa"} },
			want:   []string{"services[0].agencies[1]: ", `unknown agency "nasa"`},
		},
		{
			name:   "a label missing a declared language",
			mutate: func(doc map[string]any) { doc["languages"] = []any{"pt", "en", "es", "fr", "it", "el", "de"} },
			want:   []string{"service_notice: ", `"de"`},
		},
		{
			name:   "an attribute code reserved for the citizen",
			mutate: func(doc map[string]any) { attribute(doc, 0, 0)["code"] = "citizen_name" },
			want:   []string{"services[0].attributes[0].code: ", "reserved"},
		},
		{
			name: "a syntax error",
			raw:  "{\n  \"version\": \"1\",\n  \"agencies\": [,]\n}",
			want: []string{"line 3, column 16: not valid JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tt.raw)
			if tt.raw == "" {
				doc := builtIn(t)
				tt.mutate(doc)
				var err error
				if data, err = json.Marshal(doc); err != nil {
					t.Fatal(err)
				}
			}
			c, err := workers.LoadCatalog("services.json", data)
			if err == nil {
				t.Fatalf("LoadCatalog accepted a broken catalogue (%d services)", len(c.Services))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "catalogue services.json: ") {
				t.Errorf("error %q does not start by naming the file", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

// catalogueFile writes the built-in catalogue, changed by mutate, to path.
func writeCatalogue(t *testing.T, path string, mutate func(doc map[string]any)) {
	t.Helper()
	doc := builtIn(t)
	if mutate != nil {
		mutate(doc)
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename, as editors and deployment tools do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func version(v string) func(doc map[string]any) {
	return func(doc map[string]any) { doc["version"] = v }
}

func TestNewCatalogFile_RefusesToStartOnABrokenFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "services.json")
	writeCatalogue(t, path, func(doc map[string]any) { delete(service(doc, 0), "group") })
	_, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: path, Logger: quiet})
	if err == nil {
		t.Fatal("NewCatalogFile accepted a broken file")
	}
	if want := "catalogue " + path + ": services[0]: missing property 'group'"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	_, err = workers.NewCatalogFile(workers.CatalogFileConfig{Path: path + ".missing", Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("a missing file gave %v; want an error naming it", err)
	}
}

func TestCatalogFile_KeepsTheLastGoodCatalogueWhenAReloadFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "services.json")
	writeCatalogue(t, path, version("good-1"))
	var logs bytes.Buffer
	f, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: path, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if v := f.Current().Version; v != "good-1" {
		t.Fatalf("version %q at start, want good-1", v)
	}

	writeCatalogue(t, path, func(doc map[string]any) {
		doc["version"] = "broken"
		delete(service(doc, 3)["description"].(map[string]any), "fr")
	})
	err = f.Reload()
	if err == nil || !strings.Contains(err.Error(), "services[3].description") {
		t.Errorf("Reload of a broken file returned %v; want the path of the fault", err)
	}
	if v := f.Current().Version; v != "good-1" {
		t.Errorf("version %q after a failed reload, want the last good one, good-1", v)
	}
	if !strings.Contains(logs.String(), "keeping the last good one") || !strings.Contains(logs.String(), path) {
		t.Errorf("the refusal was not logged with the file: %s", logs.String())
	}

	writeCatalogue(t, path, func(doc map[string]any) {
		doc["version"] = "good-2"
		service(doc, 0)["sla_hours"] = 12
	})
	if err := f.Reload(); err != nil {
		t.Fatalf("Reload of a good file: %v", err)
	}
	c := f.Current()
	if svc, _ := c.Service(service(builtIn(t), 0)["code"].(string)); c.Version != "good-2" || svc.SLAHours != 12 {
		t.Errorf("after a good reload: version %q, SLA %v; want good-2 and 12", c.Version, svc.SLAHours)
	}
}

func TestCatalogFile_RunReloadsTheFileWhenItChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "services.json")
	writeCatalogue(t, path, version("v1"))
	var logs workertest.Log
	f, err := workers.NewCatalogFile(workers.CatalogFileConfig{
		Path: path, Every: 10 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "CatalogFile", f.Run)

	writeCatalogue(t, path, func(doc map[string]any) {
		doc["version"] = "v2"
		services := services(doc)
		doc["services"] = services[:len(services)-1]
	})
	workertest.WaitFor(t, "the changed file to be in force", func() error {
		if v := f.Current().Version; v != "v2" {
			return fmt.Errorf("version %q", v)
		}
		return nil
	})

	writeCatalogue(t, path, func(doc map[string]any) {
		doc["version"] = "v3-broken"
		doc["languages"] = []any{"el"}
	})
	workertest.WaitFor(t, "the broken change to be refused", func() error {
		if !strings.Contains(logs.String(), "catalogue refused") {
			return fmt.Errorf("logs: %s", logs.String())
		}
		return nil
	})
	if v := f.Current().Version; v != "v2" {
		t.Errorf("version %q after a broken change; want v2 kept", v)
	}

	writeCatalogue(t, path, version("v4"))
	workertest.WaitFor(t, "the repaired file to be in force", func() error {
		if v := f.Current().Version; v != "v4" {
			return fmt.Errorf("version %q", v)
		}
		return nil
	})
}

func TestCatalogFile_WithoutAPathServesTheBuiltInCatalogue(t *testing.T) {
	t.Parallel()
	f, err := workers.NewCatalogFile(workers.CatalogFileConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil {
		t.Errorf("Reload of the built-in catalogue: %v", err)
	}
	if got := len(f.Current().Services); got < 24 {
		t.Errorf("%d services, want the built-in catalogue's", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Run = %v after cancellation, want nil", err)
	}
}
