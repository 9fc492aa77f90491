package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// auditCommand verifies, links and lists the audit log.
func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "audit verify [--anchor SEQ:HASH]... | audit verify --file EXPORT | audit chain |\n" +
		"       audit list [--actor A] [--action X] [--target T] [--since WHEN] [--limit N] [--json] | audit export --from DAY --to DAY [--file OUT]"
	about := "The audit log records every action by a person: desk and agency credentials issued, rotated,\n" +
		"revoked; each submission with its mediator; replays; dead letters viewed; look-ups, erasures and\n" +
		"sign-ins. Nobody may change or delete an entry (the database refuses), and each is linked into a\n" +
		"hash chain: link n holds SHA-256(hash of link n-1 || link n's entry). chain links the entries\n" +
		"waiting for it, at once (a chainer does so periodically). verify recomputes the whole chain\n" +
		"and exits non-zero naming the first link or entry that does not check; it prints the last link,\n" +
		"SEQ:HASH: note it down elsewhere and give it to a later verify with --anchor, which checks that\n" +
		"the chain still passes through it (a database owner could otherwise recompute the whole chain).\n" +
		"list prints entries, newest first. export writes the links whose entries are from --from to --to\n" +
		"(days, UTC, inclusive) as JSON Lines, each with its entry as hashed; verify --file checks such a\n" +
		"file offline, without the database: each link's hash, and that consecutive links follow."
	verb, err := verbOf("audit", []string{"verify", "chain", "list", "export"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var anchors anchorList
	var q events.AuditQuery
	var action, since, file, fromDay, toDay, operatorName string
	var asJSON bool
	fs := newFlagSet("audit "+verb, line, about, stderr)
	fs.Var(&anchors, "anchor", "verify: a link printed by an earlier verify, SEQ:HASH, the chain must still hold (repeatable)")
	fs.StringVar(&q.Actor, "actor", "", "list: only this actor's entries, e.g. operator:ana or mediator:rui.lopes")
	fs.StringVar(&action, "action", "", "list: only this action, e.g. desk_credential_revoked")
	fs.StringVar(&q.Target, "target", "", "list: only entries on this target, e.g. a desk's or a request's id")
	fs.StringVar(&since, "since", "", "list: only entries since WHEN: a Go duration back from now (24h) or an RFC 3339 time")
	fs.IntVar(&q.Limit, "limit", 100, "list: at most this many entries")
	fs.BoolVar(&asJSON, "json", false, "list, verify: print JSON")
	fs.StringVar(&file, "file", "", "verify: an export to check offline; export: where to write it (default: standard output)")
	fs.StringVar(&fromDay, "from", "", "export: the first day, YYYY-MM-DD (default: 7 days before --to)")
	fs.StringVar(&toDay, "to", "", "export: the last day, YYYY-MM-DD (default: today)")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "export: who is exporting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if verb == "verify" && file != "" {
		return verifyAuditFile(file, stdout)
	}
	if action != "" {
		if q.Action = events.AuditAction(action); !q.Action.Known() {
			return usageError(fs, "--action %q is not an action the audit log records", action)
		}
	}
	if since != "" {
		if d, err := time.ParseDuration(since); err == nil {
			q.Since = time.Now().Add(-d)
		} else if q.Since, err = time.Parse(time.RFC3339, since); err != nil {
			return usageError(fs, "--since %q: want a duration (24h) or an RFC 3339 time", since)
		}
	}
	return withDatabase(ctx, &cfg, stderr, func(store *postgres.Store) error {
		switch verb {
		case "chain":
			n, err := store.ChainAudit(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "linked %d entries\n", n)
			return nil
		case "export":
			return exportAuditDays(ctx, store, events.By{Actor: operatorActor(operatorName)}, fromDay, toDay, file, stdout)
		case "verify":
			st, err := store.VerifyAudit(ctx, anchors...)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdout, st)
			}
			fmt.Fprintf(stdout, "audit log intact: %d entries linked, %d waiting for the chainer; last link %d:%s\n",
				st.Linked, st.Pending, st.HeadSeq, st.HeadHash)
			return nil
		}
		entries, err := store.AuditEntries(ctx, q)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, entries)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tSEQ\tACTOR\tACTION\tTARGET\tREASON")
		for _, e := range entries {
			seq := "-"
			if e.Seq > 0 {
				seq = strconv.FormatInt(e.Seq, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), seq, e.Actor, e.Action, e.Target, e.Reason)
		}
		return tw.Flush()
	})
}

