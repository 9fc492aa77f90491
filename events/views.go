package events

import "time"

// Desk is an assisted-service desk, identified to spotflow by its own
// credential. It belongs to one municipality.
type Desk struct {
	ID           string
	Municipality string
	Name         string
}

// RequestView is a request as a desk reads it back: current status, one
// entry per work item, and the timeline of every status event applied.
type RequestView struct {
	ID          string `json:"id"`
	ServiceCode string `json:"service_code"`
	Status      Status `json:"status"`
	VisitID     string `json:"visit_id,omitempty"`
	// Mediator is who submitted it at the desk, when the desk said.
	Mediator string `json:"mediator,omitempty"`
	// Consent is the citizen's consent it was submitted under, if recorded.
	Consent *ConsentGiven `json:"consent,omitempty"`
	// Training marks a request made in training mode: it went to the
	// simulated practice agency only.
	Training bool `json:"training,omitempty"`
	// HeldAtDesk says the request is stored at the desk's edge, waiting
	// for the link to the hub to be forwarded (spotflow edge).
	HeldAtDesk bool            `json:"held_at_desk,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	WorkItems  []WorkItemView  `json:"work_items"`
	Timeline   []TimelineEntry `json:"timeline"`
}

// WorkItemView is one agency's share of a request.
type WorkItemView struct {
	Agency    string    `json:"agency"`
	Status    Status    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TimelineEntry is one applied status event. Agency is empty for events of
// the request as a whole.
type TimelineEntry struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Agency string    `json:"agency"`
	Note   string    `json:"note"`
}

// KeyClaim binds a desk's idempotency key to a new request, unless the key is
// bound already. Body is the submission in canonical form: the same key with
// another body is a conflict.
type KeyClaim struct {
	DeskID      string
	Key         string
	ServiceCode string
	Body        []byte
	NewID       string
}

// DeadLetter is a message that left its queue without being handled: a
// permanent failure, or a work item whose deliveries ran out. Payload is the
// message as it was published; it may hold personal data.
type DeadLetter struct {
	ID         int64      `json:"id"`
	Stream     string     `json:"stream"`
	StreamSeq  uint64     `json:"stream_seq"`
	Subject    string     `json:"subject"`
	RequestID  string     `json:"request_id,omitempty"`
	WorkItemID string     `json:"work_item_id,omitempty"`
	Agency     string     `json:"agency,omitempty"`
	Reason     string     `json:"reason"`
	LastError  string     `json:"last_error"`
	Attempts   int        `json:"attempts"`
	CreatedAt  time.Time  `json:"created_at"`
	Replays    int        `json:"replays"`
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
	// ServiceCode, DeskID and Municipality are its request's, when the
	// projection holds the request.
	ServiceCode  string `json:"service_code,omitempty"`
	DeskID       string `json:"desk_id,omitempty"`
	Municipality string `json:"municipality,omitempty"`
	Payload      []byte `json:"-"`
}

// Dead-letter reasons.
const (
	// ReasonPermanent: handling failed in a way no retry can cure.
	ReasonPermanent = "permanent"
	// ReasonMaxDeliveries: the message was delivered as often as its
	// consumer allows without being acknowledged.
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonRefused: a status event that broke one of the rules every status
	// event keeps (a Refusal; its rule leads the last error).
	ReasonRefused = "refused"
)

// StalledRequest is an accepted request whose progress stalled in the
// pipeline, to be published again: Message is what intake published.
type StalledRequest struct {
	ID      string
	Message []byte
	// Unreadable, when set, says why the kept message could not be opened
	// (for instance, it was sealed under another citizen key); Message is
	// then empty.
	Unreadable error
}

// RequestQuery selects a desk's requests for a listing, newest first. Zero
// fields do not filter; IDs, when set, overrides every filter but the desk.
// Without a desk (a public read) only IDs may select.
type RequestQuery struct {
	DeskID       string
	IDs          []string
	ServiceCodes []string
	Statuses     []Status
	// From and To bound the submission time, both included.
	From, To time.Time
	// Limit caps the number of requests; 0 means no cap.
	Limit int
	// NoTraining leaves out requests made in training mode, for interfaces
	// that other systems read as the desk's real work (Open311).
	NoTraining bool
}

// UpdateQuery selects the timeline events of a desk's requests that
// happened in a window, oldest first.
type UpdateQuery struct {
	DeskID string
	// From and To bound the time of the event, both included.
	From, To time.Time
	// Limit caps the number of events; 0 means no cap.
	Limit int
}

// RequestUpdate is one event of a request's timeline as a feed of updates
// shows it: what happened, to which of its agencies ("" for the request as
// a whole), and the request's own status once it had happened.
type RequestUpdate struct {
	EventID     string
	RequestID   string
	ServiceCode string
	Agency      string
	Status      Status
	// RequestStatus is the request's status after this event: the latest
	// request-wide event up to it.
	RequestStatus Status
	At            time.Time
	Note          string
}

// RequestSummary is a request as a listing shows it: its state and the
// latest note of its timeline, without personal data or the timeline itself.
type RequestSummary struct {
	ID          string
	ServiceCode string
	Status      Status
	// Note is the latest note in the request's timeline, if any.
	Note        string
	SubmittedAt time.Time
	UpdatedAt   time.Time
	// Training marks a request made in training mode.
	Training bool
}

// AgencyCredential is what spotflow keeps of an agency's credential: the
// public half of an nkey it connects to NATS with, or the SHA-256 of a token
// it reports statuses over HTTPS with. The secret was shown once, to the
// agency, and is kept nowhere.
type AgencyCredential struct {
	// PublicKey is the nkey's public key, or the token's SHA-256 in hex.
	PublicKey string `json:"public_key"`
	// Kind is CredentialNkey or CredentialToken.
	Kind      string     `json:"kind"`
	Agency    string     `json:"agency"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// The kinds of an agency's credential.
const (
	CredentialNkey  = "nkey"
	CredentialToken = "token"
)

// WorkItemState is where a work item stands in the projection: the round
// it is in and its status in that round.
type WorkItemState struct {
	Round  int
	Status Status
}

// AuditAction is what a person did, as the audit log records it. The log
// takes only the actions listed here.
type AuditAction string

// The actions the audit log records. Those for which NeedsReason is true
// are sensitive: whoever does them must say why.
const (
	// AuditSubmission: a mediator submitted a request at a desk. Recorded
	// by the database itself as each request is projected.
	AuditSubmission AuditAction = "submission"
	// AuditDeskCreated: an operator registered a desk (with its first
	// credential).
	AuditDeskCreated AuditAction = "desk_created"
	// AuditDeskCredentialIssued: an operator issued a desk another
	// credential.
	AuditDeskCredentialIssued AuditAction = "desk_credential_issued"
	// AuditDeskCredentialRotated: an operator issued a desk a new
	// credential and set its others to end.
	AuditDeskCredentialRotated AuditAction = "desk_credential_rotated"
	// AuditDeskCredentialExpiry: an operator set when desk credentials end.
	AuditDeskCredentialExpiry AuditAction = "desk_credential_expiry"
	// AuditDeskCredentialRevoked: an operator revoked desk credentials.
	AuditDeskCredentialRevoked AuditAction = "desk_credential_revoked"
	// AuditAgencyCredentialIssued: an operator issued an agency a
	// credential.
	AuditAgencyCredentialIssued AuditAction = "agency_credential_issued"
	// AuditAgencyCredentialRevoked: an operator revoked agency credentials.
	AuditAgencyCredentialRevoked AuditAction = "agency_credential_revoked"
	// AuditReplay: an operator put a dead letter back in its queue.
	AuditReplay AuditAction = "replay"
	// AuditDeadLetterViewed: an operator read a dead letter.
	AuditDeadLetterViewed AuditAction = "dead_letter_viewed"
	// AuditCitizenLookedUp: a person looked up a citizen's requests.
	AuditCitizenLookedUp AuditAction = "citizen_looked_up"
	// AuditCitizenErased: a person erased a citizen's personal data.
	AuditCitizenErased AuditAction = "citizen_erased"
	// AuditOperatorSignedIn: an operator signed in to the console.
	AuditOperatorSignedIn AuditAction = "operator_signed_in"
	// AuditMediatorSignedIn: a mediator signed in at a desk.
	AuditMediatorSignedIn AuditAction = "mediator_signed_in"
	// AuditMediatorSignInFailed: a sign-in to the desk application failed
	// (a wrong password, a locked or disabled account, an unknown username).
	AuditMediatorSignInFailed AuditAction = "mediator_sign_in_failed"
	// AuditMediatorSignedOut: a mediator signed out.
	AuditMediatorSignedOut AuditAction = "mediator_signed_out"
	// AuditMediatorCreated: an operator created a mediator's account.
	AuditMediatorCreated AuditAction = "mediator_created"
	// AuditMediatorReset: an operator gave a mediator a new setup code,
	// ending their password and sessions.
	AuditMediatorReset AuditAction = "mediator_reset"
	// AuditMediatorDisabled: an operator disabled a mediator's account.
	AuditMediatorDisabled AuditAction = "mediator_disabled"
	// AuditMediatorEnabled: an operator enabled a mediator's account again.
	AuditMediatorEnabled AuditAction = "mediator_enabled"
	// AuditMediatorPasswordSet: a mediator set their password with a
	// setup code.
	AuditMediatorPasswordSet AuditAction = "mediator_password_set"
	// AuditMediatorTrainer: an operator made a mediator a trainer, or no
	// longer one.
	AuditMediatorTrainer AuditAction = "mediator_trainer"
	// AuditTrainingMode: a mediator switched their session to training
	// mode, or back.
	AuditTrainingMode AuditAction = "training_mode"
	// AuditEdgeCredentialIssued, AuditEdgeCredentialRevoked: an operator
	// gave a desk's edge its credential at the hub, or revoked it.
	AuditEdgeCredentialIssued  AuditAction = "edge_credential_issued"
	AuditEdgeCredentialRevoked AuditAction = "edge_credential_revoked"
	// AuditTrainingScenarioSet: a trainer chose what the simulated
	// agencies do with a trainee's practice requests.
	AuditTrainingScenarioSet AuditAction = "training_scenario_set"
	// AuditOperatorCreated, AuditOperatorReset, AuditOperatorDisabled,
	// AuditOperatorEnabled: an operator created another's account, gave
	// them a new setup code (ending their password, second factor and
	// sessions), disabled or enabled it.
	AuditOperatorCreated  AuditAction = "operator_created"
	AuditOperatorReset    AuditAction = "operator_reset"
	AuditOperatorDisabled AuditAction = "operator_disabled"
	AuditOperatorEnabled  AuditAction = "operator_enabled"
	// AuditOperatorPasswordSet: an operator set their password with a
	// setup code.
	AuditOperatorPasswordSet AuditAction = "operator_password_set"
	// AuditOperatorSignInFailed: a sign-in to the console failed (a wrong
	// password or one-time password, a locked or disabled account, an
	// unknown username).
	AuditOperatorSignInFailed AuditAction = "operator_sign_in_failed"
	// AuditOperatorSignedOut: an operator signed out.
	AuditOperatorSignedOut AuditAction = "operator_signed_out"
	// AuditOperatorSecondFactor: an operator turned their second factor
	// on or off.
	AuditOperatorSecondFactor AuditAction = "operator_second_factor"
	// AuditOperatorTokenIssued, AuditOperatorTokenRevoked: an operator
	// made a named machine credential of the operator API, or revoked one.
	AuditOperatorTokenIssued  AuditAction = "operator_token_issued"
	AuditOperatorTokenRevoked AuditAction = "operator_token_revoked"
	// AuditExported: a person downloaded a range of the audit log.
	AuditExported AuditAction = "audit_exported"
)

// AuditActions are every action the audit log records.
var AuditActions = []AuditAction{
	AuditSubmission, AuditDeskCreated, AuditDeskCredentialIssued, AuditDeskCredentialRotated,
	AuditDeskCredentialExpiry, AuditDeskCredentialRevoked, AuditAgencyCredentialIssued,
	AuditAgencyCredentialRevoked, AuditReplay, AuditDeadLetterViewed, AuditCitizenLookedUp,
	AuditCitizenErased, AuditOperatorSignedIn, AuditMediatorSignedIn, AuditMediatorSignInFailed,
	AuditMediatorSignedOut, AuditMediatorCreated, AuditMediatorReset, AuditMediatorDisabled,
	AuditMediatorEnabled, AuditMediatorPasswordSet, AuditMediatorTrainer, AuditTrainingMode,
	AuditTrainingScenarioSet, AuditEdgeCredentialIssued, AuditEdgeCredentialRevoked,
	AuditOperatorCreated, AuditOperatorReset, AuditOperatorDisabled, AuditOperatorEnabled,
	AuditOperatorPasswordSet, AuditOperatorSignInFailed, AuditOperatorSignedOut,
	AuditOperatorSecondFactor, AuditOperatorTokenIssued, AuditOperatorTokenRevoked, AuditExported,
}

// Known reports whether a is one of AuditActions.
func (a AuditAction) Known() bool {
	for _, k := range AuditActions {
		if a == k {
			return true
		}
	}
	return false
}

// NeedsReason reports whether a is sensitive: recorded only with a reason.
func (a AuditAction) NeedsReason() bool {
	switch a {
	case AuditDeskCredentialRevoked, AuditDeadLetterViewed, AuditCitizenLookedUp, AuditCitizenErased:
		return true
	}
	return false
}

// By is who does an action, as the audit log names them ("operator:ana",
// "mediator:rui.lopes", "system:spotflow"), and, for a sensitive action,
// why.
type By struct {
	Actor  string
	Reason string
}

// AuditEntry is one entry of the audit log. Kind says which table holds it
// ("log" for actions recorded by spotflow's commands and APIs,
// "submission" for submissions, which the database records); ID is its
// number there. Seq is its place in the hash chain, 0 while the chainer has
// not linked it yet.
type AuditEntry struct {
	Kind   string         `json:"kind"`
	ID     int64          `json:"id"`
	Seq    int64          `json:"seq,omitempty"`
	At     time.Time      `json:"at"`
	Actor  string         `json:"actor"`
	Action AuditAction    `json:"action"`
	Target string         `json:"target"`
	Reason string         `json:"reason,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// AuditQuery selects audit entries, newest first. Zero fields do not
// filter.
type AuditQuery struct {
	Actor  string
	Action AuditAction
	Target string
	// Since bounds the entries' time from below, included.
	Since time.Time
	// Limit caps the entries; 0 means 100.
	Limit int
}

// AuditChainState is what a verification of the audit log's hash chain
// found intact: how many entries are linked, how many wait for the chainer,
// and the last link (its place and hash), which an operator may note down
// to check later that the chain still passes through it.
type AuditChainState struct {
	Linked   int64  `json:"linked"`
	Pending  int64  `json:"pending"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
}

// DeskCredential is what spotflow keeps of a desk's credential: its key
// (how listings and commands name it) and its life. The token itself was
// shown once and is kept only as a hash.
type DeskCredential struct {
	Key        string     `json:"key"`
	DeskID     string     `json:"desk_id"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// InForce reports whether the credential may be used at now.
func (c DeskCredential) InForce(now time.Time) bool {
	return c.RevokedAt == nil && (c.ExpiresAt == nil || now.Before(*c.ExpiresAt))
}

// IssuedDeskCredential is a desk credential as issued: Token is the secret,
// shown this once and kept nowhere.
type IssuedDeskCredential struct {
	DeskCredential
	Token string `json:"token"`
}

// DeskListing is a desk with its credentials, oldest first.
type DeskListing struct {
	ID           string           `json:"desk_id"`
	Municipality string           `json:"municipality"`
	Name         string           `json:"name"`
	CreatedAt    time.Time        `json:"created_at"`
	Credentials  []DeskCredential `json:"credentials"`
}

// DeskAuthentication is what a desk's token stands for when it is in
// force: the desk, the credential's key, when the credential ends (zero:
// never) and was last recorded in use (zero: never). Generation is the
// count of changes to desk credentials' revocations and expiries when this
// was read: a cache of authentications is good until it changes.
type DeskAuthentication struct {
	Desk       Desk
	Key        string
	ExpiresAt  time.Time
	LastUsedAt time.Time
	Generation int64
}

// Erasure is what erasing a citizen's personal data did (Store.EraseCitizen):
// the citizen's requests keep their place in statistics (desk,
// municipality, service, statuses, times) but no longer hold the keyed hash
// of the national ID, the visit, agencies' notes or any sealed copy of the
// request. It names requests, never the citizen.
type Erasure struct {
	// ID names the erasure: the target of its entry in the audit log, and a
	// reference the citizen may be given.
	ID string `json:"id"`
	// At is when the erasure was committed.
	At time.Time `json:"at"`
	// Requests are the IDs of the requests erased now, in ID order: none
	// when the citizen had none left to erase (erased before, or never
	// served).
	Requests []string `json:"requests"`
	// UnderWay are those of Requests that had not ended (completed,
	// rejected or failed) when erased: spotflow still carries them to their
	// agencies from JetStream, but can no longer re-drive them if they
	// stall, nor replay their dead letters.
	UnderWay []string `json:"under_way"`
	// Agencies are the agencies those requests were routed to. They
	// received the citizen's data with their work items and keep it under
	// their own rules: tell them of the erasure.
	Agencies []string `json:"agencies"`
	// SealedRequests counts the sealed copies of requests deleted (kept
	// for the reconciler); DeadLetters the dead letters whose sealed
	// messages were deleted (they can no longer be replayed).
	SealedRequests int `json:"sealed_requests"`
	DeadLetters    int `json:"dead_letters"`
}

// Pruned counts what a pass of the pruner deleted: sealed copies nothing
// can use any more, and rows past their retention.
type Pruned struct {
	// SealedRequests: requests' sealed copies cleared (intake_keys).
	SealedRequests int64 `json:"sealed_requests"`
	// DeadLetterMessages: dead letters' sealed messages cleared.
	DeadLetterMessages int64 `json:"dead_letter_messages"`
	// Rows removed past the request retention.
	Requests    int64 `json:"requests"`
	WorkItems   int64 `json:"work_items"`
	Timeline    int64 `json:"timeline"`
	IntakeKeys  int64 `json:"intake_keys"`
	DeadLetters int64 `json:"dead_letters"`
}

// Add returns the sum of p and o.
func (p Pruned) Add(o Pruned) Pruned {
	return Pruned{
		SealedRequests: p.SealedRequests + o.SealedRequests, DeadLetterMessages: p.DeadLetterMessages + o.DeadLetterMessages,
		Requests: p.Requests + o.Requests, WorkItems: p.WorkItems + o.WorkItems, Timeline: p.Timeline + o.Timeline,
		IntakeKeys: p.IntakeKeys + o.IntakeKeys, DeadLetters: p.DeadLetters + o.DeadLetters,
	}
}

// ErrPersonalDataDeleted: what was asked for needs a sealed copy that was
// deleted, because its citizen was erased or because it outlived its use
// (a dead letter of a request that ended): a dead letter without its
// message cannot be replayed.
var ErrPersonalDataDeleted error = deletedError("its sealed copy was deleted (the citizen was erased, or the request ended)")

type deletedError string

func (e deletedError) Error() string { return string(e) }

// EdgeCredential is a desk's edge's credential at the hub: the public half
// of its nkey, and the desk whose requests it may store.
type EdgeCredential struct {
	PublicKey    string     `json:"public_key"`
	DeskID       string     `json:"desk_id"`
	Municipality string     `json:"municipality"`
	CreatedAt    time.Time  `json:"created_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
}

// EdgeMediator is a mediator's account as a desk's edge keeps it, to let
// them sign in to the desk application while the desk is offline: the
// argon2id hash of their password, never the password.
type EdgeMediator struct {
	Username     string `json:"username"`
	Name         string `json:"name"`
	Language     string `json:"language"`
	PasswordHash string `json:"password_hash"`
	Trainer      bool   `json:"trainer,omitempty"`
}

// DeadLetterQuery selects dead letters: of Agency, of requests of
// Municipality, only those waiting for a replay (Pending: never replayed,
// their message not deleted), each filter only when set; at most Limit
// (1,000 when 0, at most 10,000).
type DeadLetterQuery struct {
	// ID selects one dead letter.
	ID           int64
	Agency       string
	Municipality string
	Pending      bool
	Limit        int
}

// StuckQuery selects the work items that are not moving: failed ones, and
// those under way for longer than their service's expected completion
// time (SLAs, by service code; a service not in it is never overdue). Zero
// fields do not filter; Limit defaults to 500.
type StuckQuery struct {
	Agency       string
	Municipality string
	SLAs         map[string]time.Duration
	Limit        int
}

// StuckWorkItem is a work item that failed or is overdue: its request's
// reference, service, desk and municipality, its status and round, the
// latest note of its timeline (the last error of a failure) and how many
// times it was replayed.
type StuckWorkItem struct {
	RequestID    string    `json:"request_id"`
	Agency       string    `json:"agency"`
	ServiceCode  string    `json:"service_code"`
	DeskID       string    `json:"desk_id"`
	Municipality string    `json:"municipality"`
	Status       Status    `json:"status"`
	Round        int       `json:"round"`
	Note         string    `json:"note,omitempty"`
	SubmittedAt  time.Time `json:"submitted_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Overdue says it is under way past its service's expected time.
	Overdue bool `json:"overdue"`
}

// ReplayState is where a replayed dead letter's request stands: its work
// item's (or, for a request, the request's) status and round now.
type ReplayState struct {
	DeadLetterID int64     `json:"dead_letter_id"`
	RequestID    string    `json:"request_id"`
	Agency       string    `json:"agency,omitempty"`
	Replays      int       `json:"replays"`
	Status       Status    `json:"status"`
	Round        int       `json:"round"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
}
