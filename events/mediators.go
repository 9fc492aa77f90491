package events

import (
	"encoding/json"
	"regexp"
	"time"
)

// A mediator's username: 2 to 64 lowercase letters, digits, '.', '-' or '_',
// starting with a letter.
var usernamePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{1,63}$`)

// ValidUsername reports whether u may be a mediator's username.
func ValidUsername(u string) bool { return usernamePattern.MatchString(u) }

// Mediator is a person who serves citizens at a desk and signs in to the
// desk application with their own password.
type Mediator struct {
	Username string `json:"username"`
	DeskID   string `json:"desk_id"`
	Name     string `json:"name"`
	// Language is the catalogue language the desk application speaks to
	// them in.
	Language string `json:"language"`
	// PasswordSet says whether they have set a password; until then they
	// sign in with the one-time setup code an operator gave them.
	PasswordSet bool `json:"password_set"`
	// Trainer says whether they prepare practice scenarios and follow
	// the training visits of the mediators of their municipality.
	Trainer     bool      `json:"trainer,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	DisabledAt  time.Time `json:"disabled_at,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	SignedInAt  time.Time `json:"signed_in_at,omitzero"`
}

// MediatorSetup is a one-time code with which a mediator sets their
// password, shown once to the operator who created or reset them.
type MediatorSetup struct {
	Username  string    `json:"username"`
	Code      string    `json:"setup_code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MediatorSignIn is what a sign-in checks a password against: the
// mediator, their password's hash (empty until set), how many times in a
// row a sign-in failed.
type MediatorSignIn struct {
	Mediator
	PasswordHash   string
	FailedAttempts int
}

// SessionStart is a new session of a mediator: the SHA-256 of the token
// its cookie holds, the token its forms carry, when it ends at the latest,
// and the address it was started from (for the audit log).
type SessionStart struct {
	TokenHash []byte
	CSRF      string
	ExpiresAt time.Time
	Address   string
}

// Session is a signed-in mediator's session as each page reads it.
type Session struct {
	Mediator Mediator
	Desk     Desk
	// CSRF is the token every form of the session must carry.
	CSRF string
	// Training says whether the session is in training mode: its visits
	// are practice, their requests go to simulated agencies only.
	Training  bool
	CreatedAt time.Time
	SeenAt    time.Time
	ExpiresAt time.Time
}

// ConsentGiven is the citizen's consent to the processing of their data,
// as a request records it: the version of the catalogue's consent text
// shown, the language it was shown in, and when it was given.
type ConsentGiven struct {
	Version  string    `json:"version"`
	Language string    `json:"language"`
	At       time.Time `json:"at"`
}

// Visit is one sitting of one citizen at one desk with one mediator: the
// citizen, the language they read, their consent once given, and the
// services added, in order.
type Visit struct {
	ID       string
	DeskID   string
	Username string
	// Citizen is empty once the visit has ended: it is kept only while it
	// lasts.
	Citizen  Citizen
	Language string
	Consent  *ConsentGiven
	Services []VisitService
	// Training marks a practice visit, started in training mode.
	Training  bool
	StartedAt time.Time
	EndedAt   time.Time
}

// VisitService is a service added to a visit: the answers given so far
// (until it is submitted), the documents the mediator saw, and the
// idempotency key its submission uses, fixed when it was added.
type VisitService struct {
	N              int
	ServiceCode    string
	Answers        map[string]json.RawMessage
	Documents      []string
	IdempotencyKey string
	RequestID      string
	AddedAt        time.Time
	SubmittedAt    time.Time
}
