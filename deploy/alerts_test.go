package deploy_test

// The alerting rules in prometheus/alerts.yml, checked against what they
// depend on: the rule file's format (decoded strictly), the runbook in
// docs/operations.md (each rule's runbook_url names a section of it, and
// each section there names a rule), and the metrics spotflow exports, read
// from the Go source that registers them. With promtool on PATH, also
// `promtool check rules` and, for every alert, scenarios it must fire in
// and scenarios it must stay quiet in (`promtool test rules`).

import (
	"bytes"
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
	"unicode"

	"sigs.k8s.io/yaml"
)

const (
	// alertsFile is the rule file, relative to this package.
	alertsFile = "prometheus/alerts.yml"
	// runbookFile is the runbook the rules point at.
	runbookFile = "../docs/operations.md"
	// runbookSection is the runbook's section with a subsection per alert.
	runbookSection = "What each alert means"
	// moduleRoot is the root of the module, whose source registers the
	// metrics.
	moduleRoot = ".."
)

// severities are the values of the severity label Alertmanager routes on.
var severities = []string{"page", "ticket"}

// A Prometheus rule file, as far as spotflow's uses it; decoded strictly, a
// field it does not name is refused (a misspelt "for", an annotation other
// than these three, a recording rule).
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string      `json:"name"`
	Rules []alertRule `json:"rules"`
}

type alertRule struct {
	Alert       string           `json:"alert"`
	Expr        string           `json:"expr"`
	For         string           `json:"for"`
	Labels      alertLabels      `json:"labels"`
	Annotations alertAnnotations `json:"annotations"`
}

type alertLabels struct {
	Severity string `json:"severity"`
}

type alertAnnotations struct {
	Summary     string `json:"summary"`
	Description string `json:"description"`
	RunbookURL  string `json:"runbook_url"`
}

