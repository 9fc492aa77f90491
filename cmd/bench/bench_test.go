package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

func TestMeasureFloor_CompletesEveryRequestOfBothFloors(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	floors, err := measureFloor(ctx, floorConfig{StoreDir: t.TempDir(), DatabaseURL: url, Rate: 50, Duration: time.Second, Drain: 30 * time.Second})
	if err != nil {
		t.Fatalf("measureFloor: %v", err)
	}
	if len(floors) != 2 || floors[0].What != floorMessage || floors[1].What != floorChain {
		t.Fatalf("floors = %+v, want one message, then the request's chain", floors)
	}
	for _, f := range floors {
		// measureFloor fails unless every request submitted completed; a
		// second at 50 a second is 50 of them, give or take a tick.
		if f.Rate != 50 || f.Completed < 45 || f.Completed > 51 {
			t.Errorf("%s: rate %d, %d completed; want 50 a second for a second", f.What, f.Rate, f.Completed)
		}
		if f.ProcessCPU <= 0 {
			t.Errorf("%s: process CPU %.3f ms per request, want some", f.What, f.ProcessCPU)
		}
		if f.P50Ms <= 0 || f.P99Ms < f.P50Ms {
			t.Errorf("%s: p50 %.2f ms, p99 %.2f ms; want a time taken, p99 no less than p50", f.What, f.P50Ms, f.P99Ms)
		}
	}
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_floor%'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d floor tables left behind (%v)", left, err)
	}
}

func TestPaced_CallsAtTheRateWithIDsOfTheirOwn(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ids := map[string]bool{}
	n, err := paced(t.Context(), 200, 500*time.Millisecond, func(_ context.Context, id string) error {
		mu.Lock()
		defer mu.Unlock()
		ids[id] = true
		return nil
	})
	if err != nil {
		t.Fatalf("paced: %v", err)
	}
	// 200 a second for half a second, however late the ticks came.
	if n < 95 || n > 101 || len(ids) != int(n) {
		t.Errorf("paced made %d calls with %d IDs, want about 100, each with its own ID", n, len(ids))
	}
	failing := errors.New("refused")
	if _, err := paced(t.Context(), 100, 100*time.Millisecond, func(context.Context, string) error { return failing }); !errors.Is(err, failing) {
		t.Errorf("paced with a failing call = %v, want its error", err)
	}
}

func TestReport_SetsTheFloorsBesideTheSystem(t *testing.T) {
	t.Parallel()
	s := &setting{Name: "durable", Raw: 9000, PeakMB: 300, Stages: []stage{
		{Rate: "max", CompletedPS: 1000, Complete: map[string]float64{}, Accept: map[string]float64{}},
		{Rate: "20", Completed: 300, CompletedPS: 20, SystemCPU: 9.5, Complete: map[string]float64{"p99": 19.1}, Accept: map[string]float64{}}},
		Floors: []floorResult{{What: floorMessage, Rate: 20, Completed: 300, ProcessCPU: 1.7, P50Ms: 0.6, P99Ms: 1.2},
			{What: floorChain, Rate: 20, Completed: 300, ProcessCPU: 7.4, PostgresCPU: 0.9, P50Ms: 12, P99Ms: 15.55},
			{What: floorChain, Rate: 1000, Completed: 15000, ProcessCPU: 0.6, PostgresCPU: 0.1, P50Ms: 40, P99Ms: 90}}}
	var b bytes.Buffer
	report{When: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC), Settings: []*setting{s}}.write(&b)
	for _, w := range []string{
		"| durable | one message | 20 | 300 | 1.70 | 0.00 | 1.70 | 0.6 ms | 1.2 ms | 9.50 | 19.1 ms |",
		"| durable | the request's chain | 20 | 300 | 7.40 | 0.90 | 8.30 | 12.0 ms | 15.6 ms | 9.50 | 19.1 ms |",
		"| durable | the request's chain | 1,000 | 15000 | 0.60 | 0.10 | 0.70 | 40.0 ms | 90.0 ms | – | – |",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
}

