package events

import "time"

// OperatorRole is what an operator may do in the console and the operator
// API.
type OperatorRole string

// The operators' roles.
const (
	// RoleOperator sees everything an operator sees, opens dead letters'
	// messages, replays them, and manages desks, mediators, agencies'
	// credentials and operators.
	RoleOperator OperatorRole = "operator"
	// RoleViewer sees the console's lists, health and audit trail, read
	// only: never a dead letter's message, never a change.
	RoleViewer OperatorRole = "viewer"
)

// Valid reports whether r is one of the roles.
func (r OperatorRole) Valid() bool { return r == RoleOperator || r == RoleViewer }

// MayChange reports whether r may change anything or read a message.
func (r OperatorRole) MayChange() bool { return r == RoleOperator }

// Operator is a person who runs spotflow and signs in to the operator's
// console with their own password and, if they chose one, a second factor
// (a time-based one-time password).
type Operator struct {
	Username string       `json:"username"`
	Name     string       `json:"name"`
	Role     OperatorRole `json:"role"`
	// Language is the catalogue language the console speaks to them in.
	Language string `json:"language"`
	// PasswordSet says whether they have set a password with their setup
	// code.
	PasswordSet bool `json:"password_set"`
	// SecondFactor says whether signing in also asks for a one-time
	// password from their authenticator.
	SecondFactor bool      `json:"second_factor"`
	LockedUntil  time.Time `json:"locked_until,omitzero"`
	DisabledAt   time.Time `json:"disabled_at,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	SignedInAt   time.Time `json:"signed_in_at,omitzero"`
}

// Actor is how the audit log names the operator.
func (o Operator) Actor() string { return "operator:" + o.Username }

// OperatorSignIn is what an operator's sign-in checks: the operator, their
// password's hash (empty until set).
type OperatorSignIn struct {
	Operator
	PasswordHash string
}

// OperatorSession is a signed-in operator's session as each console page
// reads it.
type OperatorSession struct {
	Operator Operator
	// CSRF is the token every form of the session must carry.
	CSRF string
	// SecondFactorDue says the password was right and the one-time
	// password is still to be given: the session opens no page but that.
	SecondFactorDue bool
	ExpiresAt       time.Time
}

// OperatorToken is a named machine credential for the operator API and
// the operators' HTTP surfaces (a script, Prometheus): a bearer token shown
// once, kept as its SHA-256, revocable.
type OperatorToken struct {
	Name      string       `json:"name"`
	Role      OperatorRole `json:"role"`
	CreatedAt time.Time    `json:"created_at"`
	RevokedAt time.Time    `json:"revoked_at,omitzero"`
	UsedAt    time.Time    `json:"used_at,omitzero"`
}

// Actor is how the audit log names what the token does.
func (t OperatorToken) Actor() string { return "token:" + t.Name }

// SecondFactorEnrolment is a time-based one-time password being set up: the
// secret, in base32, and the otpauth:// URI an authenticator app reads
// (from a QR code, or typed).
type SecondFactorEnrolment struct {
	Secret string
	URI    string
}
