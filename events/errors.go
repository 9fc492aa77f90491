package events

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every part of spotflow.
var (
	// ErrNotFound: the thing asked for does not exist, or belongs to someone
	// else (a desk never learns that another desk's request exists).
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyConflict: an idempotency key was reused with a different
	// body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different body")
	// ErrUnauthenticated: a credential is missing or unknown.
	ErrUnauthenticated = errors.New("unauthenticated")
)

// FieldError says which field of an input is wrong and why. Code is stable and
// meant for programs; Message is for people.
type FieldError struct {
	Code    string
	Field   string
	Message string
}

// Field error codes.
const (
	CodeRequired       = "required"
	CodeInvalidType    = "invalid_type"
	CodeInvalidValue   = "invalid_value"
	CodeUnknownField   = "unknown_field"
	CodeUnknownService = "unknown_service"
	// CodeMalformedJSON: the body is not one well-formed JSON value (of
	// the JSON type the API expects).
	CodeMalformedJSON = "malformed_json"
	// CodeDuplicateField: a JSON object holds a key twice, also in
	// another case.
	CodeDuplicateField = "duplicate_field"
	// CodeTooLarge: JSON nests deeper, or an object or array holds more
	// members, than the API allows.
	CodeTooLarge = "too_large"
)

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s", e.Field, e.Message)
}

// PermanentError marks a failure that retrying cannot cure: a malformed
// message, an unknown service, an agency's definitive refusal to take a work
// item. Anything not marked permanent is treated as transient and retried.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure; Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// ErrUnavailable: a piece of infrastructure (Postgres, NATS, an agency's
// endpoint) cannot be reached. It is never the message's fault: consumers
// retry at a short fixed interval and pause fetching, and never dead-letter
// for it. Wrap the cause with Unavailable.
var ErrUnavailable = errors.New("unavailable")

// Unavailable marks err as an infrastructure outage; Unavailable(nil) is nil.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// ErrAuditChainBroken: the audit log's hash chain does not check: an entry
// or a link was altered, removed or left out of the chain. Errors that say
// where match it with errors.Is.
var ErrAuditChainBroken = errors.New("audit chain broken")

// ErrUnknownRequest: a status event names a request or work item that the
// projection has not recorded (yet). Usually the request is still on its way;
// an event that keeps naming an unknown request is poison.
var ErrUnknownRequest = errors.New("unknown request or work item")
