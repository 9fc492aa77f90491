package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// mediatorCommand manages the accounts mediators sign in to the desk
// application with: create, list, disable, enable, reset and trainer.
// Every change is in the audit log under --operator.
func mediatorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "mediator create --desk ID --username NAME --name \"FULL NAME\" [--language pt] [--trainer] | mediator list [--desk ID] [--json] |\n" +
		"       mediator disable|enable|reset --username NAME | mediator trainer --username NAME [--trainer=false]"
	about := "Manages mediators' accounts in the desk application (/desk/). create makes an account at a desk\n" +
		"and prints a one-time setup code, valid 72 hours, with the link where the mediator sets their\n" +
		"password (--public-url makes it absolute). reset forgets the password, unlocks the account, ends\n" +
		"its sessions and prints a new code. disable ends the mediator's sessions at once and refuses\n" +
		"their sign-in until enable. A trainer (create --trainer, or trainer) prepares practice scenarios\n" +
		"and follows the training visits of the mediators of their municipality on /desk/training.\n" +
		"Every change is in the audit log under --operator."
	verb, err := verbOf("mediator", []string{"create", "list", "disable", "enable", "reset", "trainer"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	var cfg Config
	var deskID, username, name, language, operatorName string
	var asJSON, trainer bool
	fs := newFlagSet("mediator "+verb, line, about, stderr)
	fs.StringVar(&deskID, "desk", "", "create: the mediator's desk (required); list: only its mediators")
	fs.StringVar(&username, "username", "", "the mediator's username: lowercase letters, digits, '.', '-' or '_' (required but by list)")
	fs.StringVar(&name, "name", "", "create: the mediator's full name (required)")
	fs.StringVar(&language, "language", "pt", "create: the language the desk application speaks to them in")
	fs.BoolVar(&asJSON, "json", false, "list: print JSON instead of a table")
	fs.BoolVar(&trainer, "trainer", verb == "trainer", "create: the mediator is a trainer too; trainer: whether they are one (--trainer=false: no longer)")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "who is acting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case verb == "create" && (deskID == "" || username == "" || name == ""):
		return usageError(fs, "create needs --desk, --username and --name")
	case verb != "create" && verb != "list" && username == "":
		return usageError(fs, "%s needs --username", verb)
	}
	by := events.By{Actor: operatorActor(operatorName)}
	return withDatabase(ctx, &cfg, stderr, func(s *postgres.Store) error {
		switch verb {
		case "create":
			setup, err := s.CreateMediator(ctx, events.Mediator{Username: username, DeskID: deskID, Name: name, Language: language, Trainer: trainer}, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, setupOf(setup, cfg.PublicURL, "/desk/setup"))
		case "reset":
			setup, err := s.ResetMediator(ctx, username, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, setupOf(setup, cfg.PublicURL, "/desk/setup"))
		case "disable", "enable":
			if err := s.DisableMediator(ctx, username, verb == "enable", by); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "mediator %s %sd\n", username, verb)
			return nil
		case "trainer":
			if err := s.SetTrainer(ctx, username, trainer, by); err != nil {
				return err
			}
			state := "is a trainer"
			if !trainer {
				state = "is no longer a trainer"
			}
			fmt.Fprintf(stdout, "mediator %s %s\n", username, state)
			return nil
		}
		list, err := s.Mediators(ctx, deskID)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, list)
		}
		return printMediators(stdout, list)
	})
}

// mediatorSetup is what create and reset print: the code, and the link
// where the mediator uses it.
type mediatorSetup struct {
	events.MediatorSetup
	Link string `json:"link"`
}

// setupOf is a setup code with the link, under publicURL and path (the desk
// application's /desk/setup or the console's /desk/ops/setup), that uses it.
func setupOf(s events.MediatorSetup, publicURL, path string) mediatorSetup {
	return mediatorSetup{MediatorSetup: s, Link: strings.TrimSuffix(publicURL, "/") + path + "?code=" + url.QueryEscape(s.Code)}
}

// accountState says whether an account is active, disabled (since when) or
// locked (until when), as the lists of mediators and operators print it.
func accountState(disabled, lockedUntil time.Time) string {
	switch {
	case !disabled.IsZero():
		return "disabled " + disabled.UTC().Format(time.DateOnly)
	case lockedUntil.After(time.Now()):
		return "locked until " + lockedUntil.UTC().Format(time.RFC3339)
	}
	return "active"
}

func printMediators(w io.Writer, list []events.Mediator) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tDESK\tNAME\tLANGUAGE\tROLE\tPASSWORD\tSTATE\tLAST SIGN-IN")
	for _, m := range list {
		password, state, last, role := "not set", accountState(m.DisabledAt, m.LockedUntil), "never", "mediator"
		if m.Trainer {
			role = "trainer"
		}
		if m.PasswordSet {
			password = "set"
		}
		if !m.SignedInAt.IsZero() {
			last = m.SignedInAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Username, m.DeskID, m.Name, m.Language, role, password, state, last)
	}
	return tw.Flush()
}
