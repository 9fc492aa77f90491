package natsbus

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/spotflow/spotflow/events"
)

// Identities on the bus. Every connection to NATS is one of them, an nkey
// user (NATS's own challenge-response: the server holds only the public
// key, the client signs the server's nonce with its seed), and may use only
// the subjects and JetStream API calls its grant allows; nothing is
// anonymous.
const (
	// Admin provisions streams and consumers. Only the process that owns
	// the server, and `spotflow provision`, use it.
	Admin = "admin"
	// The pipeline's roles, one identity each.
	Intake     = "intake"
	Router     = "router"
	Dispatcher = "dispatcher"
	Projector  = "projector"
)

// Roles are the pipeline roles' identities.
var Roles = []string{Intake, Router, Dispatcher, Projector}

// AgencyIdentity names the identity an agency connects with.
func AgencyIdentity(agency string) string { return "agency-" + agency }

// InboxPrefix is where an identity receives replies (publish acks, pulled
// messages, API answers): its own inbox, which no other identity may read.
// Clients set it as their inbox prefix (nats.go CustomInboxPrefix, nats.js
// inboxPrefix).
func InboxPrefix(identity string) string { return "_INBOX_" + identity }

// Grant is what an identity may do on the bus.
type Grant struct {
	// Identity names it; its inbox is InboxPrefix(Identity).
	Identity string
	// Publish lists the subjects, JetStream API calls among them, it may
	// publish on.
	Publish []string
}

// Permissions are the server's permissions for g: publish on g's subjects,
// subscribe to its own inbox, nothing else.
func (g Grant) Permissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(g.Publish)},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(g.Identity) + ".>"}},
	}
}

// The JetStream API subjects grants are made of.
func apiInfo(stream, consumer string) string {
	return "$JS.API.CONSUMER.INFO." + stream + "." + consumer
}

// pullGrant is what consuming one durable pull consumer takes: reading it,
// pulling from it, and acknowledging (ack, NAK, in progress, term) what it
// delivered, in both forms of JetStream's ack subject.
func pullGrant(stream, consumer string) []string {
	return []string{
		apiInfo(stream, consumer),
		"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer,
		"$JS.ACK." + stream + "." + consumer + ".>",
		"$JS.ACK.*.*." + stream + "." + consumer + ".>",
	}
}

// observe is reading the state of spotflow's streams and consumers, for
// metrics and the dashboard's backlog: counts only, no message.
func observe() []string {
	var out []string
	for _, s := range []string{events.EventsStream, events.WorkStream, events.AdvisoryStream} {
		out = append(out, "$JS.API.STREAM.INFO."+s, "$JS.API.CONSUMER.LIST."+s, "$JS.API.CONSUMER.INFO."+s+".*")
	}
	return out
}

// RoleGrant is what a pipeline role may do, given the agencies whose queues
// the dispatcher serves through adapters (an agency that consumes its own
// queue is left out of it):
//   - intake publishes requests; with the operator API it replays dead
//     letters, which republishes requests, work items and status events;
//   - the router consumes requests and publishes routed events and work
//     items, and, reconciling, requests again;
//   - the dispatcher consumes the adapter agencies' queues and the
//     advisories of work items whose deliveries ran out, publishes
//     dispatched and failed events and its agencies' answers, and reads and
//     removes work items whose deliveries ran out;
//   - the projector consumes the events stream and publishes nothing;
//   - admin creates and updates streams and consumers.
//
// Every role but admin may also observe the streams' and consumers' state.
func RoleGrant(role string, adapterAgencies []string) (Grant, error) {
	g := Grant{Identity: role}
	switch role {
	case Admin:
		g.Publish = []string{"$JS.API.>"}
		return g, nil
	case Intake:
		g.Publish = []string{events.RequestSubjects, events.WorkSubjects, events.StatusSubjects}
	case Router:
		g.Publish = append(pullGrant(events.EventsStream, events.RouterConsumer),
			events.StatusSubject(events.SourceRouter), events.WorkSubjects, events.RequestSubjects)
	case Dispatcher:
		g.Publish = append(pullGrant(events.AdvisoryStream, events.UndeliveredConsumer),
			events.StatusSubject(events.SourceDispatcher),
			"$JS.API.STREAM.MSG.GET."+events.WorkStream, "$JS.API.DIRECT.GET."+events.WorkStream,
			"$JS.API.STREAM.MSG.DELETE."+events.WorkStream)
		for _, a := range append([]string{events.SourcePractice}, adapterAgencies...) {
			g.Publish = append(g.Publish, pullGrant(events.WorkStream, events.AgencyConsumer(a))...)
			g.Publish = append(g.Publish, events.StatusSubject(a))
		}
	case Projector:
		g.Publish = pullGrant(events.EventsStream, events.ProjectorConsumer)
	default:
		return Grant{}, fmt.Errorf("no grant for role %q", role)
	}
	g.Publish = append(g.Publish, observe()...)
	return g, nil
}

