// Command bench measures spotflow end to end on this machine: it starts the
// all-in-one system with its durable defaults, measures its CPU at rest,
// drives it with the load generator at the maximum rate and at fixed rates,
// measures the raw limit of the same machine (JetStream publish → consume →
// batched Postgres upsert of messages of the same size, nothing else, same
// durability), and does it all again with the durable setting off. It
// prints a table of each stage's throughput, the latency a desk feels (the
// client's first send until the request is readable as completed), the CPU
// per completed request of spotflow, of Postgres and of the whole machine,
// and the all-in-one's peak RSS; the ratio of spotflow's completed requests
// per second to the raw limit; and its verdict on the targets. It writes
// that full report to a file of its own under .data/bench/reports and adds
// one line with the headline figures to the list of runs at the end of
// BENCHMARKS.md.
//
//	go run ./cmd/bench --spotflow bin/spotflow
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	Spotflow   string
	DataDir    string
	Duration   time.Duration
	Drain      time.Duration
	Rates      string
	Desks      int
	Out        string
	Reports    string
	SkipNoSync bool
	SkipNoisy  bool
	NoisyOnly  bool
	FloorRates string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Spotflow, "spotflow", "bin/spotflow", "the spotflow binary to measure")
	flag.StringVar(&cfg.DataDir, "data-dir", ".data/bench", "where the measured systems keep their data (wiped first; the database is emptied before each system)")
	flag.DurationVar(&cfg.Duration, "duration", 15*time.Second, "how long each load stage submits")
	flag.DurationVar(&cfg.Drain, "drain", 20*time.Second, "how long a stage waits for its requests to finish")
	flag.StringVar(&cfg.Rates, "rates", "20,50,300,1000", "fixed rates to measure after the maximum, requests per second")
	flag.IntVar(&cfg.Desks, "desks", 50, "desks the load generator submits from")
	flag.StringVar(&cfg.Out, "out", "BENCHMARKS.md", "file whose list of runs gets the run's summary line; empty for none")
	flag.StringVar(&cfg.Reports, "reports", filepath.Join(".data", "bench", "reports"), "directory for the run's full report, one file per run; empty for none")
	flag.BoolVar(&cfg.SkipNoSync, "skip-nosync", false, "measure only the durable setting")
	flag.BoolVar(&cfg.SkipNoisy, "skip-noisy", false, "leave out the noisy-desk scenario")
	flag.BoolVar(&cfg.NoisyOnly, "noisy-only", false, "measure only the noisy-desk scenario")
	flag.StringVar(&cfg.FloorRates, "floor-rates", "20,50,1000", "rates at which to measure the floor (what JetStream and Postgres alone cost per request), requests per second; empty for none")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// setting is one durability setting's results.
