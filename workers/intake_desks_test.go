package workers_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestIntake_RefusesARevokedDeskCredentialOnEveryProcessWithinSeconds
// runs two intakes on one database, as two processes would, revokes the
// desk's credential with the store, and sees both refuse it within a few
// seconds, while the desk's new credential works and its use is recorded.
func TestIntake_RefusesARevokedDeskCredentialOnEveryProcessWithinSeconds(t *testing.T) {
	t.Parallel()
	d := intaketest.Start(t, nil)
	other, err := workers.NewIntake(workers.IntakeConfig{
		Store: d.Store, Publisher: &intaketest.FlakyPublisher{}, Catalog: d.Catalog, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	fresh, err := d.Store.IssueDeskCredential(ctx, d.Desk.ID, time.Time{}, events.By{Actor: "operator:ana"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []*workers.Intake{d.Intake, other} {
		for _, token := range []string{d.Token, fresh.Token} {
			if desk, err := in.Authenticate(ctx, testAddr, token); err != nil || desk != d.Desk {
				t.Fatalf("Authenticate = %+v, %v; want %+v", desk, err, d.Desk)
			}
		}
	}
	workertest.WaitFor(t, "the credentials' use to be recorded", func() error {
		listed, err := d.Store.Desks(ctx, d.Desk.Municipality)
		if err != nil {
			return err
		}
		for _, c := range listed[0].Credentials {
			if c.LastUsedAt == nil {
				return errors.New("credential " + c.Key + " never recorded in use")
			}
		}
		return nil
	})

	if _, err := d.Store.RevokeDeskCredentials(ctx, d.Desk.ID, "", events.By{Actor: "operator:ana", Reason: "left on a shared laptop"}); err != nil {
		t.Fatal(err)
	}
	// Revoked every credential, the new one too: issue another.
	after, err := d.Store.IssueDeskCredential(ctx, d.Desk.ID, time.Time{}, events.By{Actor: "operator:ana"})
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for name, in := range map[string]*workers.Intake{"one intake": d.Intake, "another": other} {
		workertest.WaitWithin(t, 5*time.Second, name+" to refuse the revoked credential", func() error {
			_, err := in.Authenticate(ctx, testAddr, d.Token)
			switch {
			case err == nil:
				return errors.New("still let in")
			case !errors.Is(err, events.ErrUnauthenticated):
				t.Fatalf("Authenticate: %v, want unauthenticated", err)
			}
			return nil
		})
		if desk, err := in.Authenticate(ctx, testAddr, after.Token); err != nil || desk != d.Desk {
			t.Errorf("%s with the credential issued after: %+v, %v", name, desk, err)
		}
	}
	if took := time.Since(revoked); took > 3*time.Second {
		t.Errorf("the revocation took %s to reach both intakes, want about two seconds at most", took)
	}
}

// testAddr is where the tests' callers connect from.
const testAddr = "192.0.2.1:40000"
