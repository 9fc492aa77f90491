package events_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spotflow/spotflow/events"
)

func TestPermanent_MarksAndUnwraps(t *testing.T) {
	t.Parallel()
	cause := errors.New("agency refused the work item")
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"nil", nil, false},
		{"a plain error", cause, false},
		{"a permanent error", events.Permanent(cause), true},
		{"a wrapped permanent error", fmt.Errorf("dispatch: %w", events.Permanent(cause)), true},
		{"a permanent error joined with another", errors.Join(errors.New("x"), events.Permanent(cause)), true},
		{"a sentinel", events.ErrUnknownRequest, false},
		{"a permanent sentinel", events.Permanent(fmt.Errorf("project: %w", events.ErrUnknownRequest)), true},
	}
	for _, tt := range tests {
		if got := events.IsPermanent(tt.err); got != tt.permanent {
			t.Errorf("IsPermanent(%s) = %v, want %v", tt.name, got, tt.permanent)
		}
	}
	if events.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	p := events.Permanent(cause)
	if !errors.Is(p, cause) {
		t.Error("a permanent error does not unwrap to its cause")
	}
	if p.Error() != cause.Error() {
		t.Errorf("Permanent(err).Error() = %q, want the cause's %q", p.Error(), cause.Error())
	}
	if !errors.Is(events.Permanent(fmt.Errorf("x: %w", events.ErrUnknownRequest)), events.ErrUnknownRequest) {
		t.Error("a permanent error hides the sentinel it wraps")
	}
}

func TestFieldError_NamesTheField(t *testing.T) {
	t.Parallel()
	var err error = &events.FieldError{Code: events.CodeRequired, Field: "citizen.name", Message: "citizen.name is required"}
	if got, want := err.Error(), "citizen.name: citizen.name is required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var fe *events.FieldError
	if !errors.As(fmt.Errorf("submit: %w", err), &fe) || fe.Field != "citizen.name" {
		t.Error("a wrapped FieldError cannot be recovered with errors.As")
	}
}

func TestSentinels_AreDistinct(t *testing.T) {
	t.Parallel()
	sentinels := []error{events.ErrNotFound, events.ErrIdempotencyConflict, events.ErrUnauthenticated, events.ErrUnknownRequest}
	for i, a := range sentinels {
		for j, b := range sentinels {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}
