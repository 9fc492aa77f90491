package postgres_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// testCitizenKey is the citizen key of pgtest.Store.
const testCitizenKey = "0123456789abcdef0123456789abcdef"

// citizenRefHex is the keyed hash the store keeps in place of nationalID,
// in hex, as a row's text shows a bytea.
func citizenRefHex(nationalID string) string {
	m := hmac.New(sha256.New, []byte(testCitizenKey))
	m.Write([]byte(nationalID))
	m.Write([]byte{0})
	return hex.EncodeToString(m.Sum(nil))
}

// openSealed opens what the store sealed under testCitizenKey.
func openSealed(sealed []byte) ([]byte, bool) {
	m := hmac.New(sha256.New, []byte(testCitizenKey))
	m.Write([]byte("spotflow seal v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, false
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
	return plain, err == nil
}

// personalDataFound searches every row of every table of s's schema, as
// text, and every bytea value that opens under the citizen key, opened, for
// each of secrets (by what it is), and returns where it found them, as
// "what in table" (a table's rows) or "what in table.column (sealed)".
func personalDataFound(t *testing.T, s *postgres.Store, secrets map[string]string) []string {
	t.Helper()
	ctx := t.Context()
	var found []string
	search := func(where, text string) {
		for what, secret := range secrets {
			if strings.Contains(strings.ToLower(text), strings.ToLower(secret)) {
				found = append(found, what+" in "+where)
			}
		}
	}
	rows, err := s.Pool().Query(ctx, `
		SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		rows, err := s.Pool().Query(ctx, `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		search(table, strings.Join(texts, "\n"))
	}
	rows, err = s.Pool().Query(ctx, `
		SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var columns [][2]string
	var table, column string
	if _, err := pgx.ForEachRow(rows, []any{&table, &column}, func() error {
		columns = append(columns, [2]string{table, column})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range columns {
		rows, err := s.Pool().Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE %[1]s IS NOT NULL`,
			pgx.Identifier{c[1]}.Sanitize(), pgx.Identifier{c[0]}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		values, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if plain, ok := openSealed(v); ok {
				search(c[0]+"."+c[1]+" (sealed)", string(plain))
			}
		}
	}
	slices.Sort(found)
	return slices.Compact(found)
}

// citizenCase is a store holding the requests of two citizens, through
// intake (idempotency keys and sealed copies), the projection and dead
// letters, as the pipeline leaves them.
type citizenCase struct {
	store *postgres.Store
	desk  events.Desk
	// zacarias is the citizen to erase: completed, under way, failed (with
	// a dead letter) and accepted but not projected yet, and a dead letter
	// of no request that holds his national ID.
	zacarias                                 []*events.Request
	completed, underWay, failed, unprojected *events.Request
	// bartolomeu is another citizen, who must keep everything.
	bartolomeu []*events.Request
	// keys are the idempotency keys and bodies the requests were claimed
	// with, by request.
	keys map[string]events.KeyClaim
}

const (
	zacariasID   = "PTZ123456789"
	zacariasName = "Zacarias Erasmo Apagado"
	bartolomeuID = "PTB987654321"
)

// accept claims r's idempotency key and records it published, as intake
// does.
func (c *citizenCase) accept(t *testing.T, r *events.Request) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"service_code": r.ServiceCode, "citizen": r.Citizen, "attributes": r.Attributes, "visit_id": r.VisitID})
	if err != nil {
		t.Fatal(err)
	}
	claim := events.KeyClaim{DeskID: c.desk.ID, Key: "key-" + r.ID, ServiceCode: r.ServiceCode, Body: body, NewID: r.ID}
	if _, _, err := c.store.ClaimKey(t.Context(), claim); err != nil {
		t.Fatal(err)
	}
	msg, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.store.MarkPublished(t.Context(), r.ID, msg); err != nil {
		t.Fatal(err)
	}
	c.keys[r.ID] = claim
}

