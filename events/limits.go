package events

import (
	"fmt"
	"time"
)

// The limits a caller can be over.
const (
	// LimitRate: the desk submits faster than its share.
	LimitRate = "rate"
	// LimitOpen: the desk has as many requests under way as it may.
	LimitOpen = "open_requests"
	// LimitFailedAuth: too many failed authentications from one address.
	LimitFailedAuth = "failed_authentication"
)

// Throttled is a call refused because its caller is over a limit; it may
// try again after RetryAfter. The APIs answer it 429 with Retry-After.
type Throttled struct {
	Limit      string
	RetryAfter time.Duration
}

func (e *Throttled) Error() string {
	return fmt.Sprintf("over the %s limit; retry after %v", e.Limit, e.RetryAfter.Round(time.Second))
}

// RetryAfterSeconds is RetryAfter in whole seconds, at least one, for a
// Retry-After header.
func (e *Throttled) RetryAfterSeconds() int {
	return max(1, int((e.RetryAfter+time.Second-1)/time.Second))
}
