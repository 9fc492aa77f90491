package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestRawLimit_StoresWhatItCountsInPostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rate, err := rawLimit(ctx, rawConfig{StoreDir: t.TempDir(), DatabaseURL: url, MessageSize: requestMessageSize,
		Publishers: 64, Duration: time.Second})
	if err != nil {
		t.Fatalf("rawLimit: %v", err)
	}
	if rate <= 0 {
		t.Errorf("raw limit = %.0f msg/s, want messages stored", rate)
	}
	// The table is dropped afterwards: the measurement leaves nothing behind.
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('bench_raw') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("bench_raw left behind (%v, %v)", exists, err)
	}
}

func TestReport_JudgesTheTargets(t *testing.T) {
	t.Parallel()
	st := func(rate string, completed, p99, cpu float64) stage {
		return stage{Rate: rate, Completed: 1000, CompletedPS: completed, MachineCPU: cpu,
			Accept: map[string]float64{"p99": 10}, Complete: map[string]float64{"p50": 5, "p95": 8, "p99": p99, "max": p99}}
	}
	tests := []struct {
		name  string
		s     setting
		wants []string
	}{
		{"every target met", setting{Name: "durable", Raw: 10000, PeakMB: 300, Stages: []stage{
			st("max", 6000, 900, 0.3), st("500", 500, 20, 0.40), st("2000", 2000, 80, 0.36), st("5000", 5000, 400, 0.34)}},
			[]string{"≥ 5000 completed/s: met (6000)", "at 2000 req/s: met (80.0 ms)", "≤ 512 MiB: met (300 MiB)", "fixed rates: met (±9%)", "| 10000 | 6000 | 0.600 |"}},
		{"every target missed", setting{Name: "durable", Raw: 8000, PeakMB: 600, Stages: []stage{
			st("max", 1000, 900, 0.3), st("500", 500, 20, 1.0), st("2000", 900, 3000, 0.5)}},
			[]string{"completed/s: **not met** (1000)", "at 2000 req/s: **not met** (3000.0 ms)", "≤ 512 MiB: **not met** (600 MiB)", "fixed rates: **not met** (±33%)", "| 0.125 |"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			report{When: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), Host: "h", CPUs: 2, CPU: "c", Command: "make bench",
				Settings: []*setting{&tt.s}}.write(&b)
			for _, w := range tt.wants {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestReport_SummaryLineHasTheHeadlineFigures(t *testing.T) {
	t.Parallel()
	st := func(rate string, completed, p99 float64) stage {
		return stage{Rate: rate, Completed: 1000, CompletedPS: completed,
			Accept: map[string]float64{"p99": 10}, Complete: map[string]float64{"p50": 5, "p95": 8, "p99": p99, "max": p99}}
	}
	durable := &setting{Name: "durable", Raw: 13887, PeakMB: 424.4, Stages: []stage{
		st("max", 1479, 784.7), st("500", 494, 404.4), st("2000", 1536, 2212.6), st("5000", 1452, 2651.1)}}
	noSync := &setting{Name: "no-sync", NoSync: true, Raw: 11600, PeakMB: 425, Stages: []stage{st("max", 1616, 559.3)}}
	r := report{When: time.Date(2026, 11, 23, 21, 56, 4, 0, time.UTC), Host: "vm", CPUs: 2, CPU: "AMD EPYC"}
	tests := []struct {
		name     string
		settings []*setting
		path     string
		want     string
	}{
		{"both settings", []*setting{durable, noSync}, ".data/bench/reports/2026-11-23T215604Z.md",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 1,479 | 1,536 | 2,213 ms | 424 MiB | 13,887 (0.107) | 1,616 | `.data/bench/reports/2026-11-23T215604Z.md` |"},
		{"durable only, no report file", []*setting{durable}, "",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 1,479 | 1,536 | 2,213 ms | 424 MiB | 13,887 (0.107) | – | – |"},
		{"no stage at 2,000 req/s", []*setting{{Name: "durable", Raw: 9000, PeakMB: 300, Stages: []stage{st("max", 900, 700)}}}, "r.md",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 900 | – | – | 300 MiB | 9,000 (0.100) | – | `r.md` |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := r
			r.Settings = tt.settings
			got := r.summary(tt.path)
			if got != tt.want {
				t.Errorf("summary:\n got %s\nwant %s", got, tt.want)
			}
			if cells, columns := strings.Count(got, "|")-1, len(runsColumns); cells != columns {
				t.Errorf("summary has %d cells, the table %d columns", cells, columns)
			}
		})
	}
}

func TestWithRun_AddsTheLineAtTheEndOfTheRunsTable(t *testing.T) {
	t.Parallel()
	header := tableRow(runsColumns...) + "\n" + tableRule(len(runsColumns)) + "\n"
	tests := []struct {
		name, doc, want string
	}{
		{"a file without the section gets it at its end",
			"# Benchmarks\n\nText.\n\n",
			"# Benchmarks\n\nText.\n\n" + runsHeading + "\n\n" + runsIntro + "\n\n" + header + "| new |\n"},
		{"an empty file gets the section alone",
			"",
			runsHeading + "\n\n" + runsIntro + "\n\n" + header + "| new |\n"},
		{"the line goes under the last row",
			"# B\n\n" + runsHeading + "\n\nIntro.\n\n" + header + "| one |\n| two |\n",
			"# B\n\n" + runsHeading + "\n\nIntro.\n\n" + header + "| one |\n| two |\n| new |\n"},
		{"a file that does not end in a newline",
			runsHeading + "\n\n" + header + "| one |",
			runsHeading + "\n\n" + header + "| one |\n| new |\n"},
		{"a section followed by another keeps its table",
			runsHeading + "\n\n" + header + "| one |\n\nAfter the table.\n\n## Later\n\n| other table |\n",
			runsHeading + "\n\n" + header + "| one |\n| new |\n\nAfter the table.\n\n## Later\n\n| other table |\n"},
		{"a section without a table gets one",
			runsHeading + "\n\nIntro.\n\n## Later\n",
			runsHeading + "\n\n" + header + "| new |\n\nIntro.\n\n## Later\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withRun(tt.doc, "| new |"); got != tt.want {
				t.Errorf("withRun:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAddRunTo_WritesTheReportAndOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := report{When: time.Date(2026, 11, 24, 9, 5, 0, 0, time.UTC), Host: "h", CPUs: 2, CPU: "c", Command: "make bench",
		Settings: []*setting{{Name: "durable", Raw: 10000, PeakMB: 400, Stages: []stage{{Rate: "max", Completed: 10, CompletedPS: 1000,
			Complete: map[string]float64{}, Accept: map[string]float64{}}}}}}
	path, err := writeReport(filepath.Join(dir, "reports"), r)
	if err != nil {
		t.Fatalf("writeReport: %v", err)
	}
	if want := filepath.Join(dir, "reports", "2026-11-24T090500Z.md"); path != want {
		t.Errorf("report path = %s, want %s", path, want)
	}
	full, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(full), "| durable | max | 0 | 1000 |") {
		t.Errorf("full report (%v):\n%s", err, full)
	}
	benchmarks := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(benchmarks, []byte("# Benchmarks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := addRunTo(benchmarks, r.summary(path)); err != nil {
			t.Fatalf("addRunTo: %v", err)
		}
	}
	doc, err := os.ReadFile(benchmarks)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(doc), runsHeading); n != 1 {
		t.Errorf("%d runs sections, want 1:\n%s", n, doc)
	}
	if n := strings.Count(string(doc), "| 2026-11-24 09:05 UTC | h, 2 × c | 1,000 |"); n != 2 {
		t.Errorf("%d summary lines, want 2:\n%s", n, doc)
	}
	if strings.Contains(string(doc), "| durable | max |") {
		t.Errorf("BENCHMARKS.md got the full report:\n%s", doc)
	}
}