func decodeRules(data []byte) (*ruleFile, error) {
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func loadRules(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeRules(data)
	if err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		if g.Name == "" {
			t.Errorf("%s: a group has no name", alertsFile)
		}
		if len(g.Rules) == 0 {
			t.Errorf("%s: group %q has no rules", alertsFile, g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s holds no rules", alertsFile)
	}
	return rules
}

func TestAlertRules_DecodeStrictly(t *testing.T) {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeRules(data); err != nil {
		t.Fatalf("%s does not decode strictly: %v", alertsFile, err)
	}
	// What a strict decoder must refuse, made from the real file.
	for name, change := range map[string]struct{ old, new string }{
		"a misspelt annotation":    {"runbook_url:", "runbook:"},
		"a misspelt for":           {"for: 3m", "for_: 3m"},
		"a label besides severity": {"severity: page", "severity: page\n          team: ops"},
		"a key twice":              {"for: 3m", "for: 3m\n        for: 5m"},
	} {
		changed := strings.Replace(string(data), change.old, change.new, 1)
		if changed == string(data) {
			t.Fatalf("%s: %q is not in %s", name, change.old, alertsFile)
		}
		if _, err := decodeRules([]byte(changed)); err == nil {
			t.Errorf("%s: decoded without error, want it refused", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}

// promDuration is Prometheus's duration: units from years to milliseconds,
// each at most once, largest first.
var promDuration = regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$`)

func parsePromDuration(s string) (time.Duration, error) {
	m := promDuration.FindStringSubmatch(s)
	if s == "" || m == nil {
		return 0, fmt.Errorf("%q is not a Prometheus duration", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second, time.Millisecond}
	var d time.Duration
	for i, unit := range units {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil {
				return 0, err
			}
			d += time.Duration(n) * unit
		}
	}
	return d, nil
}

// alertName is how spotflow names its alerts.
var alertName = regexp.MustCompile(`^Spotflow[A-Z][A-Za-z0-9]*$`)

func TestAlertRules_AreComplete(t *testing.T) {
	rules := loadRules(t)
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	var base string
	for _, r := range rules {
		name := cmp.Or(r.Alert, "(unnamed)")
		if r.Alert == "" {
			t.Errorf("a rule has no alert name (expr %q)", r.Expr)
		} else if !alertName.MatchString(r.Alert) {
			t.Errorf("%s: the name is not Spotflow followed by CamelCase", name)
		}
		if seen[r.Alert] {
			t.Errorf("%s: two rules have this name", name)
		}
		seen[r.Alert] = true
		if strings.TrimSpace(r.Expr) == "" {
			t.Errorf("%s: no expr", name)
		}
		if r.For == "" {
			t.Errorf("%s: no for", name)
		} else if _, err := parsePromDuration(r.For); err != nil {
			t.Errorf("%s: for: %v", name, err)
		}
		if !slices.Contains(severities, r.Labels.Severity) {
			t.Errorf("%s: severity %q, want one of %v", name, r.Labels.Severity, severities)
		}
		for what, text := range map[string]string{"summary": r.Annotations.Summary, "description": r.Annotations.Description} {
			if strings.TrimSpace(text) == "" {
				t.Errorf("%s: no %s", name, what)
				continue
			}
			if _, err := parseAnnotation(text); err != nil {
				t.Errorf("%s: %s: %v", name, what, err)
			}
		}
		if strings.Contains(r.Annotations.Summary, "\n") {
			t.Errorf("%s: the summary holds a line break; it is one line in a notification", name)
		}

		u, err := url.Parse(r.Annotations.RunbookURL)
		switch {
		case r.Annotations.RunbookURL == "":
			t.Errorf("%s: no runbook_url", name)
			continue
		case err != nil:
			t.Errorf("%s: runbook_url: %v", name, err)
			continue
		case u.Scheme != "https" || u.Host == "" || !strings.HasSuffix(u.Path, "/docs/operations.md"):
			t.Errorf("%s: runbook_url %q is not an https address of docs/operations.md", name, r.Annotations.RunbookURL)
		}
		if b, _, _ := strings.Cut(r.Annotations.RunbookURL, "#"); base == "" {
			base = b
		} else if b != base {
			t.Errorf("%s: runbook_url %q is not under %s, as the other rules' are", name, r.Annotations.RunbookURL, base)
		}
		switch where, ok := anchors.all[u.Fragment]; {
		case u.Fragment == "":
			t.Errorf("%s: runbook_url %q names no section", name, r.Annotations.RunbookURL)
		case !ok:
			t.Errorf("%s: runbook_url %q: %s has no heading with the anchor #%s", name, r.Annotations.RunbookURL, runbookFile, u.Fragment)
		case !anchors.alerts[u.Fragment]:
			t.Errorf("%s: runbook_url %q: %s (%s) is not a subsection of %q", name, r.Annotations.RunbookURL, u.Fragment, where, runbookSection)
		}
	}
	// Every subsection of the alerts' section is some alert's runbook.
	for anchor := range anchors.alerts {
		used := slices.ContainsFunc(rules, func(r alertRule) bool { return strings.HasSuffix(r.Annotations.RunbookURL, "#"+anchor) })
		if !used {
			t.Errorf("%s: the subsection #%s of %q is no alert's runbook_url", runbookFile, anchor, runbookSection)
		}
	}
}

// The headings of the runbook, by their anchor.
type headingAnchors struct {
	all    map[string]string // anchor → "line N: heading"
	alerts map[string]bool   // the anchors of runbookSection's subsections
}

var (
	headingLine = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	fenceLine   = regexp.MustCompile("^ {0,3}(```|~~~)")
	mdLink      = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// slug is the anchor GitHub gives a heading: its text in lower case,
// without characters other than letters, digits, marks, '_', '-' and
// spaces, spaces turned into hyphens.
func slug(heading string) string {
	heading = mdLink.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func runbookAnchors(t *testing.T) headingAnchors {
	t.Helper()
	data, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	h := headingAnchors{all: map[string]string{}, alerts: map[string]bool{}}
	count := map[string]int{}
	inFence, inSection, found := false, false, false
	for i, line := range strings.Split(string(data), "\n") {
		if fenceLine.MatchString(line) {
			inFence = !inFence
			continue
		}
		m := headingLine.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		level, text := len(m[1]), m[2]
		anchor := slug(text)
		if n := count[anchor]; n > 0 {
			anchor = fmt.Sprintf("%s-%d", anchor, n)
		}
		count[slug(text)]++
		h.all[anchor] = fmt.Sprintf("line %d: %s", i+1, text)
		switch {
		case level <= 2:
			inSection = level == 2 && text == runbookSection
			found = found || inSection
		case level == 3 && inSection:
			h.alerts[anchor] = true
		}
	}
	if !found {
		t.Fatalf("%s has no section %q", runbookFile, runbookSection)
	}
	return h
}

// The template functions Prometheus gives alerts' annotations; stubs, since
// the templates are only parsed.
var promTemplateFuncs = func() template.FuncMap {
	funcs := template.FuncMap{}
	for _, name := range []string{"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml",
		"match", "title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel", "humanize", "humanize1024",
		"humanizeDuration", "humanizePercentage", "humanizeTimestamp", "toTime", "toDuration", "pathPrefix",
		"externalURL", "parseDuration", "stripPort", "stripDomain", "now", "urlQueryEscape"} {
		funcs[name] = func(...any) any { return nil }
	}
	return funcs
}()

// parseAnnotation parses an annotation as Prometheus expands it, with
// $labels defined; spotflow's annotations use $labels only, so that they
// read the same in every notification (and the promtool scenarios can
// expect them).
func parseAnnotation(text string) (*template.Template, error) {
	return template.New("annotation").Option("missingkey=error").Funcs(promTemplateFuncs).
		Parse("{{$labels := .Labels}}" + text)
}

// renderAnnotation expands text for an alert whose expression gave labels.
func renderAnnotation(text string, labels map[string]string) (string, error) {
	tmpl, err := parseAnnotation(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, struct{ Labels map[string]string }{labels}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// The metrics spotflow exports, read from the source that registers them.
type exportedMetrics struct {
	names  map[string]string // metric name (histograms' series too) → where it is defined
	labels map[string]bool   // every label a metric has, and the scrape's own
}

// metricPackages are the import paths whose constructors make metrics.
var metricPackages = []string{"github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang/prometheus/promauto"}

// metricConstructors are the constructors taking Opts, with the series a
// metric of each kind exports beside its name.
var metricConstructors = map[string][]string{
	"NewCounter": nil, "NewCounterVec": nil, "NewCounterFunc": nil,
	"NewGauge": nil, "NewGaugeVec": nil, "NewGaugeFunc": nil, "NewUntypedFunc": nil,
	"NewHistogram": {"_bucket", "_sum", "_count"}, "NewHistogramVec": {"_bucket", "_sum", "_count"},
	"NewSummary": {"_sum", "_count"}, "NewSummaryVec": {"_sum", "_count"},
}

// scrapeLabels are the labels Prometheus gives every series of a target,
// and those of histograms' and summaries' series.
var scrapeLabels = []string{"job", "instance", "__name__"}

// readExportedMetrics parses every non-test Go file of the module that
// imports client_golang and collects the Name of every Opts literal passed
// to a metric constructor, the first argument of every NewDesc, and their
// variable labels. A name it cannot read as a string literal fails the
// test: it could not be checked.
func readExportedMetrics(t *testing.T) exportedMetrics {
	t.Helper()
	m := exportedMetrics{names: map[string]string{"up": "Prometheus, for every target"}, labels: map[string]bool{}}
	for _, l := range scrapeLabels {
		m.labels[l] = true
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != moduleRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(src, []byte("github.com/prometheus/client_golang/prometheus")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		collectMetrics(t, fset, f, &m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func collectMetrics(t *testing.T, fset *token.FileSet, f *ast.File, m *exportedMetrics) {
	t.Helper()
	pkgs := map[string]bool{} // the names the file imports metricPackages under
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if !slices.Contains(metricPackages, p) {
			continue
		}
		name := filepath.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		pkgs[name] = true
	}
	if len(pkgs) == 0 {
		return
	}
	// Label lists held in variables (labels := []string{...}), by name; a
	// name given two different lists cannot be resolved.
	lists := map[string][]string{}
	ambiguous := map[string]bool{}
	define := func(name *ast.Ident, value ast.Expr) {
		l, ok := value.(*ast.CompositeLit)
		if !ok {
			return
		}
		if old, seen := lists[name.Name]; seen && !slices.Equal(old, stringList(l)) {
			ambiguous[name.Name] = true
		}
		lists[name.Name] = stringList(l)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range n.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && len(n.Rhs) == len(n.Lhs) {
					define(id, n.Rhs[i])
				}
			}
		case *ast.ValueSpec:
			for i, id := range n.Names {
				if i < len(n.Values) {
					define(id, n.Values[i])
				}
			}
		}
		return true
	})
	labelsOf := func(where string, e ast.Expr) []string {
		switch e := e.(type) {
		case nil:
			return nil
		case *ast.Ident:
			l, ok := lists[e.Name]
			switch {
			case e.Name == "nil":
			case !ok || ambiguous[e.Name]:
				t.Errorf("%s: the labels %s are not one []string literal of the file; the test cannot read them", where, e.Name)
			}
			return l
		case *ast.CompositeLit:
			return stringList(e)
		}
		t.Errorf("%s: the labels are neither a []string literal nor a variable holding one; the test cannot read them", where)
		return nil
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || !pkgs[x.Name] {
			return true
		}
		where := fset.Position(call.Pos()).String()
		add := func(name string, suffixes []string, labels ast.Expr) {
			m.names[name] = where
			for _, s := range suffixes {
				m.names[name+s] = where
				switch s {
				case "_bucket":
					m.labels["le"] = true
				case "_sum":
					if !slices.Contains(suffixes, "_bucket") {
						m.labels["quantile"] = true
					}
				}
			}
			for _, l := range labelsOf(where, labels) {
				m.labels[l] = true
			}
		}
		if sel.Sel.Name == "NewDesc" {
			if len(call.Args) < 3 {
				t.Errorf("%s: NewDesc with %d arguments", where, len(call.Args))
				return true
			}
			name, ok := stringLiteral(call.Args[0])
			if !ok {
				t.Errorf("%s: NewDesc's name is not a string literal; the test cannot read it", where)
				return true
			}
			add(name, nil, call.Args[2])
			return true
		}
		suffixes, ok := metricConstructors[sel.Sel.Name]
		if !ok || len(call.Args) == 0 {
			return true
		}
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			t.Errorf("%s: %s's options are not a literal; the test cannot read the metric's name", where, sel.Sel.Name)
			return true
		}
		var name string
		for _, elt := range opts.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			switch key, _ := kv.Key.(*ast.Ident); {
			case key == nil:
			case key.Name == "Name":
				if name, ok = stringLiteral(kv.Value); !ok {
					t.Errorf("%s: %s's Name is not a string literal; the test cannot read it", where, sel.Sel.Name)
				}
			case key.Name == "Namespace" || key.Name == "Subsystem" || key.Name == "ConstLabels":
				t.Errorf("%s: %s sets %s; the test reads only the Name of a metric", where, sel.Sel.Name, key.Name)
			}
		}
		if name == "" {
			t.Errorf("%s: %s without a Name", where, sel.Sel.Name)
			return true
		}
		var labels ast.Expr
		if strings.HasSuffix(sel.Sel.Name, "Vec") && len(call.Args) > 1 {
			labels = call.Args[1]
		}
		add(name, suffixes, labels)
		return true
	})
}

func stringLiteral(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// stringList is the string literals of a []string{...} literal.
func stringList(e ast.Expr) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, elt := range lit.Elts {
		if s, ok := stringLiteral(elt); ok {
			out = append(out, s)
		}
	}
	return out
}

// What a PromQL expression refers to: the metrics it selects and the label
// names of its matchers and grouping clauses.
type promqlRefs struct {
	metrics []string
	labels  []string
}

type promqlToken struct {
	kind byte // 'i' identifier, 'n' number or duration, 's' string, 'p' punctuation
	text string
}

// tokenizePromQL splits expr into identifiers, numbers (and durations),
// strings and punctuation; comments are dropped.
func tokenizePromQL(expr string) ([]promqlToken, error) {
	var toks []promqlToken
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, promqlToken{'s', expr[i : j+1]})
			i = j + 1
		case isDigit(c) || c == '.' && i+1 < len(expr) && isDigit(expr[i+1]):
			j := i
			for j < len(expr) && (isIdent(expr[j]) || expr[j] == '.') {
				j++
			}
			toks = append(toks, promqlToken{'n', expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			toks = append(toks, promqlToken{'i', expr[i:j]})
			i = j
		default:
			if i+1 < len(expr) && slices.Contains([]string{"==", "!=", ">=", "<=", "=~", "!~"}, expr[i:i+2]) {
				toks = append(toks, promqlToken{'p', expr[i : i+2]})
				i += 2
				continue
			}
			toks = append(toks, promqlToken{'p', expr[i : i+1]})
			i++
		}
	}
	return toks, nil
}

var (
	promqlGrouping   = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	promqlKeywords   = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
	promqlAggregates = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)

// scanPromQL finds what expr refers to. It is no parser: it knows enough
// of PromQL's shape to tell a metric's name from a function's, a keyword
// or a label's, and it refuses unbalanced brackets and malformed matchers.
func scanPromQL(expr string) (promqlRefs, error) {
	toks, err := tokenizePromQL(expr)
	if err != nil {
		return promqlRefs{}, err
	}
	var refs promqlRefs
	var open []string // the brackets open
	next := func(i int) promqlToken {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return promqlToken{}
	}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		switch {
		case tok.kind == 'p' && tok.text == "(":
			open = append(open, "(")
		case tok.kind == 'p' && tok.text == ")":
			if len(open) == 0 || open[len(open)-1] != "(" {
				return refs, fmt.Errorf("unbalanced )")
			}
			open = open[:len(open)-1]
		case tok.kind == 'p' && (tok.text == "}" || tok.text == "]"):
			return refs, fmt.Errorf("unbalanced %s", tok.text)
		case tok.kind == 'p' && tok.text == "[":
			j := i + 1
			for j < len(toks) && !(toks[j].kind == 'p' && toks[j].text == "]") {
				if toks[j].kind == 'p' && (toks[j].text == "[" || toks[j].text == "(" || toks[j].text == "{") {
					return refs, fmt.Errorf("%s inside a range", toks[j].text)
				}
				j++
			}
			if j == len(toks) {
				return refs, fmt.Errorf("unterminated range")
			}
			i = j
		case tok.kind == 'p' && tok.text == "{":
			// name op "value", ... }
			j := i + 1
			for {
				if j < len(toks) && toks[j].kind == 'p' && toks[j].text == "}" {
					break
				}
				if j+2 >= len(toks) || toks[j].kind != 'i' || toks[j+1].kind != 'p' ||
					!slices.Contains([]string{"=", "!=", "=~", "!~"}, toks[j+1].text) || toks[j+2].kind != 's' {
					return refs, fmt.Errorf("malformed label matchers after %q", strings.Join(tokenTexts(toks[max(0, i-1):min(len(toks), j+1)]), " "))
				}
				refs.labels = append(refs.labels, toks[j].text)
				j += 3
				if j < len(toks) && toks[j].kind == 'p' && toks[j].text == "," {
					j++
				}
			}
			i = j
		case tok.kind == 'i':
			word := strings.ToLower(tok.text)
			after := next(i)
			switch {
			case slices.Contains(promqlGrouping, word):
				if after.kind != 'p' || after.text != "(" {
					continue // group_left without labels
				}
				j := i + 2
				for ; j < len(toks) && !(toks[j].kind == 'p' && toks[j].text == ")"); j++ {
					switch {
					case toks[j].kind == 'i':
						refs.labels = append(refs.labels, toks[j].text)
					case toks[j].kind != 'p' || toks[j].text != ",":
						return refs, fmt.Errorf("malformed %s clause", word)
					}
				}
				if j == len(toks) {
					return refs, fmt.Errorf("unterminated %s clause", word)
				}
				i = j
			case slices.Contains(promqlKeywords, word):
			case after.kind == 'p' && after.text == "(":
				// A function or an aggregation; its "(" is counted next.
			case slices.Contains(promqlAggregates, word) && after.kind == 'i' &&
				slices.Contains([]string{"by", "without"}, strings.ToLower(after.text)):
			default:
				refs.metrics = append(refs.metrics, tok.text)
			}
		}
	}
	if len(open) > 0 {
		return refs, fmt.Errorf("unbalanced (")
	}
	return refs, nil
}

func tokenTexts(toks []promqlToken) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.text
	}
	return out
}

