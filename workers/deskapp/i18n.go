package deskapp

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/spotflow/spotflow/events"
)

// translations are the application's texts in each language, read from
// web/i18n/<language>.json: a flat object of keys to texts, some with fmt
// verbs for their arguments. English holds every key; a test checks that
// every language does.
type translations struct {
	texts map[string]map[string]string
}

func loadTranslations() (*translations, error) {
	files, err := fs.Glob(web, "web/i18n/*.json")
	if err != nil {
		return nil, err
	}
	tr := &translations{texts: make(map[string]map[string]string, len(files))}
	for _, f := range files {
		b, err := web.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var texts map[string]string
		if err := json.Unmarshal(b, &texts); err != nil {
			return nil, fmt.Errorf("desk application: %s: %w", f, err)
		}
		tr.texts[strings.TrimSuffix(path.Base(f), ".json")] = texts
	}
	if tr.texts[events.DefaultLanguage] == nil {
		return nil, fmt.Errorf("desk application: no %s texts", events.DefaultLanguage)
	}
	return tr, nil
}

// text is key in lang (English when lang lacks it), formatted with args.
func (tr *translations) text(lang, key string, args ...any) string {
	s, ok := tr.texts[lang][key]
	if !ok {
		if s, ok = tr.texts[events.DefaultLanguage][key]; !ok {
			return key
		}
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// translator is text in one language.
func (tr *translations) translator(lang string) func(key string, args ...any) string {
	return func(key string, args ...any) string { return tr.text(lang, key, args...) }
}