// AgencyGrant is what an agency may do: pull from its own durable consumer,
// read that consumer's state, acknowledge and mark in progress what it
// delivered, and publish its answers on its own status subject, with a
// JetStream acknowledgement in its own inbox. Everything else is denied:
// other agencies' queues and consumers, requests, other status subjects,
// stream and consumer administration.
func AgencyGrant(agency string) Grant {
	return Grant{
		Identity: AgencyIdentity(agency),
		Publish:  append(pullGrant(events.WorkStream, events.AgencyConsumer(agency)), events.StatusSubject(agency)),
	}
}

// User is an identity the server lets in: its public nkey and grant. A
// Leaf user is a desk's edge, which connects as a leaf node only: what its
// grant lets it publish flows from the edge to the hub, and only its inbox
// flows back.
type User struct {
	PublicKey string
	Grant     Grant
	Leaf      bool
}

func nkeyUsers(users []User) []*server.NkeyUser {
	out := make([]*server.NkeyUser, len(users))
	for i, u := range users {
		out[i] = &server.NkeyUser{Nkey: u.PublicKey, Permissions: u.Grant.Permissions()}
		if u.Leaf {
			out[i].AllowedConnectionTypes = map[string]struct{}{leafConnection: {}}
		}
	}
	return out
}

// leafConnection is the connection type of a leaf node, as nats-server
// names it (jwt.ConnectionTypeLeafnode).
const leafConnection = "LEAFNODE"

// EdgeIdentity names the identity of a desk's edge.
func EdgeIdentity(desk string) string { return "edge-" + desk }

// EdgeGrant is what a desk's edge may do at the hub, over its leaf-node
// connection: store its desk's requests, on the desk's own request
// subject, and receive JetStream's acknowledgements in its own inbox.
// Nothing else crosses the link.
func EdgeGrant(municipality, desk string) Grant {
	return Grant{Identity: EdgeIdentity(desk), Publish: []string{events.RequestSubject(municipality, desk)}}
}

// SetUsers replaces the users the server lets in, without restarting it:
// connections of users no longer listed are closed at once, and the others
// keep their connections under their new permissions. Safe for concurrent
// use.
func (s *Server) SetUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("set nats users: at least one is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := s.opts.Clone()
	opts.Nkeys = nkeyUsers(users)
	if err := s.ReloadOptions(opts); err != nil {
		return fmt.Errorf("set nats users: %w", err)
	}
	s.opts = opts
	return nil
}

// Seed is an nkey user seed: the secret an identity connects with.
type Seed []byte

// NewSeed makes a new identity's seed.
func NewSeed() (Seed, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("new nkey: %w", err)
	}
	return kp.Seed()
}

// ReadSeed reads a seed file: an nkey user seed ("SU…"), alone or among
// other lines.
func ReadSeed(path string) (Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nkey seed: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "SU") {
			if _, err := nkeys.FromSeed([]byte(line)); err != nil {
				return nil, fmt.Errorf("read nkey seed %s: %w", path, err)
			}
			return Seed(line), nil
		}
	}
	return nil, fmt.Errorf("read nkey seed: %s holds no user seed", path)
}

// PublicKey is the public nkey of the seed, which the server lists.
func (s Seed) PublicKey() (string, error) {
	kp, err := nkeys.FromSeed(s)
	if err != nil {
		return "", fmt.Errorf("nkey seed: %w", err)
	}
	return kp.PublicKey()
}

// Credential is how a connection proves an identity: the identity's name
// (for its inbox) and its seed.
type Credential struct {
	Identity string
	Seed     Seed
}

// Options are the connection options that present c: its nkey, and its
// own inbox prefix.
func (c Credential) Options() ([]nats.Option, error) {
	if c.Identity == "" || len(c.Seed) == 0 {
		return nil, errors.New("a credential needs an identity and a seed")
	}
	kp, err := nkeys.FromSeed(c.Seed)
	if err != nil {
		return nil, fmt.Errorf("nkey seed of %s: %w", c.Identity, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nkey seed of %s: %w", c.Identity, err)
	}
	return []nats.Option{
		nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix(InboxPrefix(c.Identity)),
	}, nil
}

// AuthorizationConfig is the authorization block of a nats-server
// configuration file that lets in users, and no one else: for a server or
// cluster of one's own, to include in its configuration and reload whenever
// the users change.
func AuthorizationConfig(users []User) string {
	quote := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		p := u.Grant.Permissions()
		leaf := ""
		if u.Leaf {
			leaf = fmt.Sprintf(", allowed_connection_types: [%q]", leafConnection)
		}
		fmt.Fprintf(&b, "    # %s\n    {nkey: %q, permissions: {publish: {allow: %s}, subscribe: {allow: %s}}%s}\n",
			u.Grant.Identity, u.PublicKey, quote(p.Publish.Allow), quote(p.Subscribe.Allow), leaf)
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
