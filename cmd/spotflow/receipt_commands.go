package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"

	"github.com/spotflow/spotflow/workers/receipts"
)

// receiptCommand checks receipts offline and manages the keys that sign
// them: verify, keys, rotate.
func receiptCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "receipt verify FILE [--keys KEYS.json] | receipt keys | receipt rotate"
	about := "verify checks a receipt file (as the desk application's receipt.json, or - for standard input)\n" +
		"offline: its signature against the public keys, from --keys (the file spotflow publishes at\n" +
		"/receipts/keys.json) or else from --receipt-keys. It prints what the receipt says when it is\n" +
		"valid, and fails when any character of it was changed. keys prints the public keys, as published.\n" +
		"rotate makes a new signing key; receipts signed before keep verifying with their key's ID (delete\n" +
		"an old key's .key file to retire it: its .pub stays published)."
	verb, err := verbOf("receipt", []string{"verify", "keys", "rotate"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var keysFile string
	fs := newFlagSet("receipt "+verb, line, about, stderr)
	fs.StringVar(&keysFile, "keys", "", "verify: the published public keys (keys.json); default: those of --receipt-keys")
	cfg.flags(fs, "")
	rest := args[1:]
	var file string
	if verb == "verify" {
		if len(rest) == 0 || (len(rest[0]) > 1 && rest[0][0] == '-') {
			return usageError(fs, "receipt verify needs the receipt's file")
		}
		file, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if verb == "verify" {
		return verifyReceipt(file, keysFile, cfg.receiptKeys(), stdout)
	}
	keys, err := receipts.OpenKeys(cfg.receiptKeys())
	if err != nil {
		return err
	}
	if verb == "rotate" {
		id, err := keys.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new signing key %s in %s\n", id, cfg.receiptKeys())
		return nil
	}
	return printJSON(stdout, keys.Published())
}

func verifyReceipt(file, keysFile, keyDir string, stdout io.Writer) error {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	signed, err := receipts.Parse(data)
	if err != nil {
		return err
	}
	var keys map[string]ed25519.PublicKey
	if keysFile != "" {
		b, err := os.ReadFile(keysFile)
		if err != nil {
			return err
		}
		if keys, err = receipts.ParsePublished(b); err != nil {
			return err
		}
	} else {
		local, err := receipts.OpenKeys(keyDir)
		if err != nil {
			return err
		}
		keys = local.Public()
	}
	if err := receipts.Verify(signed, keys); err != nil {
		return fmt.Errorf("receipt %s is NOT valid: %w", file, err)
	}
	r := signed.Receipt
	fmt.Fprintf(stdout, "valid: receipt %s, signed with key %s\ndesk %s (%s), mediator %s, started %s, consent %s\n",
		r.Visit, signed.KeyID, r.DeskName, r.Desk, r.Mediator, r.StartedAt.Format("2006-01-02 15:04 UTC"), r.ConsentVersion)
	if r.Training {
		fmt.Fprintln(stdout, "practice: made in training mode; its requests went to simulated agencies only")
	}
	for _, req := range r.Requests {
		fmt.Fprintf(stdout, "  %s  %s  submitted %s, expected by %s\n", req.ID, req.Service,
			req.SubmittedAt.Format("2006-01-02 15:04 UTC"), req.ExpectedBy.Format("2006-01-02"))
	}
	return nil
}
