package events_test

import (
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
)

func TestValidToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token string
		want  bool
	}{
		{"a", true},
		{"7", true},
		{"lisboa", true},
		{"social-security", true},
		{"health_number", true},
		{"desk-01a2b3c4d5e6", true},
		{"a-", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"Lisboa", false},
		{"-lisboa", false},
		{"_lisboa", false},
		{"a.b", false},      // would split a subject
		{"a b", false},      // whitespace
		{"a*", false},       // subject wildcard
		{">", false},        // subject wildcard
		{"são-brás", false}, // not ASCII
		{"a\x00b", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if got := events.ValidToken(tt.token); got != tt.want {
			t.Errorf("ValidToken(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
}

// subjectMatches is NATS subject matching: '*' matches one token, '>' the
// rest (at least one token).
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

func TestSubjects_BuiltSubjectsFallUnderTheirStreamFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, subject, filter string
		want                  string
	}{
		{"a desk's request subject", events.RequestSubject("lisboa", "desk-1"), events.RequestSubjects, "spotflow.requests.lisboa.desk-1"},
		{"an agency's work subject", events.WorkSubject("tax"), events.WorkSubjects, "spotflow.work.tax"},
		{"an agency's status subject", events.StatusSubject("social-security"), events.StatusSubjects, "spotflow.status.social-security"},
		{"the router's status subject", events.StatusSubject(events.SourceRouter), events.StatusSubjects, "spotflow.status.router"},
	}
	for _, tt := range tests {
		if tt.subject != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.subject, tt.want)
		}
		if !subjectMatches(tt.filter, tt.subject) {
			t.Errorf("%s %q does not match filter %q", tt.name, tt.subject, tt.filter)
		}
	}
}

func TestSubjects_StreamFiltersDoNotOverlap(t *testing.T) {
	t.Parallel()
	subjects := []string{
		events.RequestSubject("porto", "desk-9"),
		events.WorkSubject("sns"),
		events.StatusSubject("sns"),
	}
	filters := []string{events.RequestSubjects, events.WorkSubjects, events.StatusSubjects}
	for i, s := range subjects {
		for j, f := range filters {
			if got := subjectMatches(f, s); got != (i == j) {
				t.Errorf("subject %q matches filter %q: %v, want %v", s, f, got, i == j)
			}
		}
	}
	// A work subject is one token deep: an agency cannot be addressed with a
	// dotted code that reaches into another agency's queue.
	if subjectMatches(events.WorkSubjects, "spotflow.work.tax.extra") {
		t.Errorf("%q matches a two-token work subject", events.WorkSubjects)
	}
}

func TestSubjects_IsRequestSubject(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		events.RequestSubject("lisboa", "desk-1"): true,
		events.StatusSubject("tax"):               false,
		events.WorkSubject("tax"):                 false,
		"spotflow.requests":                       false,
		"other.spotflow.requests.x.y":             false,
	}
	for subject, want := range tests {
		if got := events.IsRequestSubject(subject); got != want {
			t.Errorf("IsRequestSubject(%q) = %v, want %v", subject, got, want)
		}
	}
}

func TestSubjects_AgencyConsumerNamesAreDistinctPerAgency(t *testing.T) {
	t.Parallel()
	if got, want := events.AgencyConsumer("tax"), "agency-tax"; got != want {
		t.Errorf("AgencyConsumer(tax) = %q, want %q", got, want)
	}
	names := map[string]bool{events.RouterConsumer: true, events.ProjectorConsumer: true}
	for _, a := range []string{"tax", "sns", "imt", "router", "projector"} {
		n := events.AgencyConsumer(a)
		if names[n] {
			t.Errorf("AgencyConsumer(%q) = %q collides with another consumer", a, n)
		}
		names[n] = true
	}
	if events.EventsStream == events.WorkStream {
		t.Error("the events and work streams share a name")
	}
}

func TestSubjects_TellWhatASubjectCarries(t *testing.T) {
	t.Parallel()
	if !events.IsWorkSubject(events.WorkSubject("tax")) || events.IsWorkSubject(events.StatusSubject("tax")) {
		t.Error("IsWorkSubject does not tell a work queue from a status subject")
	}
	if !events.IsRequestSubject(events.RequestSubject("lisboa", "d1")) || events.IsRequestSubject(events.WorkSubject("tax")) {
		t.Error("IsRequestSubject does not tell a request subject from a work queue")
	}
	if source, ok := events.StatusSource(events.StatusSubject("social-security")); !ok || source != "social-security" {
		t.Errorf("StatusSource of an agency's status subject = %q, %v; want social-security, true", source, ok)
	}
	if _, ok := events.StatusSource(events.WorkSubject("tax")); ok {
		t.Error("StatusSource took a work subject for a status subject")
	}
}