// verifyAuditFile checks an export of the audit log offline.
func verifyAuditFile(path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, links, err := readAuditExport(f)
	if err != nil {
		return err
	}
	if len(links) != h.Links {
		return fmt.Errorf("audit export %s: it says %d links and holds %d", path, h.Links, len(links))
	}
	if err := postgres.VerifyAuditLinks(links); err != nil {
		return err
	}
	first, last := int64(0), int64(0)
	if len(links) > 0 {
		first, last = links[0].Seq, links[len(links)-1].Seq
	}
	fmt.Fprintf(stdout, "audit export intact: %d links (%d to %d) from %s to %s; the chain's last link then was %d:%s\n",
		len(links), first, last, h.From.Format(time.DateOnly), h.To.AddDate(0, 0, -1).Format(time.DateOnly), h.HeadSeq, h.HeadHash)
	return nil
}

// exportAuditDays writes the export of the days from to to (inclusive) to
// file, or to stdout, on behalf of by (in the audit log).
func exportAuditDays(ctx context.Context, store *postgres.Store, by events.By, fromDay, toDay, file string, stdout io.Writer) error {
	to := time.Now().UTC().Truncate(24 * time.Hour)
	var err error
	if toDay != "" {
		if to, err = time.Parse(time.DateOnly, toDay); err != nil {
			return fmt.Errorf("%w: --to %q: want YYYY-MM-DD", errUsage, toDay)
		}
	}
	from := to.AddDate(0, 0, -7)
	if fromDay != "" {
		if from, err = time.Parse(time.DateOnly, fromDay); err != nil {
			return fmt.Errorf("%w: --from %q: want YYYY-MM-DD", errUsage, fromDay)
		}
	}
	if err := store.Audit(ctx, by, events.AuditExported, "audit",
		map[string]any{"from": from.Format(time.DateOnly), "to": to.Format(time.DateOnly)}); err != nil {
		return err
	}
	w := stdout
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return exportAudit(ctx, store, w, from, to.AddDate(0, 0, 1))
}

// anchorList is the --anchor flags: links SEQ:HASH.
type anchorList []postgres.AuditAnchor

func (a *anchorList) String() string {
	parts := make([]string, len(*a))
	for i, x := range *a {
		parts[i] = fmt.Sprintf("%d:%s", x.Seq, x.Hash)
	}
	return strings.Join(parts, ",")
}

func (a *anchorList) Set(s string) error {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n <= 0 || len(hash) != 64 {
		return fmt.Errorf("want SEQ:HASH, as verify prints the last link, got %q", s)
	}
	*a = append(*a, postgres.AuditAnchor{Seq: n, Hash: hash})
	return nil
}

// defaultOperator is who runs the command, for the audit log: $USER, or
// else the name of the process's user.
func defaultOperator() string {
	if name := os.Getenv("USER"); name != "" {
		return name
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// operatorActor is how the audit log names the operator name.
func operatorActor(name string) string {
	return "operator:" + cmp.Or(strings.TrimSpace(name), "unnamed")
}

// showDeadLetter prints dead letter id, without its message, once the
// view is recorded in the audit log on behalf of by, who must say why.
// `spotflow dead show` calls it.
func showDeadLetter(ctx context.Context, store *postgres.Store, id int64, by events.By, stdout io.Writer) error {
	if strings.TrimSpace(by.Reason) == "" {
		return fmt.Errorf("%w: viewing a dead letter needs --reason: say why, for the audit log", errUsage)
	}
	d, err := store.ViewDeadLetter(ctx, id, by)
	if err != nil && !errors.Is(err, events.ErrPersonalDataDeleted) { // the record stays when its message goes
		return err
	}
	return printJSON(stdout, d)
}
