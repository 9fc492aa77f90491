package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// operatorCommand manages the operators who sign in to the console, and
// the named machine credentials of the operator API: create, list,
// disable, enable, reset; token issue|list|revoke. Every change is in the
// audit log under --operator.
func operatorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const line = "operator create --username NAME --name \"FULL NAME\" [--role operator|viewer] [--language pt] | operator list [--json] |\n" +
		"       operator disable|enable|reset --username NAME | operator token issue|revoke --name NAME [--role operator|viewer] | operator token list"
	about := "Manages the operators of the console (/desk/ops/) and the operator API's machine credentials.\n" +
		"create makes an operator's account, of role operator (everything) or viewer (read only, never a\n" +
		"dead letter's message), and prints a one-time setup code, valid 72 hours, with the link where they\n" +
		"set their password; they may then turn on a second factor (an authenticator app) on their account\n" +
		"page. reset forgets the password and second factor, unlocks the account, ends its sessions and prints\n" +
		"a new code; disable ends the sessions at once. token issue makes a named bearer token for scripts and\n" +
		"Prometheus, printed once; token revoke refuses it from the next request on. Every change is in the\n" +
		"audit log under --operator."
	verb, err := verbOf("operator", []string{"create", "list", "disable", "enable", "reset", "token"}, args, line, about, stderr)
	if verb == "" {
		return err
	}
	rest := args[1:]
	if verb == "token" {
		if len(rest) == 0 || !strings.Contains(" issue list revoke ", " "+rest[0]+" ") {
			return fmt.Errorf("%w: operator token issue|list|revoke", errUsage)
		}
		verb, rest = "token "+rest[0], rest[1:]
	}
	var cfg Config
	var username, name, language, role, operatorName string
	var asJSON bool
	fs := newFlagSet("operator "+verb, line, about, stderr)
	fs.StringVar(&username, "username", "", "the operator's username: lowercase letters, digits, '.', '-' or '_'")
	fs.StringVar(&name, "name", "", "create: the operator's full name; token: the token's name")
	fs.StringVar(&role, "role", string(events.RoleOperator), "create, token issue: operator or viewer")
	fs.StringVar(&language, "language", "pt", "create: the language the console speaks to them in")
	fs.BoolVar(&asJSON, "json", false, "list: print JSON instead of a table")
	fs.StringVar(&operatorName, "operator", defaultOperator(), "who is acting, for the audit log")
	cfg.flags(fs, "")
	if err := parse(fs, rest); err != nil {
		return err
	}
	switch {
	case verb == "create" && (username == "" || name == ""):
		return usageError(fs, "create needs --username and --name")
	case (verb == "disable" || verb == "enable" || verb == "reset") && username == "":
		return usageError(fs, "%s needs --username", verb)
	case (verb == "token issue" || verb == "token revoke") && name == "":
		return usageError(fs, "%s needs --name", verb)
	}
	by := events.By{Actor: operatorActor(operatorName)}
	return withDatabase(ctx, &cfg, stderr, func(s *postgres.Store) error {
		switch verb {
		case "create":
			setup, err := s.CreateOperator(ctx, events.Operator{Username: username, Name: name, Role: events.OperatorRole(role), Language: language}, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, setupOf(setup, cfg.PublicURL, "/desk/ops/setup"))
		case "reset":
			setup, err := s.ResetOperator(ctx, username, by)
			if err != nil {
				return err
			}
			return printJSON(stdout, setupOf(setup, cfg.PublicURL, "/desk/ops/setup"))
		case "disable", "enable":
			if err := s.DisableOperator(ctx, username, verb == "enable", by); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "operator %s %sd\n", username, verb)
			return nil
		case "token issue":
			token, err := s.IssueOperatorToken(ctx, name, events.OperatorRole(role), by)
			if err != nil {
				return err
			}
			return printJSON(stdout, map[string]string{"name": name, "role": role, "token": token})
		case "token revoke":
			if err := s.RevokeOperatorToken(ctx, name, by); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "operator token %s revoked\n", name)
			return nil
		case "token list":
			tokens, err := s.OperatorTokens(ctx)
			if err != nil || asJSON {
				return cmpErr(err, func() error { return printJSON(stdout, tokens) })
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tLAST USED\tREVOKED")
			for _, t := range tokens {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, day(t.CreatedAt), day(t.UsedAt), day(t.RevokedAt))
			}
			return tw.Flush()
		}
		list, err := s.Operators(ctx)
		if err != nil || asJSON {
			return cmpErr(err, func() error { return printJSON(stdout, list) })
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tNAME\tROLE\tLANGUAGE\tPASSWORD\tSECOND FACTOR\tSTATE\tLAST SIGN-IN")
		for _, o := range list {
			password, state := "not set", accountState(o.DisabledAt, o.LockedUntil)
			if o.PasswordSet {
				password = "set"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\n", o.Username, o.Name, o.Role, o.Language, password, o.SecondFactor, state, day(o.SignedInAt))
		}
		return tw.Flush()
	})
}

// cmpErr is err, or else what then returns.
func cmpErr(err error, then func() error) error {
	if err != nil {
		return err
	}
	return then()
}

// day is t's day in UTC, or "-" when t is zero.
func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateOnly)
}