// deadLetter records a dead letter of r's work item for agency.
func (c *citizenCase) deadLetter(t *testing.T, r *events.Request, agency, lastError string, seq uint64) {
	t.Helper()
	item := r.WorkItemFor(agency)
	payload, err := json.Marshal(item)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.RecordDeadLetter(t.Context(), events.DeadLetter{
		Stream: events.WorkStream, StreamSeq: seq, Subject: events.WorkSubject(agency), RequestID: r.ID, WorkItemID: item.ID,
		Agency: agency, Reason: events.ReasonMaxDeliveries, LastError: lastError, Attempts: 100, Payload: payload,
	}); err != nil {
		t.Fatal(err)
	}
}

func newCitizenCase(t *testing.T) *citizenCase {
	t.Helper()
	c := &citizenCase{store: pgtest.Store(t), keys: map[string]events.KeyClaim{}}
	c.desk = newDesk(t, c.store, "lisboa")
	// Visits are opaque, as desks must make them: the audit log keeps them.
	request := func(service string, at time.Time, nationalID, name string, i int) *events.Request {
		r := newRequest(c.desk.ID, service, at)
		r.Citizen = events.Citizen{NationalID: nationalID, Name: name}
		r.VisitID = fmt.Sprintf("visita-%s-%d", strings.ToLower(nationalID[:3]), i)
		r.Attributes = map[string]json.RawMessage{"street": json.RawMessage(fmt.Sprintf(`"Travessa de %s %d"`, name, i))}
		c.accept(t, r)
		return r
	}
	c.completed = request("change-of-address", t0, zacariasID, zacariasName, 1)
	c.underWay = request("tax-id-certificate", t0.Add(time.Minute), zacariasID, zacariasName, 2)
	c.failed = request("health-appointment", t0.Add(2*time.Minute), zacariasID, zacariasName, 3)
	c.unprojected = request("birth-certificate", t0.Add(3*time.Minute), zacariasID, zacariasName, 4)
	c.zacarias = []*events.Request{c.completed, c.underWay, c.failed, c.unprojected}
	b1 := request("change-of-address", t0.Add(4*time.Minute), bartolomeuID, "Bartolomeu Guardado", 1)
	b2 := request("tax-id-certificate", t0.Add(5*time.Minute), bartolomeuID, "Bartolomeu Guardado", 2)
	b3 := request("birth-certificate", t0.Add(6*time.Minute), bartolomeuID, "Bartolomeu Guardado", 3)
	c.bartolomeu = []*events.Request{b1, b2, b3}

	noted := func(ch events.Change, note string) events.Change {
		ch.Event.Note = note
		return ch
	}
	var changes []events.Change
	changes = append(changes, complete(c.completed, t0.Add(time.Hour), events.StatusCompleted, "civil-registry", "tax")...)
	changes = append(changes, submitted(c.underWay), routed(c.underWay, t0.Add(61*time.Second), "tax"),
		noted(agencyEvent(c.underWay, "tax", events.StatusAccepted, t0.Add(2*time.Minute)), zacariasName+" must bring proof of address"))
	changes = append(changes, submitted(c.failed), routed(c.failed, t0.Add(121*time.Second), "sns"),
		agencyEvent(c.failed, "sns", events.StatusFailed, t0.Add(30*time.Minute)))
	changes = append(changes, complete(b1, t0.Add(time.Hour), events.StatusCompleted, "civil-registry")...)
	changes = append(changes, submitted(b2), routed(b2, t0.Add(5*time.Minute+time.Second), "tax"),
		noted(agencyEvent(b2, "tax", events.StatusAccepted, t0.Add(6*time.Minute)), "Bartolomeu Guardado called"))
	// b3 is accepted but not projected, like c.unprojected.
	mustProject(t, c.store, changes...)
	c.deadLetter(t, c.failed, "sns", "sns answered: no patient "+zacariasName, 1)
	c.deadLetter(t, b2, "tax", "tax answered: Bartolomeu Guardado unknown", 2)
	// A message of no known request that could not be read, holding his
	// national ID.
	if _, err := c.store.RecordDeadLetter(t.Context(), events.DeadLetter{
		Stream: events.EventsStream, StreamSeq: 3, Subject: events.RequestSubject("lisboa", c.desk.ID), Reason: events.ReasonPermanent,
		LastError: "not a request", Attempts: 1, Payload: []byte(`{"schema":"spotflow.request.v1","citizen":{"national_id":"` + zacariasID + `"` + "\x00garbled"),
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// zacariasSecrets are the strings that would single Zacarias out.
func zacariasSecrets(c *citizenCase) map[string]string {
	secrets := map[string]string{
		"national ID": zacariasID, "name": zacariasName, "attribute": "Travessa de " + zacariasName,
		"citizen_ref": citizenRefHex(zacariasID),
	}
	for i, r := range c.zacarias {
		secrets[fmt.Sprintf("visit %d", i+1)] = r.VisitID
	}
	return secrets
}

// rollups is every row of the roll-ups (minute, dashboard and open data),
// as text, once what waits for them is folded.
func rollups(t *testing.T, s *postgres.Store) []string {
	t.Helper()
	fold(t, s)
	var out []string
	for _, table := range []string{"throughput_minute", "dashboard_counts", "dashboard_latency"} {
		rows, err := s.Pool().Query(t.Context(), `SELECT r::text FROM `+table+` r ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, table+":"), got...)
	}
	return out
}

// TestEraseCitizen_LeavesNoPersonalDataAndEveryCount erases a citizen with
// requests in every state and finds no trace of him in any table, sealed
// or not, outside the append-only audit log's record of submissions (which
// keeps visits, never a citizen), while every roll-up stays the same, the
// erasure is audited with its reason and the other citizen keeps
// everything.
func TestEraseCitizen_LeavesNoPersonalDataAndEveryCount(t *testing.T) {
	t.Parallel()
	c := newCitizenCase(t)
	s, ctx := c.store, withTimeout(t)
	secrets := zacariasSecrets(c)
	// The search finds what it looks for.
	before := personalDataFound(t, s, secrets)
	for _, want := range []string{"citizen_ref in requests", "name in intake_keys.sealed_request (sealed)", "name in timeline",
		"name in dead_letters", "national ID in dead_letters.payload (sealed)", "attribute in intake_keys.sealed_request (sealed)"} {
		if !slices.Contains(before, want) {
			t.Errorf("before the erasure, the search finds %q, not %q", before, want)
		}
	}
	bartolomeuBefore := personalDataFound(t, s, map[string]string{"name": "Bartolomeu Guardado", "citizen_ref": citizenRefHex(bartolomeuID)})
	rollupsBefore := rollups(t, s)

	by := events.By{Actor: "operator:ana", Reason: "the citizen asked, ticket 4711"}
	e, err := s.EraseCitizen(ctx, strings.ToLower(zacariasID), by)
	if err != nil {
		t.Fatalf("EraseCitizen: %v", err)
	}
	ids := func(rs ...*events.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
	if want := ids(c.zacarias...); !slices.Equal(e.Requests, want) {
		t.Errorf("erased requests %v, want all of his %v", e.Requests, want)
	}
	if want := ids(c.underWay, c.unprojected); !slices.Equal(e.UnderWay, want) {
		t.Errorf("under way %v, want %v", e.UnderWay, want)
	}
	if want := []string{"civil-registry", "sns", "tax"}; !slices.Equal(e.Agencies, want) {
		t.Errorf("agencies %v, want %v", e.Agencies, want)
	}
	if e.SealedRequests != 4 || e.DeadLetters != 2 {
		t.Errorf("deleted %d sealed requests and %d dead letters' messages, want 4 and 2", e.SealedRequests, e.DeadLetters)
	}

	// Nothing of him is left, but the visits the audit log recorded with
	// each submission: that log is append-only and hash-chained.
	var left []string
	for _, f := range personalDataFound(t, s, secrets) {
		if !(strings.HasPrefix(f, "visit ") && strings.HasSuffix(f, " in audit_submissions")) {
			left = append(left, f)
		}
	}
	if len(left) > 0 {
		t.Errorf("after the erasure, found %q", left)
	}
	if after := rollups(t, s); !slices.Equal(after, rollupsBefore) {
		t.Errorf("the roll-ups changed:\nbefore %q\nafter  %q", rollupsBefore, after)
	}
	if after := personalDataFound(t, s, map[string]string{"name": "Bartolomeu Guardado", "citizen_ref": citizenRefHex(bartolomeuID)}); !slices.Equal(after, bartolomeuBefore) {
		t.Errorf("the other citizen's data went from %q to %q", bartolomeuBefore, after)
	}

	t.Run("the erasure is audited with its reason, naming requests, never the citizen", func(t *testing.T) {
		entries, err := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditCitizenErased})
		if err != nil || len(entries) != 1 {
			t.Fatalf("audit entries %+v (err %v), want one erasure", entries, err)
		}
		got := entries[0]
		if got.Actor != by.Actor || got.Reason != by.Reason || got.Target != e.ID {
			t.Errorf("audited %+v, want %s's erasure %s with its reason", got, by.Actor, e.ID)
		}
		detail, _ := json.Marshal(got.Detail["requests"])
		if want, _ := json.Marshal(e.Requests); string(detail) != string(want) {
			t.Errorf("audited requests %s, want %s", detail, want)
		}
		chain(t, s)
		verify(t, s)
	})

	t.Run("the requests keep their place and lose the citizen", func(t *testing.T) {
		for _, r := range c.zacarias {
			var ref []byte
			var visit *string
			var erased *time.Time
			var status events.Status
			err := s.Pool().QueryRow(ctx, `SELECT citizen_ref, visit_id, erased_at, status FROM requests WHERE id = $1`, r.ID).
				Scan(&ref, &visit, &erased, &status)
			if err != nil || ref != nil || visit != nil || erased == nil || !erased.Equal(e.At) {
				t.Errorf("request %s: citizen_ref %x, visit %v, erased at %v (err %v); want none, none, %v", r.ID, ref, visit, erased, err, e.At)
			}
		}
		if st := requestStatus(t, s, c.completed.ID); st != events.StatusCompleted {
			t.Errorf("the completed request is %s now", st)
		}
		v, err := s.RequestForDesk(ctx, c.desk.ID, c.underWay.ID)
		if err != nil || v.Status != events.StatusAccepted || len(v.Timeline) != 3 || v.VisitID != "" {
			t.Fatalf("the desk reads %+v (err %v), want it accepted, with its timeline, without its visit", v, err)
		}
		for _, entry := range v.Timeline {
			if entry.Note != "" {
				t.Errorf("the timeline keeps the note %q", entry.Note)
			}
		}
	})

	t.Run("his dead letters can no longer be replayed; the others can", func(t *testing.T) {
		dead, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dead {
			_, err := s.DeadLetter(ctx, d.ID)
			switch {
			case d.RequestID == c.bartolomeu[1].ID && err != nil:
				t.Errorf("the other citizen's dead letter %d cannot be opened: %v", d.ID, err)
			case d.RequestID != c.bartolomeu[1].ID && !errors.Is(err, events.ErrPersonalDataDeleted):
				t.Errorf("dead letter %d of request %q: %v, want its message deleted", d.ID, d.RequestID, err)
			case d.RequestID == c.failed.ID && d.LastError != "":
				t.Errorf("dead letter %d keeps its last error %q", d.ID, d.LastError)
			}
		}
	})

	t.Run("his idempotency key stays taken", func(t *testing.T) {
		if _, _, err := s.ClaimKey(ctx, c.keys[c.completed.ID]); !errors.Is(err, events.ErrIdempotencyConflict) {
			t.Errorf("claiming his key again with his body: %v, want a conflict", err)
		}
		if id, _, err := s.ClaimKey(ctx, c.keys[c.bartolomeu[0].ID]); err != nil || id != c.bartolomeu[0].ID {
			t.Errorf("the other citizen's key: %q, %v; want his request", id, err)
		}
	})

	t.Run("the request not projected yet is projected, still erased, and counted once", func(t *testing.T) {
		mustProject(t, s, submitted(c.unprojected))
		var ref []byte
		var erased *time.Time
		if err := s.Pool().QueryRow(ctx, `SELECT citizen_ref, erased_at FROM requests WHERE id = $1`, c.unprojected.ID).Scan(&ref, &erased); err != nil || ref != nil || erased == nil {
			t.Errorf("projected after its erasure: citizen_ref %x, erased at %v (err %v)", ref, erased, err)
		}
		var submittedCount int
		if err := s.Pool().QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM throughput_minute WHERE service_code = 'birth-certificate' AND status = 'submitted'`).Scan(&submittedCount); err != nil || submittedCount != 1 {
			t.Errorf("its submission counts %d times (err %v), want once", submittedCount, err)
		}
	})

	t.Run("erasing again finds nothing and is audited again", func(t *testing.T) {
		again, err := s.EraseCitizen(ctx, zacariasID, by)
		if err != nil || len(again.Requests) != 0 || again.SealedRequests != 0 || again.DeadLetters != 0 || again.ID == e.ID {
			t.Errorf("erasing again: %+v, %v; want nothing erased, under a new ID", again, err)
		}
		if entries, _ := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditCitizenErased}); len(entries) != 2 {
			t.Errorf("%d erasures audited, want 2", len(entries))
		}
	})
}

