package workers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
)

// Catalogs gives the service catalogue in force. A parsed *events.Catalog is
// one that never changes; a *CatalogFile follows its file.
type Catalogs interface {
	Current() *events.Catalog
}

var (
	_ Catalogs = (*events.Catalog)(nil)
	_ Catalogs = (*CatalogFile)(nil)
)

// BuiltInCatalog names the catalogue compiled into spotflow in errors and logs.
const BuiltInCatalog = "schemas/catalog/services.json (built in)"

// LoadCatalog reads data, the catalogue file called name, checks it against
// the catalogue's JSON Schema (schemas/catalog/services.schema.json) and then
// against the rules no schema can express (a service names known agencies,
// every text is in every declared language, ...). The error names the file,
// the path inside it and the reason, e.g.
//
//	catalogue services.json: services[3].name: missing property 'el'
func LoadCatalog(name string, data []byte) (*events.Catalog, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("catalogue %s: %s", name, syntaxError(data, err))
	}
	schema, err := catalogSchema()
	if err != nil {
		return nil, err
	}
	if err := schema.Validate(doc); err != nil {
		var verr *jsonschema.ValidationError
		if errors.As(err, &verr) {
			path, reason := schemaError(verr)
			return nil, fmt.Errorf("catalogue %s: %s: %s", name, path, reason)
		}
		return nil, fmt.Errorf("catalogue %s: %w", name, err)
	}
	c, err := events.ParseCatalog(data)
	if err != nil {
		// ParseCatalog's messages start with what it was doing; the
		// path and reason follow.
		msg := err.Error()
		for _, prefix := range []string{"check catalogue: ", "parse catalogue: "} {
			msg = strings.TrimPrefix(msg, prefix)
		}
		return nil, fmt.Errorf("catalogue %s: %s", name, msg)
	}
	return c, nil
}

// catalogSchema compiles the catalogue's JSON Schema.
func catalogSchema() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemas.CatalogSchema))
	if err != nil {
		return nil, fmt.Errorf("catalogue schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	const url = "urn:spotflow:catalog:services.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("catalogue schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("catalogue schema: %w", err)
	}
	return s, nil
}

// syntaxError says where in data a JSON syntax error is, by line and column.
func syntaxError(data []byte, err error) string {
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	if offset < 0 {
		return "not valid JSON: " + err.Error()
	}
	// The offset counts the bytes read, the faulty one included.
	before := data[:max(0, min(int(offset)-1, len(data)))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d: not valid JSON: %v", line, col, err)
}

var english = message.NewPrinter(language.English)

// schemaError picks the most specific of a validation error's causes: the
// first of those deepest in the document.
func schemaError(e *jsonschema.ValidationError) (path, reason string) {
	var best *jsonschema.ValidationError
	var walk func(*jsonschema.ValidationError)
	walk = func(v *jsonschema.ValidationError) {
		if len(v.Causes) == 0 && (best == nil || len(v.InstanceLocation) > len(best.InstanceLocation)) {
			best = v
		}
		for _, c := range v.Causes {
			walk(c)
		}
	}
	walk(e)
	return jsonPath(best.InstanceLocation), best.ErrorKind.LocalizedString(english)
}

// jsonPath writes a location as services[3].name, the way people read it.
func jsonPath(tokens []string) string {
	if len(tokens) == 0 {
		return "top level"
	}
	var b strings.Builder
	for _, tok := range tokens {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// CatalogFileConfig configures a CatalogFile.
type CatalogFileConfig struct {
	// Path of the catalogue file. Empty means the built-in catalogue, which
	// never changes.
	Path string
	// Every is how often Run looks at the file for changes. Default 2
	// seconds.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// CatalogFile is the catalogue read from a file, kept current: Run reloads
// the file when it changes, and Reload does so on demand (spotflow calls it
// on SIGHUP). A file that does not load is refused, logged, and the last good
// catalogue stays in force. Current is safe for concurrent use.
//
// A reload changes what desks see and submit and where requests are routed;
// an agency the file adds gets its queue and adapter at the next restart, and
// until then its work items wait in its queue.
type CatalogFile struct {
	cfg     CatalogFileConfig
	current atomic.Pointer[events.Catalog]

	mu    sync.Mutex // serialises reloads
	stamp fileStamp  // of the file last read, good or not
	sum   [32]byte   // of the content last loaded
}

// fileStamp tells whether a file changed without reading it.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// NewCatalogFile loads the catalogue; a catalogue that does not load is an
// error naming the file, the path inside it and the reason.
func NewCatalogFile(cfg CatalogFileConfig) (*CatalogFile, error) {
	cfg.Every = cmp.Or(cfg.Every, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	f := &CatalogFile{cfg: cfg}
	if cfg.Path == "" {
		c, err := LoadCatalog(BuiltInCatalog, schemas.Catalog)
		if err != nil {
			return nil, err
		}
		f.current.Store(c)
		return f, nil
	}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Current returns the catalogue in force.
func (f *CatalogFile) Current() *events.Catalog { return f.current.Load() }

// Reload reads the file again. When it does not load, the error says why
// and the catalogue in force stays.
func (f *CatalogFile) Reload() error {
	if f.cfg.Path == "" {
		return nil
	}
	changed, err := f.reload()
	switch {
	case err != nil:
		f.cfg.Logger.Error("catalogue refused; keeping the last good one", "file", f.cfg.Path,
			"err", err.Error(), "version", f.Current().Version)
	case changed:
		f.cfg.Logger.Info("catalogue reloaded", "file", f.cfg.Path, "version", f.Current().Version,
			"services", len(f.Current().Services))
	}
	return err
}

// reload loads the file and, if it loads, puts it in force; it reports
// whether the catalogue in force changed.
func (f *CatalogFile) reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, err := os.Stat(f.cfg.Path)
	if err != nil {
		return false, fmt.Errorf("catalogue %s: %w", f.cfg.Path, err)
	}
	data, err := os.ReadFile(f.cfg.Path)
	if err != nil {
		return false, fmt.Errorf("catalogue %s: %w", f.cfg.Path, err)
	}
	f.stamp = fileStamp{size: info.Size(), modTime: info.ModTime()}
	sum := sha256.Sum256(data)
	if old := f.Current(); old != nil && sum == f.sum {
		return false, nil
	}
	c, err := LoadCatalog(f.cfg.Path, data)
	if err != nil {
		return false, err
	}
	if old := f.Current(); old != nil {
		for _, code := range c.AgencyCodes() {
			if !slices.Contains(old.AgencyCodes(), code) {
				f.cfg.Logger.Warn("catalogue adds an agency: its work items wait in its queue until spotflow restarts",
					"file", f.cfg.Path, "agency", code)
			}
		}
	}
	f.sum = sum
	f.current.Store(c)
	return true, nil
}

// Run looks at the file every Every and reloads it when its size or
// modification time changed, until ctx ends; it returns nil then. Without a
// file it only waits for ctx.
func (f *CatalogFile) Run(ctx context.Context) error {
	if f.cfg.Path == "" {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(f.cfg.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		info, err := os.Stat(f.cfg.Path)
		if err != nil {
			continue // being replaced, perhaps; the next look will tell
		}
		f.mu.Lock()
		same := f.stamp.size == info.Size() && f.stamp.modTime.Equal(info.ModTime())
		f.mu.Unlock()
		if !same {
			_ = f.Reload() // logged; the last good catalogue stays
		}
	}
}