func TestAlertRules_ScannerReadsPromQL(t *testing.T) {
	for _, c := range []struct {
		expr            string
		metrics, labels []string
		bad             bool
	}{
		{expr: `up == 0`, metrics: []string{"up"}},
		{
			expr:    `sum by (agency) (rate(a_total{agency=~"x|y", outcome!="z"}[5m] offset 1h)) / ignoring(outcome) group_left b:c`,
			metrics: []string{"a_total", "b:c"}, labels: []string{"agency", "agency", "outcome", "outcome"},
		},
		{
			expr:    "histogram_quantile(0.99, sum without (instance) (rate(h_bucket[5m:1m]))) > 1e3 # a comment naming not_a_metric",
			metrics: []string{"h_bucket"}, labels: []string{"instance"},
		},
		{expr: `max(x) and on () (sum(y) or vector(0)) unless count by (le) (z{a="}"})`, metrics: []string{"x", "y", "z"}, labels: []string{"le", "a"}},
		{expr: `sum(rate(x[5m])`, bad: true},
		{expr: `x{a="b"`, bad: true},
		{expr: `x{a}`, bad: true},
		{expr: `rate(x[5m)`, bad: true},
	} {
		refs, err := scanPromQL(c.expr)
		switch {
		case c.bad && err == nil:
			t.Errorf("%q: scanned without error, want one", c.expr)
		case c.bad:
		case err != nil:
			t.Errorf("%q: %v", c.expr, err)
		case !slices.Equal(refs.metrics, c.metrics) || !slices.Equal(refs.labels, c.labels):
			t.Errorf("%q: metrics %q, labels %q; want %q, %q", c.expr, refs.metrics, refs.labels, c.metrics, c.labels)
		}
	}
}