func TestReport_JudgesTheTargets(t *testing.T) {
	t.Parallel()
	const measured = "client's first send → commit of the request's final status in Postgres"
	st := func(rate string, completed, p99, spotflow, postgres float64) stage {
		return stage{Rate: rate, Completed: 1000, CompletedPS: completed, CompleteMeasured: measured,
			SpotflowCPU: spotflow, PostgresCPU: postgres, SystemCPU: spotflow + postgres, MachineCPU: spotflow + postgres + 0.25,
			Accept: map[string]float64{"p99": 10}, Complete: map[string]float64{"p50": 5, "p95": 8, "p99": p99, "max": p99 + 1}}
	}
	unmeasured := st("20", 20, 12, 0, 0)
	unmeasured.CompleteMeasured = "submitted_at → the completion event's time, in the server"
	tests := []struct {
		name  string
		s     setting
		wants []string
	}{
		{"every target met", setting{Name: "durable", Raw: 10000, PeakMB: 300, IdleSpotflowPct: 0.3, IdlePostgresPct: 0.1, IdlePct: 0.4, Stages: []stage{
			st("max", 3500, 900, 0.5, 0.4), st("20", 20, 12, 0.75, 0.63), st("50", 50, 30, 0.7, 0.5), st("300", 300, 40, 0.6, 0.4), st("1000", 1000, 80, 0.55, 0.4)}},
			[]string{
				"| durable | 20 | 0 | 20 | 10.0 ms | 5.0 ms | 12.0 ms | 13.0 ms | 0.75 | 0.63 | 1.38 | 1.63 | 0 MiB | 0 |",
				"measured as: " + measured + ".",
				"| 10000 | 3500 | 0.350 |",
				"durable: spotflow 0.30% + postgres 0.10% = 0.40%",
				"≥ 3,000 completed/s at the maximum: met (3500)",
				"p99 submit→completed ≤ 50 ms at 50 req/s: met (30.0 ms)",
				"p99 submit→completed ≤ 100 ms at 1,000 req/s: met (80.0 ms)",
				"system CPU ≤ 1.5 ms per completed request at every rate, the maximum included: met (worst 1.38 ms, at 20 req/s)",
				"CPU at rest < 1% of a core: met (0.40%)",
				"peak RSS ≤ 512 MiB: met (300 MiB)",
			}},
		{"every target missed", setting{Name: "durable", Raw: 8000, PeakMB: 600, IdlePct: 1.5, Stages: []stage{
			st("max", 1000, 900, 1.2, 0.8), st("20", 20, 12, 1.0, 0.4), st("50", 50, 80, 0.8, 0.4), st("1000", 900, 3000, 0.9, 0.5)}},
			[]string{
				"| 0.125 |",
				"completed/s at the maximum: **not met** (1000)",
				"at 50 req/s: **not met** (80.0 ms)",
				"at 1,000 req/s: **not met** (3000.0 ms)",
				"the maximum included: **not met** (worst 2.00 ms, at the maximum)",
				"CPU at rest < 1% of a core: **not met** (1.50%)",
				"≤ 512 MiB: **not met** (600 MiB)",
			}},
		{"a figure not measured misses its target", setting{Name: "durable", Raw: 8000, PeakMB: 300, Stages: []stage{
			st("max", 3500, 900, 0.5, 0.4), unmeasured, st("50", 50, 30, 0.7, 0.5)}},
			[]string{
				"| durable | 20 | 0 | 20 | 10.0 ms | 5.0 ms | 12.0 ms | 13.0 ms | – | – | – | 0.25 | 0 MiB | 0 |",
				"measured as: differently from stage to stage: " + measured + "; submitted_at",
				"at 1,000 req/s: **not met** (not measured)",
				"the maximum included: **not met** (not measured at 20 req/s)",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
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
	st := func(rate string, completed, p99, system float64) stage {
		return stage{Rate: rate, Completed: 1000, CompletedPS: completed, SystemCPU: system,
			Accept: map[string]float64{"p99": 10}, Complete: map[string]float64{"p50": 5, "p95": 8, "p99": p99, "max": p99}}
	}
	durable := &setting{Name: "durable", Raw: 13887, PeakMB: 424.4, IdlePct: 0.62, Stages: []stage{
		st("max", 1479, 784.7, 0.91), st("20", 20, 18.2, 1.42), st("50", 50, 30.6, 1.2), st("300", 300, 45, 1.1), st("1000", 990, 2212.6, 1.0)}}
	noSync := &setting{Name: "no-sync", NoSync: true, Raw: 11600, PeakMB: 425, Stages: []stage{st("max", 1616, 559.3, 0.8)}}
	r := report{When: time.Date(2026, 11, 23, 21, 56, 4, 0, time.UTC), Host: "vm", CPUs: 2, CPU: "AMD EPYC"}
	tests := []struct {
		name     string
		settings []*setting
		path     string
		want     string
	}{
		{"both settings", []*setting{durable, noSync}, ".data/bench/reports/2026-11-23T215604Z.md",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 1,479 | 31 ms | 2,213 ms | 1.42 (20 req/s) | 0.62 | 424 MiB | 13,887 (0.107) | 1,616 | `.data/bench/reports/2026-11-23T215604Z.md` |"},
		{"durable only, no report file", []*setting{durable}, "",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 1,479 | 31 ms | 2,213 ms | 1.42 (20 req/s) | 0.62 | 424 MiB | 13,887 (0.107) | – | – |"},
		{"the worst CPU at the maximum", []*setting{{Name: "durable", Raw: 9000, PeakMB: 300, IdlePct: 0.5, Stages: []stage{
			st("max", 900, 700, 2.5), st("50", 50, 20, 1.3)}}}, "r.md",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 900 | 20 ms | – | 2.50 (max) | 0.50 | 300 MiB | 9,000 (0.100) | – | `r.md` |"},
		{"no stage at the latency targets' rates, no CPU measured", []*setting{{Name: "durable", Raw: 9000, PeakMB: 300, Stages: []stage{
			st("max", 900, 700, 0)}}}, "r.md",
			"| 2026-11-23 21:56 UTC | vm, 2 × AMD EPYC | 900 | – | – | – | 0.00 | 300 MiB | 9,000 (0.100) | – | `r.md` |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
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
	// The runs measured before keep their section, table and all, and
	// the new section starts after it, at the file's end.
	earlier := "# Benchmarks\n\n## Runs of `make bench`\n\nOne line per run.\n\n| date | machine | completed/s at max |\n|---|---|--:|\n| 2026-12-06 06:00 UTC | vm | 1,744 |\n"
	benchmarks := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(benchmarks, []byte(earlier), 0o644); err != nil {
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
	if !strings.HasPrefix(string(doc), earlier+"\n"+runsHeading+"\n") {
		t.Errorf("the earlier runs' section changed, or the new one is not right after it:\n%s", doc)
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
