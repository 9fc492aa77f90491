package deskapp_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/workers"
)

func readTexts(t *testing.T, lang string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("web", "i18n", lang+".json"))
	if err != nil {
		t.Fatalf("the desk application has no %s texts: %v", lang, err)
	}
	var texts map[string]string
	if err := json.Unmarshal(b, &texts); err != nil {
		t.Fatalf("%s.json: %v", lang, err)
	}
	return texts
}

var verbs = regexp.MustCompile(`%[sdv%]`)

func TestTexts_EveryLanguageOfTheCatalogueHasEveryTextWithTheSameArguments(t *testing.T) {
	t.Parallel()
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{})
	if err != nil {
		t.Fatal(err)
	}
	en := readTexts(t, "en")
	for _, lang := range catalog.Current().Languages {
		texts := readTexts(t, lang)
		for k, v := range en {
			got, ok := texts[k]
			switch {
			case !ok || strings.TrimSpace(got) == "":
				t.Errorf("%s: no text for %q", lang, k)
			case !slices.Equal(verbs.FindAllString(got, -1), verbs.FindAllString(v, -1)):
				t.Errorf("%s: %q has arguments %q, English %q", lang, k, verbs.FindAllString(got, -1), verbs.FindAllString(v, -1))
			case lang != "en" && got == v && len(v) > 12 && !strings.Contains(v, "spotflow"):
				t.Errorf("%s: %q is the English text, untranslated: %q", lang, k, v)
			}
		}
		for k := range texts {
			if _, ok := en[k]; !ok {
				t.Errorf("%s: %q is no text of the application", lang, k)
			}
		}
	}
}

// usedKeys are the texts the templates and the code ask for by a literal
// key; keys made at run time (status., title., notice.) are checked by
// their own lists.
func usedKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	literal := regexp.MustCompile(`(?:\.T |text\([a-zA-Z.]+, |\bt\()"([a-z0-9_.-]+)"`)
	for _, glob := range []string{"web/*.html", "web/pages/*.html", "*.go"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, _ := os.ReadFile(f)
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				if !strings.HasSuffix(m[1], ".") { // a prefix, completed at run time
					keys = append(keys, m[1])
				}
			}
		}
	}
	pages, _ := filepath.Glob("web/pages/*.html")
	for _, p := range pages {
		keys = append(keys, "title."+strings.TrimSuffix(filepath.Base(p), ".html"))
	}
	for _, s := range []string{"open", "closed", "submitted", "routed", "dispatched", "accepted", "in_progress", "completed", "rejected", "failed"} {
		keys = append(keys, "status."+s)
	}
	return append(keys, "notice.visit-ended", "notice.no-visit", "language.name", "error.title.prefix")
}

func TestTexts_EveryTextAskedForExists(t *testing.T) {
	t.Parallel()
	en := readTexts(t, "en")
	for _, k := range usedKeys(t) {
		if _, ok := en[k]; !ok {
			t.Errorf("%q is asked for but has no English text", k)
		}
	}
}

func TestPages_LoadNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	external := regexp.MustCompile(`(?i)(src|href|action|url\()\s*=?\s*["']?(https?:)?//`)
	for _, glob := range []string{"web/*.html", "web/pages/*.html", "web/static/*"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if m := external.Find(b); m != nil {
				t.Errorf("%s refers elsewhere: %s", f, m)
			}
			if strings.HasSuffix(f, ".html") && regexp.MustCompile(`<script>| style="| on[a-z]+="`).Match(b) {
				t.Errorf("%s has inline script or style, which the Content-Security-Policy forbids", f)
			}
		}
	}
}
