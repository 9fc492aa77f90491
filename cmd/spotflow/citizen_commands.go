package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// citizenCommand erases a citizen's personal data: `spotflow citizen
// erase`.
func citizenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var stdin io.Reader = os.Stdin
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		stdin = io.MultiReader(promptReader{stderr}, os.Stdin) // a person at a terminal
	}
	return citizen(ctx, args, stdin, stdout, stderr)
}

// promptReader asks for the national ID on w when it is first read from,
// and reads nothing.
type promptReader struct{ w io.Writer }

func (p promptReader) Read([]byte) (int, error) {
	fmt.Fprint(p.w, "national ID: ")
	return 0, io.EOF
}

// citizen is citizenCommand reading a national ID given as "-" from stdin.
func citizen(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const line = "citizen erase --national-id ID|- --reason WHY [--operator NAME] [--json] [flags]"
	about := "Erases a citizen's personal data from Postgres, past recovery by any query or key, and records the\n" +
		"erasure in the audit log with --operator and --reason (required), never the citizen. The citizen's\n" +
		"requests keep their place in every count and roll-up but lose the keyed hash of the national ID,\n" +
		"the visit, agencies' notes and every sealed copy: requests kept for the reconciler, dead letters'\n" +
		"messages (they can no longer be replayed). Requests still under way are erased too and listed. The\n" +
		"agencies listed received the citizen's data and keep it under their own rules; JetStream keeps the\n" +
		"requests until --stream-max-age passes (docs/personal-data.md). Give --national-id - to read the\n" +
		"ID from the first line of standard input, which keeps it out of shell history and the process\n" +
		"list. Use the citizen key the pipeline uses (--citizen-key, or the data directory's)."
	if verb, err := verbOf("citizen", []string{"erase"}, args, line, about, stderr); verb == "" {
		return err
	}
	var cfg Config
	var nationalID, reason, operatorName string
	var asJSON bool
	fs := newFlagSet("citizen erase", line, about, stderr)
	fs.StringVar(&nationalID, "national-id", "", "the citizen's national ID, or - to read it from standard input (required)")
	fs.StringVar(&reason, "reason", "", "why, for the audit log (required)")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "who is acting, for the audit log")
	fs.BoolVar(&asJSON, "json", false, "print what was erased as JSON")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if strings.TrimSpace(reason) == "" {
		return usageError(fs, "erasing a citizen needs --reason: say why, for the audit log")
	}
	if nationalID == "-" {
		var err error
		if nationalID, err = readNationalID(stdin); err != nil {
			return err
		}
	}
	if strings.TrimSpace(nationalID) == "" {
		return usageError(fs, "erasing a citizen needs --national-id (or --national-id - to read it from standard input)")
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		e, err := store.EraseCitizen(ctx, nationalID, events.By{Actor: operatorActor(operatorName), Reason: reason})
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, e)
		}
		printErasure(stdout, e)
		return nil
	})
}

// readNationalID reads a national ID from the first line of r.
func readNationalID(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 1<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the national ID from standard input: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// printErasure tells an operator what an erasure did.
func printErasure(w io.Writer, e events.Erasure) {
	if len(e.Requests) == 0 {
		fmt.Fprintf(w, "erasure %s: no request of this citizen left to erase (erased before, or never served; "+
			"the national ID is matched as given, in upper and in lower case)\n", e.ID)
	} else {
		fmt.Fprintf(w, "erasure %s: erased %d request(s): %s\n", e.ID, len(e.Requests), strings.Join(e.Requests, " "))
	}
	if len(e.UnderWay) > 0 {
		fmt.Fprintf(w, "still under way: %s (carried on to their agencies; they can no longer be re-driven or replayed)\n",
			strings.Join(e.UnderWay, " "))
	}
	if len(e.Agencies) > 0 {
		fmt.Fprintf(w, "agencies that received the citizen's data, to tell of the erasure: %s\n", strings.Join(e.Agencies, " "))
	}
	fmt.Fprintf(w, "sealed copies deleted: %d of requests, %d of dead letters; recorded in the audit log as %s\n",
		e.SealedRequests, e.DeadLetters, e.ID)
}