func TestAlertRules_UseOnlyMetricsSpotflowExports(t *testing.T) {
	exported := readExportedMetrics(t)
	// The scan must find what workers/metrics.go defines, or it proves
	// nothing: a counter, a histogram's series and a gauge of NewDesc.
	for _, name := range []string{"spotflow_intake_refused_total", "spotflow_projector_lag_seconds_bucket", "spotflow_consumer_pending_messages"} {
		if _, ok := exported.names[name]; !ok {
			t.Fatalf("the scan of the source found no %s among %v", name, slices.Sorted(maps.Keys(exported.names)))
		}
	}
	t.Logf("%d metric names exported (histograms' series included) and %d label names", len(exported.names), len(exported.labels))
	used := map[string]bool{}
	for _, r := range loadRules(t) {
		refs, err := scanPromQL(r.Expr)
		if err != nil {
			t.Errorf("%s: expr: %v", r.Alert, err)
			continue
		}
		if len(refs.metrics) == 0 {
			t.Errorf("%s: expr names no metric", r.Alert)
		}
		for _, name := range refs.metrics {
			used[name] = true
			if _, ok := exported.names[name]; !ok {
				t.Errorf("%s: expr names %s, which spotflow does not export", r.Alert, name)
			}
			if !strings.HasPrefix(name, "spotflow_") && name != "up" {
				t.Errorf("%s: expr names %s: the rules use spotflow's metrics and up only", r.Alert, name)
			}
		}
		for _, l := range refs.labels {
			if !exported.labels[l] {
				t.Errorf("%s: expr uses the label %s, which no metric of spotflow's has", r.Alert, l)
			}
		}
		for _, text := range []string{r.Annotations.Summary, r.Annotations.Description} {
			for _, m := range regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`).FindAllStringSubmatch(text, -1) {
				if !exported.labels[m[1]] {
					t.Errorf("%s: an annotation uses $labels.%s, which no metric of spotflow's has", r.Alert, m[1])
				}
			}
		}
	}
	t.Logf("the rules use %d of them: %s", len(used), strings.Join(slices.Sorted(maps.Keys(used)), ", "))
}

// promtool's unit-test file (promtool test rules).
type promtoolTests struct {
	RuleFiles          []string       `json:"rule_files"`
	EvaluationInterval string         `json:"evaluation_interval"`
	Tests              []promtoolTest `json:"tests"`
}

type promtoolTest struct {
	Name        string              `json:"name"`
	Interval    string              `json:"interval"`
	InputSeries []promtoolSeries    `json:"input_series"`
	AlertTests  []promtoolAlertTest `json:"alert_rule_test"`
}

type promtoolSeries struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type promtoolAlertTest struct {
	EvalTime  string          `json:"eval_time"`
	Alertname string          `json:"alertname"`
	ExpAlerts []promtoolAlert `json:"exp_alerts"`
}

type promtoolAlert struct {
	ExpLabels      map[string]string `json:"exp_labels"`
	ExpAnnotations map[string]string `json:"exp_annotations"`
}

// An alertScenario is a history of series, sampled every minute, and what
// an alert does at one time in it: fire once for each set of labels (those
// of its expression's result) in fires, or stay quiet when there is none.
type alertScenario struct {
	name   string
	alert  string
	series [][2]string // series, values in promtool's notation
	at     string
	fires  []map[string]string
}

// lagBuckets are the projector lag histogram's upper bounds
// (workers/metrics.go: ExponentialBuckets(0.001, 3, 14)).
var lagBuckets = func() []float64 {
	b := make([]float64, 14)
	for i, v := 0, 0.001; i < len(b); i, v = i+1, v*3 {
		b[i] = v
	}
	return b
}()

// lagHistogram is the projector lag histogram's buckets when perMinute
// batches a minute all lagged lag seconds, for minutes minutes.
func lagHistogram(lag float64, perMinute, minutes int) [][2]string {
	var out [][2]string
	for _, le := range append(slices.Clone(lagBuckets), -1) {
		n, bound := 0, "+Inf"
		if le >= 0 {
			bound = strconv.FormatFloat(le, 'g', -1, 64)
		}
		if le < 0 || lag <= le {
			n = perMinute
		}
		out = append(out, [2]string{fmt.Sprintf(`spotflow_projector_lag_seconds_bucket{instance="p1", le=%q}`, bound), fmt.Sprintf("0+%dx%d", n, minutes)})
	}
	return out
}

func alertScenarios() []alertScenario {
	const (
		work      = `stream="SPOTFLOW_WORK", consumer="agency-tax"`
		events    = `stream="SPOTFLOW_EVENTS", consumer="projector"`
		accepted  = `spotflow_intake_accepted_total{instance="i1", service="change-of-address"}`
		refused   = `spotflow_intake_refused_total{instance="i1", reason=%q}`
		deadTax   = `spotflow_dead_letters_total{instance="d1", agency="tax", reason=%q}`
		statusRef = `spotflow_status_events_refused_total{instance="p1", rule=%q}`
	)
	r := func(reason string) string { return fmt.Sprintf(refused, reason) }
	return []alertScenario{
		{name: "a target down for 10 minutes", alert: "SpotflowTargetDown", at: "12m",
			series: [][2]string{{`up{job="spotflow-intake", instance="10.0.0.1:8443"}`, "1 1 0x12"}},
			fires:  []map[string]string{{"job": "spotflow-intake", "instance": "10.0.0.1:8443"}}},
		{name: "a restart of two minutes", alert: "SpotflowTargetDown", at: "12m",
			series: [][2]string{{`up{job="spotflow-intake", instance="10.0.0.1:8443"}`, "1 1 0 0 1x10"}}},
		{name: "another job's target down", alert: "SpotflowTargetDown", at: "12m",
			series: [][2]string{{`up{job="node", instance="10.0.0.1:9100"}`, "0x12"}}},

		{name: "Postgres down for 20 minutes", alert: "SpotflowDependencyOutage", at: "20m",
			series: [][2]string{{`spotflow_messages_handled_total{instance="p1", consumer="projector", outcome="outage"}`, "0+5x20"}},
			fires:  []map[string]string{{"consumer": "projector"}}},
		{name: "a failover of a minute, long ago", alert: "SpotflowDependencyOutage", at: "20m",
			series: [][2]string{{`spotflow_messages_handled_total{instance="p1", consumer="projector", outcome="outage"}`, "0 5 10x19"}}},

		{name: "one submission in six refused unavailable", alert: "SpotflowIntakeUnavailable", at: "15m",
			series: [][2]string{{accepted, "0+100x15"}, {r("unavailable"), "0+20x15"}},
			fires:  []map[string]string{{}}},
		{name: "an intake that accepted nothing since it started", alert: "SpotflowIntakeUnavailable", at: "15m",
			series: [][2]string{{r("unavailable"), "0+10x15"}},
			fires:  []map[string]string{{}}},
		{name: "one submission in fifty refused unavailable", alert: "SpotflowIntakeUnavailable", at: "15m",
			series: [][2]string{{accepted, "0+100x15"}, {r("unavailable"), "0+2x15"}}},

		{name: "an internal error", alert: "SpotflowIntakeInternalErrors", at: "5m",
			series: [][2]string{{accepted, "0+10x5"}, {r("internal"), "0 0 0 1 1 1"}},
			fires:  []map[string]string{{}}},
		{name: "a process's first internal error", alert: "SpotflowIntakeInternalErrors", at: "5m",
			series: [][2]string{{accepted, "0+10x5"}, {r("internal"), "_ _ _ 1 1 1"}},
			fires:  []map[string]string{{}}},
		{name: "an internal error an hour ago", alert: "SpotflowIntakeInternalErrors", at: "60m",
			series: [][2]string{{r("internal"), "1x60"}}},

		{name: "a desk retrying with a revoked token", alert: "SpotflowIntakeRefusingCredentials", at: "40m",
			series: [][2]string{{r("unauthenticated"), "0+10x40"}},
			fires:  []map[string]string{{}}},
		{name: "mediators mistyping", alert: "SpotflowIntakeRefusingCredentials", at: "40m",
			series: [][2]string{{r("unauthenticated"), "0+2x40"}}},

		{name: "a desk over its rate", alert: "SpotflowIntakeThrottling", at: "40m",
			series: [][2]string{{accepted, "0+100x40"}, {r("too_many_requests"), "0+20x40"}},
			fires:  []map[string]string{{}}},
		{name: "a few bursts", alert: "SpotflowIntakeThrottling", at: "40m",
			series: [][2]string{{accepted, "0+100x40"}, {r("too_many_requests"), "0+3x40"}}},
		{name: "a quiet night", alert: "SpotflowIntakeThrottling", at: "40m",
			series: [][2]string{{accepted, "0+1x40"}, {r("too_many_requests"), "0+0.5x40"}}},

		{name: "a service gone from the catalogue", alert: "SpotflowIntakeRefusingSubmissions", at: "70m",
			series: [][2]string{{accepted, "0+10x70"}, {r("unknown_service"), "0+10x70"}},
			fires:  []map[string]string{{}}},
		{name: "mediators' mistakes", alert: "SpotflowIntakeRefusingSubmissions", at: "70m",
			series: [][2]string{{accepted, "0+10x70"}, {r("required"), "0+1x70"}, {r("unavailable"), "0+20x70"}}},

		{name: "an agency that takes nothing", alert: "SpotflowAgencyBacklogNotDraining", at: "70m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + work + `}`, "0+10x70"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + work + `}`, "50x70"},
				{`spotflow_consumer_pending_messages{instance="d1", ` + work + `}`, "0+10x70"},
				{`spotflow_consumer_ack_pending_messages{instance="d1", ` + work + `}`, "50x70"},
			},
			fires: []map[string]string{{"consumer": "agency-tax"}}},
		{name: "an agency catching up", alert: "SpotflowAgencyBacklogNotDraining", at: "70m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + work + `}`, "2000-10x70"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + work + `}`, "50x70"},
			}},
		{name: "an agency keeping up", alert: "SpotflowAgencyBacklogNotDraining", at: "70m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + work + `}`, "20x70"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + work + `}`, "30x70"},
			}},

		{name: "an agency down", alert: "SpotflowAdapterErrorsHigh", at: "30m",
			series: [][2]string{
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="transient_error"}`, "0+30x30"},
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="completed"}`, "0+10x30"},
				{`spotflow_adapter_calls_total{instance="d1", agency="justice", outcome="completed"}`, "0+50x30"},
			},
			fires: []map[string]string{{"agency": "tax"}}},
		{name: "an odd timeout", alert: "SpotflowAdapterErrorsHigh", at: "30m",
			series: [][2]string{
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="transient_error"}`, "0+1x30"},
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="completed"}`, "0+50x30"},
			}},

		{name: "work items out of deliveries", alert: "SpotflowWorkItemsDeadLettered", at: "5m",
			series: [][2]string{{fmt.Sprintf(deadTax, "max_deliveries"), "0 0 0 1 3 3"}},
			fires:  []map[string]string{{"agency": "tax", "reason": "max_deliveries"}}},
		{name: "a process's first dead letter", alert: "SpotflowWorkItemsDeadLettered", at: "5m",
			series: [][2]string{{fmt.Sprintf(deadTax, "permanent"), "_ _ _ 1 1 1"}},
			fires:  []map[string]string{{"agency": "tax", "reason": "permanent"}}},
		{name: "refused status events only", alert: "SpotflowWorkItemsDeadLettered", at: "5m",
			series: [][2]string{{fmt.Sprintf(deadTax, "refused"), "0 1 2 3 4 5"}}},
		{name: "dead letters of yesterday", alert: "SpotflowWorkItemsDeadLettered", at: "60m",
			series: [][2]string{{fmt.Sprintf(deadTax, "permanent"), "4x60"}}},

		{name: "an event from the wrong source", alert: "SpotflowStatusEventsForged", at: "5m",
			series: [][2]string{{fmt.Sprintf(statusRef, "source"), "0 0 0 1 1 1"}, {fmt.Sprintf(statusRef, "note"), "0 1 2 3 4 5"}},
			fires:  []map[string]string{{"rule": "source"}}},
		{name: "a process's first shadowing ID", alert: "SpotflowStatusEventsForged", at: "5m",
			series: [][2]string{{fmt.Sprintf(statusRef, "id"), "_ _ _ _ 1 1"}},
			fires:  []map[string]string{{"rule": "id"}}},
		{name: "notes with line breaks", alert: "SpotflowStatusEventsForged", at: "5m",
			series: [][2]string{{fmt.Sprintf(statusRef, "note"), "0 1 2 3 4 5"}}},

		{name: "an agency's clock", alert: "SpotflowStatusEventsRefused", at: "5m",
			series: [][2]string{{fmt.Sprintf(statusRef, "time"), "0 0 2 4 4 4"}, {fmt.Sprintf(statusRef, "id"), "0 1 2 3 4 5"}},
			fires:  []map[string]string{{"rule": "time"}}},
		{name: "a forged event only", alert: "SpotflowStatusEventsRefused", at: "5m",
			series: [][2]string{{fmt.Sprintf(statusRef, "source"), "0 1 2 3 4 5"}}},

		{name: "a projector a few minutes behind", alert: "SpotflowProjectorLagHigh", at: "20m",
			series: lagHistogram(150, 60, 20),
			fires:  []map[string]string{{}}},
		{name: "a projector keeping up", alert: "SpotflowProjectorLagHigh", at: "20m",
			series: lagHistogram(0.2, 60, 20)},

		{name: "projectors stuck", alert: "SpotflowConsumerStalled", at: "25m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + events + `}`, "0+50x25"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + events + `}`, "0x25"},
				{`spotflow_messages_handled_total{instance="p1", consumer="projector", outcome="ack"}`, "1000x25"},
			},
			fires: []map[string]string{{"consumer": "projector"}}},
		{name: "no projector running", alert: "SpotflowConsumerStalled", at: "25m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + events + `}`, "0+50x25"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + events + `}`, "0x25"},
			},
			fires: []map[string]string{{"consumer": "projector"}}},
		{name: "projectors busy", alert: "SpotflowConsumerStalled", at: "25m",
			series: [][2]string{
				{`spotflow_consumer_pending_messages{instance="i1", ` + events + `}`, "500x25"},
				{`spotflow_consumer_ack_pending_messages{instance="i1", ` + events + `}`, "200x25"},
				{`spotflow_messages_handled_total{instance="p1", consumer="projector", outcome="ack"}`, "0+3000x25"},
			}},

		{name: "an agency failing and retried", alert: "SpotflowRedeliveriesHigh", at: "40m",
			series: [][2]string{
				{`spotflow_redeliveries_total{instance="d1", consumer="agency-tax"}`, "0+20x40"},
				{`spotflow_messages_handled_total{instance="d1", consumer="agency-tax", outcome="retry"}`, "0+60x40"},
				{`spotflow_messages_handled_total{instance="d1", consumer="agency-tax", outcome="ack"}`, "0+40x40"},
			},
			fires: []map[string]string{{"consumer": "agency-tax"}}},
		{name: "events before their requests", alert: "SpotflowRedeliveriesHigh", at: "40m",
			series: [][2]string{
				{`spotflow_redeliveries_total{instance="p1", consumer="projector"}`, "0+2x40"},
				{`spotflow_messages_handled_total{instance="p1", consumer="projector", outcome="ack"}`, "0+500x40"},
			}},

		{name: "requests accepted, none routed", alert: "SpotflowNothingCompleted", at: "45m",
			series: [][2]string{{accepted, "0+5x45"}},
			fires:  []map[string]string{{}}},
		{name: "work items delivered, no agency answering", alert: "SpotflowNothingCompleted", at: "45m",
			series: [][2]string{
				{accepted, "0+5x45"},
				{`spotflow_routed_total{instance="r1", service="change-of-address"}`, "0+5x45"},
				{`spotflow_dispatched_total{instance="d1", agency="tax"}`, "0+5x45"},
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="transient_error"}`, "0+20x45"},
			},
			fires: []map[string]string{{}}},
		{name: "requests moving", alert: "SpotflowNothingCompleted", at: "45m",
			series: [][2]string{
				{accepted, "0+5x45"},
				{`spotflow_routed_total{instance="r1", service="change-of-address"}`, "0+5x45"},
				{`spotflow_dispatched_total{instance="d1", agency="tax"}`, "0+5x45"},
				{`spotflow_adapter_calls_total{instance="d1", agency="tax", outcome="accepted"}`, "0+5x45"},
			}},
		{name: "agencies over NATS only", alert: "SpotflowNothingCompleted", at: "45m",
			series: [][2]string{
				{accepted, "0+5x45"},
				{`spotflow_routed_total{instance="r1", service="change-of-address"}`, "0+5x45"},
			}},
	}
}

