package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres"
)

// agencyCommand issues, lists and revokes the credentials agencies connect
// to NATS with. A credential takes effect, or stops, within seconds on a
// running server, without a restart.
func agencyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "agency issue --agency CODE [--out FILE] | agency list [--agency CODE] [--revoked] | agency revoke --agency CODE [--key PUBLIC_KEY]"
	about := "Manages agencies' NATS credentials. issue makes a new nkey for an agency, records its public\n" +
		"half and prints (or writes to --out, mode 0600) its seed, shown only this once, with how to\n" +
		"connect; an agency may hold several at once, to rotate: issue a new one, switch, revoke the\n" +
		"old. revoke ends one credential (--key) or all of an agency's; its connections are closed.\n" +
		"Both take effect within seconds on a running server, and are in the audit log under --operator."
	if len(args) == 0 || (args[0] != "issue" && args[0] != "list" && args[0] != "revoke") {
		newFlagSet("agency", line, about, stderr).Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return fmt.Errorf("%w: agency needs issue, list or revoke", errUsage)
	}
	verb := args[0]
	var cfg Config
	var agency, out, key, operatorName string
	var revoked bool
	fs := newFlagSet("agency "+verb, line, about, stderr)
	fs.StringVar(&agency, "agency", "", "the agency's code, as in the catalogue")
	fs.StringVar(&out, "out", "", "issue: write the seed to this file (mode 0600) instead of printing it")
	fs.StringVar(&key, "key", "", "revoke: the public key of the one credential to revoke; default: all of the agency's")
	fs.BoolVar(&revoked, "revoked", false, "list: the revoked credentials too")
	fs.StringVar(&operatorName, "operator", os.Getenv("USER"), "who is acting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if verb != "list" && agency == "" {
		fs.Usage()
		return fmt.Errorf("%w: %s needs --agency", errUsage, verb)
	}
	catalog, err := loadCatalog(cfg.CatalogFile)
	if err != nil {
		return err
	}
	if _, ok := catalog.Agency(agency); !ok && agency != "" {
		return fmt.Errorf("agency %q is not in the catalogue", agency)
	}
	actor := "operator:" + cmp.Or(operatorName, "unnamed")
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		switch verb {
		case "issue":
			return issueAgencyCredential(ctx, store, agency, out, actor, stdout)
		case "revoke":
			n, err := store.RevokeAgencyCredential(ctx, agency, key, actor)
			if err != nil {
				return fmt.Errorf("revoke %s's credential: %w", agency, err)
			}
			fmt.Fprintf(stdout, "revoked %d credential(s) of %s\n", n, agency)
			return nil
		}
		creds, err := store.AgencyCredentials(ctx, agency, "", revoked)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AGENCY\tPUBLIC KEY\tISSUED\tREVOKED")
		for _, c := range creds {
			revokedAt := ""
			if c.RevokedAt != nil {
				revokedAt = c.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Agency, c.PublicKey, c.CreatedAt.Format(time.RFC3339), revokedAt)
		}
		return tw.Flush()
	})
}

// issueAgencyCredential makes a new credential for agency, records its
// public half, and gives its seed: in file out, or on stdout.
func issueAgencyCredential(ctx context.Context, store *postgres.Store, agency, out, actor string, stdout io.Writer) error {
	seed, err := natsbus.NewSeed()
	if err != nil {
		return err
	}
	pub, err := seed.PublicKey()
	if err != nil {
		return err
	}
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("write the seed: %w", err)
		}
		_, werr := f.Write(append(seed, '\n'))
		if err := cmp.Or(werr, f.Close()); err != nil {
			return fmt.Errorf("write the seed: %w", err)
		}
	}
	if err := store.AddAgencyCredential(ctx, agency, pub, actor); err != nil {
		if out != "" {
			_ = os.Remove(out)
		}
		return err
	}
	issued := map[string]string{
		"agency":       agency,
		"public_key":   pub,
		"inbox_prefix": natsbus.InboxPrefix(natsbus.AgencyIdentity(agency)),
		"stream":       events.WorkStream,
		"consumer":     events.AgencyConsumer(agency),
		"publish":      events.StatusSubject(agency),
	}
	if out != "" {
		issued["seed_file"] = out
	} else {
		issued["seed"] = string(seed)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(issued)
}