type setting struct {
	Name   string
	NoSync bool
	Stages []stage
	Raw    float64 // raw limit, messages per second
	PeakMB float64 // all-in-one's peak resident set
	// IdleSpotflowPct and IdlePostgresPct are the CPU of the all-in-one
	// and of this machine's postgres processes at rest, before any load,
	// in percent of one core; IdlePct is both together.
	IdleSpotflowPct, IdlePostgresPct, IdlePct float64
	// Floors are what JetStream and Postgres alone cost per request at the
	// --floor-rates (see floorConfig).
	Floors []floorResult
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	began := time.Now()
	bin, err := filepath.Abs(cfg.Spotflow)
	if err != nil {
		return err
	}
	rates, err := wholeNumbers("--rates", cfg.Rates)
	if err != nil {
		return err
	}
	floorRates, err := wholeNumbers("--floor-rates", cfg.FloorRates)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "nats")); err != nil {
		return err
	}
	pg, err := startPostgres(ctx, bin, cfg.DataDir)
	if err != nil {
		return err
	}
	defer pg.stop()

	var settings []*setting
	if !cfg.NoisyOnly {
		settings = append(settings, &setting{Name: "durable (sync before ack)"})
		if !cfg.SkipNoSync {
			settings = append(settings, &setting{Name: "no-sync (--nats-no-sync)", NoSync: true})
		}
	}
	for _, s := range settings {
		fmt.Fprintf(out, "== %s\n", s.Name)
		if err := pg.empty(ctx); err != nil {
			return err
		}
		natsDir := filepath.Join(cfg.DataDir, "nats", strconv.FormatBool(s.NoSync))
		// The pipeline is measured without the desks' limits.
		sys, err := startSystem(ctx, bin, natsDir, pg.url, s.NoSync, "--desk-rate", "0", "--desk-max-open", "0")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "   idle: settling for %s, then measuring for %s\n", idleSettle, idleSpan)
		if s.IdleSpotflowPct, s.IdlePostgresPct, err = sys.idleCPU(ctx); err != nil {
			sys.stop()
			return err
		}
		s.IdlePct = s.IdleSpotflowPct + s.IdlePostgresPct
		fmt.Fprintf(out, "   idle: spotflow %.2f%% + postgres %.2f%% = %.2f%% of a core\n", s.IdleSpotflowPct, s.IdlePostgresPct, s.IdlePct)
		for _, rate := range append([]string{"max"}, rates...) {
			st, err := sys.load(ctx, rate, cfg)
			if err != nil {
				sys.stop()
				return err
			}
			fmt.Fprintf(out, "   %s\n", st.line())
			s.Stages = append(s.Stages, st)
		}
		s.PeakMB = sys.peakRSS()
		if err := sys.stop(); err != nil {
			return err
		}
		fmt.Fprintf(out, "   raw limit: measuring for %s\n", cfg.Duration)
		s.Raw, err = rawLimit(ctx, rawConfig{
			StoreDir: filepath.Join(cfg.DataDir, "nats", "raw-"+strconv.FormatBool(s.NoSync)), NoSync: s.NoSync,
			DatabaseURL: pg.url, MessageSize: requestMessageSize, Publishers: 256, Duration: cfg.Duration,
		})
		if err != nil {
			return err
		}
		for _, rate := range floorRates {
			fmt.Fprintf(out, "   floor at %s req/s: measuring for %s\n", rate, cfg.Duration)
			n, _ := strconv.Atoi(rate)
			floors, err := measureFloor(ctx, floorConfig{
				StoreDir: filepath.Join(cfg.DataDir, "nats", "floor-"+strconv.FormatBool(s.NoSync)), NoSync: s.NoSync,
				DatabaseURL: pg.url, Rate: n, Duration: cfg.Duration, Drain: cfg.Drain,
			})
			if err != nil {
				return err
			}
			s.Floors = append(s.Floors, floors...)
		}
	}
	var noisy *noisyResult
	if !cfg.SkipNoisy {
		if noisy, err = measureNoisy(ctx, bin, pg, cfg, out); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	r := report{When: time.Now().UTC(), Host: host, CPUs: runtime.NumCPU(), CPU: cpuModel(), Took: time.Since(began),
		Command: "make bench (go run ./cmd/bench " + strings.Join(os.Args[1:], " ") + ")", Settings: settings, Noisy: noisy}
	fmt.Fprintln(out)
	r.write(out)
	path, err := writeReport(cfg.Reports, r)
	if err != nil {
		return err
	}
	if path != "" {
		fmt.Fprintf(out, "\nfull report in %s\n", path)
	}
	if cfg.Out != "" && !cfg.NoisyOnly {
		if err := addRunTo(cfg.Out, r.summary(path)); err != nil {
			return err
		}
		fmt.Fprintf(out, "summary line added to %s\n", cfg.Out)
	}
	return nil
}

// wholeNumbers splits a flag's comma-separated whole numbers.
func wholeNumbers(flag, list string) ([]string, error) {
	var out []string
	for r := range strings.SplitSeq(list, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if n, err := strconv.Atoi(r); err != nil || n <= 0 {
			return nil, fmt.Errorf("%s: %q is not a whole number above zero", flag, r)
		}
		out = append(out, r)
	}
	return out, nil
}

// requestMessageSize is about the size of a submitted request's message.
const requestMessageSize = 700

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