func TestAlertRules_Promtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is needed under CI=true (make deploy-deps installs Debian's prometheus package): %v", err)
		}
		t.Skip("promtool is not on PATH (Debian's prometheus package has it); the other tests check the rules without it")
	}
	abs, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("check rules", func(t *testing.T) {
		out, err := exec.Command(promtool, "check", "rules", abs).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
		}
	})
	t.Run("scenarios", func(t *testing.T) {
		rules := map[string]alertRule{}
		for _, r := range loadRules(t) {
			rules[r.Alert] = r
		}
		file := promtoolTests{RuleFiles: []string{abs}, EvaluationInterval: "1m"}
		fires, quiet := map[string]bool{}, map[string]bool{}
		for _, s := range alertScenarios() {
			r, ok := rules[s.alert]
			if !ok {
				t.Errorf("scenario %q: no alert %s in %s", s.name, s.alert, alertsFile)
				continue
			}
			exp := []promtoolAlert{}
			for _, labels := range s.fires {
				a := promtoolAlert{ExpLabels: map[string]string{"severity": r.Labels.Severity}, ExpAnnotations: map[string]string{"runbook_url": r.Annotations.RunbookURL}}
				maps.Copy(a.ExpLabels, labels)
				for key, text := range map[string]string{"summary": r.Annotations.Summary, "description": r.Annotations.Description} {
					if a.ExpAnnotations[key], err = renderAnnotation(text, labels); err != nil {
						t.Errorf("scenario %q: %s of %s: %v", s.name, key, s.alert, err)
					}
				}
				exp = append(exp, a)
			}
			if len(exp) > 0 {
				fires[s.alert] = true
			} else {
				quiet[s.alert] = true
			}
			test := promtoolTest{Name: s.alert + ": " + s.name, Interval: "1m",
				AlertTests: []promtoolAlertTest{{EvalTime: s.at, Alertname: s.alert, ExpAlerts: exp}}}
			for _, series := range s.series {
				test.InputSeries = append(test.InputSeries, promtoolSeries{Series: series[0], Values: series[1]})
			}
			file.Tests = append(file.Tests, test)
		}
		for name := range rules {
			if !fires[name] || !quiet[name] {
				t.Errorf("%s needs a scenario in which it fires and one in which it stays quiet (alertScenarios)", name)
			}
		}
		data, err := yaml.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "alerts_test.yml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool test rules: %v\n%s", err, out)
		}
		t.Logf("promtool test rules: %d scenarios passed", len(file.Tests))
	})
}
