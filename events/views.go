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
	ID          string          `json:"id"`
	ServiceCode string          `json:"service_code"`
	Status      Status          `json:"status"`
	VisitID     string          `json:"visit_id,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	WorkItems   []WorkItemView  `json:"work_items"`
	Timeline    []TimelineEntry `json:"timeline"`
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
	Payload    []byte     `json:"-"`
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
type RequestQuery struct {
	DeskID       string
	IDs          []string
	ServiceCodes []string
	Statuses     []Status
	// From and To bound the submission time, both included.
	From, To time.Time
	// Limit caps the number of requests; 0 means no cap.
	Limit int
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
