// Command chaos is spotflow's fault suite. It runs spotflow's roles as
// separate OS processes against a real NATS server and a real Postgres, all on
// loopback under one temporary data directory, drives a load of desk
// submissions through them, and injects faults one scenario at a time:
// kill -9 of worker processes, NATS server restarts, Postgres stopped,
// an agency failing transiently, an agency slower than the ack wait, poison
// messages published straight onto NATS, and duplicate submissions. A ledger
// then compares every request that got 202 with Postgres and with the
// simulated agencies' journals and prints, per scenario, how many requests
// were lost, applied twice or dead-lettered and how long the backlog took to
// drain once the fault ended.
//
// It exits 0 when the run passes (nothing lost, nothing applied twice, dead
// letters exactly the poison messages, every backlog drained within 60
// seconds of its fault ending), 1 when it fails, and 2 on bad usage.
//
//	go run ./cmd/chaos --spotflow bin/spotflow            # the full suite
//	go run ./cmd/chaos --reduced                         # the short form make test runs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the suite and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Spotflow, "spotflow", "", "path to the spotflow binary; default: build ./cmd/spotflow into a temporary directory")
	fs.IntVar(&cfg.Requests, "requests", 0, "requests in all, shared among the scenarios (default 2100; 210 with --reduced)")
	fs.IntVar(&cfg.Desks, "desks", 0, "desks submitting (default 10)")
	fs.BoolVar(&cfg.Reduced, "reduced", false, "the short form: fewer requests, every fault once, short outages")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the data directory (logs, journals, NATS store, Postgres cluster) after the run")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the random choices (victims, moments); default: from the clock")
	fs.Func("scenarios", "run only these scenarios, comma-separated (kill-workers, nats-restart, postgres-down, agency-transient, agency-slow, poison, duplicates, burst; with --cluster: leader-kill, quorum-loss, lame-duck)", func(v string) error {
		cfg.Scenarios = strings.Split(v, ",")
		return nil
	})
	fs.StringVar(&cfg.LogLevel, "log-level", "warn", "log level of the spotflow roles, whose logs go to <data dir>/logs")
	fs.BoolVar(&cfg.Cluster, "cluster", false, "run on a three-node NATS cluster (nats-server, TLS, streams of three replicas, two intakes) with the cluster's faults: the stream leader killed, quorum lost, lame-duck restarts")
	fs.StringVar(&cfg.NATSServer, "nats-server", "", "with --cluster: the nats-server binary; default: built from go.mod")
	fs.BoolVar(&cfg.NationalDay, "national-day", false, "with --cluster: no fault, but a country's day (765 desks, 308 municipalities, 45,900 requests, two peaks, desks going offline) compressed to ten minutes, three processes of every role; the dashboard's figures must equal Postgres's")
	fs.StringVar(&cfg.NATSConf, "nats-conf", "", "with --cluster: the nodes' configuration; default deploy/nats/cluster.conf")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "where to create the run's data directory; default: the system's temporary directory")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: chaos [flags]\n\n"+
			"Runs spotflow's roles as separate processes against a real nats-server and Postgres,\n"+
			"injects faults under load, and prints a ledger per scenario. Exits 1 if the run fails.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		fmt.Fprintf(stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.Log = stderr

	if cfg.Spotflow == "" {
		dir, err := os.MkdirTemp("", "spotflow-chaos-bin-")
		if err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.Spotflow = filepath.Join(dir, "spotflow")
		if err := buildSpotflow(ctx, cfg.Spotflow, stderr); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
	}

	report, err := Run(ctx, cfg)
	fmt.Fprint(stdout, report.Table())
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	if !report.Pass() {
		return 1
	}
	return 0
}

// buildSpotflow builds ./cmd/spotflow of the module in the working directory
// into out.
func buildSpotflow(ctx context.Context, out string, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/spotflow/spotflow/cmd/spotflow")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build spotflow: %w", err)
	}
	return nil
}
