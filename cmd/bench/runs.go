package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A run's full report goes to a file of its own; BENCHMARKS.md keeps one
// line per run, in a table under runsHeading, so that the file stays short
// enough to read while every run remains on record. The runs measured
// before the desk-felt latency and the CPU per request keep their own
// section and table, under a heading of their own, untouched.
const runsHeading = "## Runs of `make bench`, desk-felt latency and CPU per request"

// runsIntro opens the section when a file has none yet.
const runsIntro = "One line per run, oldest first, added by `make bench` (`cmd/bench`). Figures are of the durable\n" +
	"default unless marked no-sync. p99 is what a desk feels: from the client's first send until the\n" +
	"request is readable as completed. System CPU is that of spotflow's processes and Postgres (and a\n" +
	"separate NATS) per completed request, the worst of every rate, the maximum included; idle is the\n" +
	"CPU of spotflow and Postgres at rest. The full report of each run, with every stage, is in the file\n" +
	"named in the last column. Earlier runs, measured otherwise, keep their own table."

// runsColumns are the columns of a summary line.
var runsColumns = slices.Concat(
	[]string{"date", "machine", "completed/s at max"},
	p99Columns(),
	[]string{"worst system CPU, ms/req (rate)", "idle CPU, % of a core", "peak RSS", "raw limit, msg/s (ratio)",
		"no-sync: completed/s at max", "full report"},
)

// p99Columns are the runs table's columns of the latency targets.
func p99Columns() []string {
	var columns []string
	for _, t := range latencyTargets {
		columns = append(columns, "p99 at "+thousands(t.Rate)+" req/s")
	}
	return columns
}

// writeReport writes r's full report to a new file in dir, named for the
// run's time, creating dir if need be, and returns the file's path. An empty
// dir writes nothing and returns "".
func writeReport(dir string, r report) (string, error) {
	if dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	path := filepath.Join(dir, r.When.Format("2006-01-02T150405Z")+".md")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	r.write(f)
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	return path, nil
}

// summary is r as one line of the runs table: the durable setting's
// headline figures, the no-sync setting's completed requests per second at
// the maximum rate, and reportPath, where the full report is. A figure the
// run did not measure is a dash.
func (r report) summary(reportPath string) string {
	var durable, noSync *setting
	for _, s := range r.Settings {
		switch {
		case s.NoSync && noSync == nil:
			noSync = s
		case !s.NoSync && durable == nil:
			durable = s
		}
	}
	const none = "–"
	completed := func(s *setting, rate string) string {
		if s == nil {
			return none
		}
		st := s.stage(rate)
		if st.Rate == "" {
			return none
		}
		return thousands(fmt.Sprintf("%.0f", st.CompletedPS))
	}
	var p99s []string
	for _, t := range latencyTargets {
		p99 := none
		if durable != nil {
			if st := durable.stage(t.Rate); st.Rate != "" && st.Completed > 0 {
				p99 = thousands(fmt.Sprintf("%.0f", st.Complete["p99"])) + " ms"
			}
		}
		p99s = append(p99s, p99)
	}
	cpu, idle, rss, raw := none, none, none, none
	if durable != nil {
		if worst, ok := durable.worstSystemCPU(); ok {
			cpu = fmt.Sprintf("%.2f (%s)", worst.SystemCPU, rateCell(worst.Rate))
		}
		idle = fmt.Sprintf("%.2f", durable.IdlePct)
		if durable.PeakMB > 0 {
			rss = fmt.Sprintf("%.0f MiB", durable.PeakMB)
		}
		if durable.Raw > 0 {
			raw = fmt.Sprintf("%s (%.3f)", thousands(fmt.Sprintf("%.0f", durable.Raw)), durable.stage("max").CompletedPS/durable.Raw)
		}
	}
	where := none
	if reportPath != "" {
		where = "`" + filepath.ToSlash(reportPath) + "`"
	}
	cells := []string{r.When.Format("2006-01-02 15:04 UTC"), fmt.Sprintf("%s, %d × %s", r.Host, r.CPUs, r.CPU), completed(durable, "max")}
	cells = append(cells, p99s...)
	return tableRow(append(cells, cpu, idle, rss, raw, completed(noSync, "max"), where)...)
}

// rateCell is a stage's rate in a summary line: "max" or "1,000 req/s".
func rateCell(rate string) string {
	if rate == "max" {
		return rate
	}
	return thousands(rate) + " req/s"
}

// addRunTo adds row to the runs table of the Markdown file at path (see
// withRun), creating the file if it does not exist.
func addRunTo(path, row string) error {
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("add run to %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(withRun(string(doc), row)), 0o644); err != nil {
		return fmt.Errorf("add run to %s: %w", path, err)
	}
	return nil
}

// withRun returns doc with row added as the last line of the table in its
// runs section (runsHeading), wherever that section is; a section without a
// table gets one. A document without the section gets it at its end.
func withRun(doc, row string) string {
	header := tableRow(runsColumns...) + "\n" + tableRule(len(runsColumns)) + "\n"
	lines := strings.SplitAfter(doc, "\n")
	heading := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\r\n") == runsHeading {
			heading = i
			break
		}
	}
	if heading < 0 {
		doc = strings.TrimRight(doc, "\n")
		if doc != "" {
			doc += "\n\n"
		}
		return doc + runsHeading + "\n\n" + runsIntro + "\n\n" + header + row + "\n"
	}
	// The section runs to the next heading of its level or above.
	end := len(lines)
	for i := heading + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") || strings.HasPrefix(lines[i], "# ") {
			end = i
			break
		}
	}
	insert, text := -1, row+"\n"
	for i := heading + 1; i < end; i++ {
		if strings.HasPrefix(lines[i], "|") {
			insert = i + 1
		} else if insert >= 0 {
			break
		}
	}
	if insert < 0 {
		// No table yet: start one right after the heading.
		insert, text = heading+1, "\n"+header+row+"\n"
	}
	if insert > 0 && !strings.HasSuffix(lines[insert-1], "\n") {
		lines[insert-1] += "\n"
	}
	out := append([]string{}, lines[:insert]...)
	out = append(out, text)
	return strings.Join(append(out, lines[insert:]...), "")
}

// tableRow is one line of a Markdown table.
func tableRow(cells ...string) string {
	return "| " + strings.Join(cells, " | ") + " |"
}

// tableRule is the line under a Markdown table's header: the first two
// columns (date, machine) left-aligned, figures right-aligned, the report's
// path left-aligned.
func tableRule(columns int) string {
	rule := make([]string, columns)
	for i := range rule {
		rule[i] = "--:"
		if i < 2 || i == columns-1 {
			rule[i] = "---"
		}
	}
	return "|" + strings.Join(rule, "|") + "|"
}

// thousands puts a comma between each group of three digits of a whole
// number written in decimal: "13887" becomes "13,887".
func thousands(n string) string {
	sign := ""
	if strings.HasPrefix(n, "-") {
		sign, n = "-", n[1:]
	}
	for i := len(n) - 3; i > 0; i -= 3 {
		n = n[:i] + "," + n[i:]
	}
	return sign + n
}
