package httpadapter_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/adaptertest"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/simagency"
)

// TestClient_PassesTheAdapterSuite runs the suite against the reference
// agency server, simagency.Server, behind the client.
func TestClient_PassesTheAdapterSuite(t *testing.T) {
	t.Parallel()
	adaptertest.Run(t, func(t *testing.T, b adaptertest.Behaviour) adaptertest.Agency {
		const other = "sns"
		endpoint := "/agencies/{agency}/work-items"
		p := simagency.Profile{}
		switch b {
		case adaptertest.Answers:
			p.RejectRate = 0.5 // a rejection is an answer too
		case adaptertest.Refuses:
			// The server refuses, with a 422, work items posted to another
			// agency than theirs.
			endpoint = "/agencies/" + other + "/work-items"
		case adaptertest.Unavailable, adaptertest.Unreachable:
		case adaptertest.Hangs:
			p.Latency = time.Hour
		default:
			t.Fatalf("unknown behaviour %v", b)
		}
		dir := t.TempDir()
		s, err := simagency.NewServer(simagency.ServerConfig{
			Dir:      dir,
			Profiles: map[string]simagency.Profile{"*": p},
			Agencies: []string{adaptertest.AgencyCode, other},
		})
		if err != nil {
			t.Fatalf("new agency server: %v", err)
		}
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(func() {
			// End calls the client abandoned, should it not have.
			hs.CloseClientConnections()
			hs.Close()
			s.Close()
		})
		switch b {
		case adaptertest.Unavailable:
			if err := s.SetDown(adaptertest.AgencyCode, true); err != nil {
				t.Fatalf("take the agency down: %v", err)
			}
		case adaptertest.Unreachable:
			// Nothing listens at the address any more.
			hs.Close()
		}
		c, err := httpadapter.New(httpadapter.Config{Endpoint: hs.URL + endpoint})
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		return adaptertest.Agency{Adapter: c, Applied: func(id string) int {
			logs, err := simagency.ReadJournals(dir)
			if err != nil {
				t.Fatalf("read the agency's journals: %v", err)
			}
			n := 0
			for _, log := range logs {
				n += log[id].Applied
			}
			return n
		}}
	})
}
