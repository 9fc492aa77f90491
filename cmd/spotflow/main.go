// Command spotflow carries citizens' service requests from assisted-service
// desks to the back offices of public agencies. One binary holds every role:
// `spotflow run` starts them all on embedded defaults, and each role can run
// alone, as many processes as needed, against shared NATS and Postgres.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "spotflow:", err)
		}
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// tuneGC trades memory for CPU where the operator has not chosen: the
// pipeline allocates many short-lived messages, and at Go's default
// (GOGC=100) the collector takes a tenth of the process's CPU at full load.
// Collecting at 300% growth, under a soft limit of 400 MiB of Go memory,
// keeps the all-in-one well under half a gigabyte. GOGC and GOMEMLIMIT,
// when set, win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(400 << 20)
	}
}

var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "start the whole system: embedded NATS, local Postgres, every role", runAll},
		{"intake", "run the desk API (HTTP) alone", roleCommand("intake", roleIntake)},
		{"router", "run the router alone", roleCommand("router", roleRouter)},
		{"dispatcher", "run the dispatcher (agency adapters) alone", roleCommand("dispatcher", roleDispatcher)},
		{"projector", "run the Postgres projector alone", roleCommand("projector", roleProjector)},
		{"migrate", "apply database migrations", migrateCommand},
		{"desk", "manage desks and their credentials: desk create|list|issue|rotate|expire|revoke", deskCommand},
		{"mediator", "manage mediators' accounts in the desk application: mediator create|list|disable|enable|reset", mediatorCommand},
		{"operator", "manage operators of the console and the operator API's tokens: operator create|list|disable|enable|reset|token", operatorCommand},
		{"receipt", "check a visit's signed receipt offline, and manage the keys that sign them: receipt verify|keys|rotate", receiptCommand},
		{"audit", "verify, link, list and export the audit log: audit verify|chain|list|export", auditCommand},
		{"citizen", "erase a citizen's personal data: citizen erase", citizenCommand},
		{"agency", "manage agencies' NATS credentials: agency issue|list|revoke", agencyCommand},
		{"edge", "run a desk's edge, which keeps the desk working offline, and manage edges at the hub: edge run|issue|list|revoke", edgeCommand},
		{"nats-config", "print the users block of a NATS server of one's own", natsConfigCommand},
		{"loadgen", "drive a running spotflow with desk submissions and report throughput and latency", loadgenCommand},
		{"dead", "inspect and replay dead letters: dead list|show|replay", deadCommand},
		{"nats", "run the NATS server (JetStream on disk) alone", natsCommand},
		{"agencies", "run the simulated agencies as an HTTP service with a durable journal", agenciesCommand},
		{"postgres", "manage the local Postgres cluster: postgres start|stop|url", postgresCommand},
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: spotflow <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'spotflow <command> --help' for a command's flags.")
}