func TestEraseCitizen_RefusesWithoutAReasonAMalformedIDOrAnotherKey(t *testing.T) {
	t.Parallel()
	c := newCitizenCase(t)
	ctx := withTimeout(t)
	if _, err := c.store.EraseCitizen(ctx, zacariasID, events.By{Actor: "operator:ana"}); !errors.Is(err, postgres.ErrReasonRequired) {
		t.Errorf("without a reason: %v, want ErrReasonRequired", err)
	}
	for _, id := range []string{"", "12", "PT 123 456", strings.Repeat("9", 33)} {
		_, err := c.store.EraseCitizen(ctx, id, events.By{Actor: "operator:ana", Reason: "asked"})
		var fe *events.FieldError
		if !errors.As(err, &fe) || fe.Field != "national_id" {
			t.Errorf("national ID %q: %v, want a field error naming national_id", id, err)
		} else if id != "" && strings.Contains(err.Error(), id) {
			t.Errorf("the error %q repeats the national ID", err)
		}
	}
	other := postgres.NewStore(c.store.Pool(), []byte("another key, not the pipeline's!"))
	if _, err := other.EraseCitizen(ctx, zacariasID, events.By{Actor: "operator:ana", Reason: "asked"}); !errors.Is(err, postgres.ErrCitizenKeyMismatch) {
		t.Errorf("under another citizen key: %v, want ErrCitizenKeyMismatch", err)
	}
	// Once the pruner noted the pipeline's key, another is refused even
	// with no sealed copy left to try it on.
	if _, err := c.store.ClearSealedCopies(ctx, time.Now(), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.Pool().Exec(ctx, `UPDATE intake_keys SET sealed_request = NULL; UPDATE dead_letters SET payload = NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := other.EraseCitizen(ctx, zacariasID, events.By{Actor: "operator:ana", Reason: "asked"}); !errors.Is(err, postgres.ErrCitizenKeyMismatch) {
		t.Errorf("under another citizen key, with no sealed copy left: %v, want ErrCitizenKeyMismatch", err)
	}
	var erased, audited int
	if err := c.store.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM requests WHERE erased_at IS NOT NULL),
		(SELECT count(*) FROM audit_log WHERE action = 'citizen_erased')`).Scan(&erased, &audited); err != nil || erased+audited != 0 {
		t.Errorf("refused erasures erased %d requests and audited %d (err %v)", erased, audited, err)
	}
}
