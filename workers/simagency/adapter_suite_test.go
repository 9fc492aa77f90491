package simagency_test

import (
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/adaptertest"
	"github.com/spotflow/spotflow/workers/simagency"
)

func TestAgency_PassesTheAdapterSuite(t *testing.T) {
	t.Parallel()
	adaptertest.Run(t, func(t *testing.T, b adaptertest.Behaviour) adaptertest.Agency {
		code, p := adaptertest.AgencyCode, simagency.Profile{}
		switch b {
		case adaptertest.Answers:
			p.RejectRate = 0.5 // a rejection is an answer too
		case adaptertest.Refuses:
			code = "sns" // an agency refuses another agency's work items
		case adaptertest.Unavailable:
			p.TransientRate = 1
		case adaptertest.Hangs:
			p.Latency = time.Hour
		default:
			t.Fatalf("unknown behaviour %v", b)
		}
		a := simagency.New(code, p)
		return adaptertest.Agency{Adapter: a, Applied: a.TimesApplied}
	}, adaptertest.Unreachable) // an agency in this process cannot be out of reach
}
