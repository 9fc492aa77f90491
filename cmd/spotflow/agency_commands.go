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
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/postgres"
)

// agencyCommand issues, lists and revokes the credentials agencies connect
// to NATS with. A credential takes effect, or stops, within seconds on a
// running server, without a restart.
func agencyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "agency issue --agency CODE [--token] [--out FILE] | agency list [--agency CODE] [--revoked] | agency revoke --agency CODE [--key KEY] | agency secret [--out FILE]"
	about := "Manages agencies' credentials. issue makes a new nkey with which an agency consumes its queue\n" +
		"and reports on NATS, or with --token a token with which it reports statuses over HTTPS; it\n" +
		"records the public half (of a token, its SHA-256) and prints (or writes to --out, mode 0600)\n" +
		"the secret, shown only this once, with how to use it. An agency may hold several at once, to\n" +
		"rotate: issue a new one, switch, revoke the old. revoke ends one credential (--key, as list\n" +
		"shows it) or all of an agency's; its NATS connections are closed. Both take effect within\n" +
		"seconds on a running system, and are in the audit log under --operator. secret makes a new\n" +
		"secret to sign deliveries to an HTTP agency with: give it to the agency and to the dispatcher\n" +
		"(the delivery configuration's signing_secret_file or signing_secret_env)."
	if len(args) > 0 && args[0] == "secret" {
		return signingSecretCommand(args[1:], line, about, stdout, stderr)
	}
	verb, err := verbOf("agency", []string{"issue", "list", "revoke"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var agency, out, key, operatorName string
	var revoked, overHTTP bool
	fs := newFlagSet("agency "+verb, line, about, stderr)
	fs.StringVar(&agency, "agency", "", "the agency's code, as in the catalogue")
	fs.StringVar(&out, "out", "", "issue: write the seed or token to this file (mode 0600) instead of printing it")
	fs.BoolVar(&overHTTP, "token", false, "issue: a token for status reports over HTTPS, not an nkey for NATS")
	fs.StringVar(&key, "key", "", "revoke: the key of the one credential to revoke, as list shows it; default: all of the agency's")
	fs.BoolVar(&revoked, "revoked", false, "list: the revoked credentials too")
	fs.StringVar(&operatorName, "operator", os.Getenv("USER"), "who is acting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if verb != "list" && agency == "" {
		return usageError(fs, "%s needs --agency", verb)
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
			if overHTTP {
				return issueAgencyToken(ctx, store, agency, out, actor, stdout)
			}
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
		fmt.Fprintln(tw, "AGENCY\tKIND\tKEY\tISSUED\tREVOKED")
		for _, c := range creds {
			revokedAt := ""
			if c.RevokedAt != nil {
				revokedAt = c.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Agency, c.Kind, c.PublicKey, c.CreatedAt.Format(time.RFC3339), revokedAt)
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

// issueAgencyToken makes a new token with which agency reports statuses
// over HTTPS, records its SHA-256, and gives the token: in file out, or on
// stdout.
func issueAgencyToken(ctx context.Context, store *postgres.Store, agency, out, actor string, stdout io.Writer) error {
	var f *os.File
	if out != "" {
		var err error
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return fmt.Errorf("write the token: %w", err)
		}
	}
	token, key, err := store.AddAgencyToken(ctx, agency, actor)
	if err == nil && f != nil {
		_, werr := f.WriteString(token + "\n")
		if err = cmp.Or(werr, f.Close()); err != nil {
			_, _ = store.RevokeAgencyCredential(context.WithoutCancel(ctx), agency, key, actor)
			err = fmt.Errorf("write the token: %w", err)
		}
	}
	if err != nil {
		if f != nil {
			_ = f.Close()
			_ = os.Remove(out)
		}
		return err
	}
	issued := map[string]string{
		"agency":   agency,
		"key":      key,
		"endpoint": "POST /v1/agency/work-items/{work_item_id}/status",
		"header":   "Authorization: Bearer <token>",
	}
	if out != "" {
		issued["token_file"] = out
	} else {
		issued["token"] = token
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(issued)
}

// signingSecretCommand prints a new signing secret, or writes it to a new
// file of mode 0600.
func signingSecretCommand(args []string, line, about string, stdout, stderr io.Writer) error {
	var out string
	fs := newFlagSet("agency secret", line, about, stderr)
	fs.StringVar(&out, "out", "", "write the secret to this new file (mode 0600) instead of printing it")
	if err := parse(fs, args); err != nil {
		return err
	}
	secret := httpadapter.NewSigningSecret() + "\n"
	if out == "" {
		_, err := io.WriteString(stdout, secret)
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write the secret: %w", err)
	}
	_, werr := f.WriteString(secret)
	if err := cmp.Or(werr, f.Close()); err != nil {
		return fmt.Errorf("write the secret: %w", err)
	}
	return nil
}
