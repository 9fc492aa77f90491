package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestRawLimit_StoresWhatItCountsInPostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
