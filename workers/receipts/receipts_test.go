package receipts_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/receipts"
)

var t0 = time.Date(2026, 12, 6, 10, 15, 0, 0, time.UTC)

func receipt() receipts.Receipt {
	return receipts.Receipt{
		Visit: "01a24aec-e415-7575-b2de-e70c2d21624a", Desk: "desk-7472a98b8b3b", DeskName: "Loja do Cidadão Laranjeiras",
		Municipality: "lisboa", Mediator: "ana.sousa", Language: "el", ConsentVersion: "2026-12-01",
		ConsentAt: t0, StartedAt: t0.Add(-time.Minute),
		Requests: []receipts.Request{
			{ID: "01a24aec-0001", Service: "change-of-address", Agencies: []string{"civil-registry", "tax", "social-security", "sns"},
				SubmittedAt: t0.Add(time.Minute), ExpectedBy: t0.Add(121 * time.Hour)},
			{ID: "01a24aec-0002", Service: "criminal-record-certificate", Agencies: []string{"justice"},
				SubmittedAt: t0.Add(2 * time.Minute), ExpectedBy: t0.Add(26 * time.Hour)},
		},
	}
}

func TestReceipt_ChangedInAnyFieldFailsVerification(t *testing.T) {
	t.Parallel()
	keys, err := receipts.OpenKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	signed, err := keys.Sign(receipt())
	if err != nil {
		t.Fatal(err)
	}
	if err := receipts.Verify(signed, keys.Public()); err != nil {
		t.Fatalf("a receipt as signed: %v", err)
	}
	// Through its JSON and its compact form, as printed and scanned.
	text, err := receipts.Compact(signed)
	if err != nil {
		t.Fatal(err)
	}
	back, err := receipts.FromCompact(text)
	if err != nil || receipts.Verify(back, keys.Public()) != nil {
		t.Fatalf("the compact form does not verify: %v", err)
	}
	// Every field, one at a time, every request's too.
	changes := map[string]func(r *receipts.Receipt){
		"visit":           func(r *receipts.Receipt) { r.Visit += "x" },
		"desk":            func(r *receipts.Receipt) { r.Desk = "desk-other" },
		"desk name":       func(r *receipts.Receipt) { r.DeskName = "Loja do Cidadão Saldanha" },
		"municipality":    func(r *receipts.Receipt) { r.Municipality = "porto" },
		"mediator":        func(r *receipts.Receipt) { r.Mediator = "rui.lopes" },
		"language":        func(r *receipts.Receipt) { r.Language = "pt" },
		"consent version": func(r *receipts.Receipt) { r.ConsentVersion = "2026-11-01" },
		"consent time":    func(r *receipts.Receipt) { r.ConsentAt = r.ConsentAt.Add(time.Second) },
		"start":           func(r *receipts.Receipt) { r.StartedAt = r.StartedAt.Add(time.Second) },
		"a request's id":  func(r *receipts.Receipt) { r.Requests[1].ID = "01a24aec-0003" },
		"a service":       func(r *receipts.Receipt) { r.Requests[0].Service = "birth-certificate" },
		"an agency":       func(r *receipts.Receipt) { r.Requests[0].Agencies[2] = "iefp" },
		"an agency less":  func(r *receipts.Receipt) { r.Requests[0].Agencies = r.Requests[0].Agencies[:3] },
		"a submission":    func(r *receipts.Receipt) { r.Requests[1].SubmittedAt = r.Requests[1].SubmittedAt.Add(-time.Hour) },
		"a due date":      func(r *receipts.Receipt) { r.Requests[0].ExpectedBy = r.Requests[0].ExpectedBy.Add(24 * time.Hour) },
		"a request less":  func(r *receipts.Receipt) { r.Requests = r.Requests[:1] },
		"the order":       func(r *receipts.Receipt) { r.Requests[0], r.Requests[1] = r.Requests[1], r.Requests[0] },
		// A real visit's receipt cannot pass for practice, nor the reverse.
		"training": func(r *receipts.Receipt) { r.Training = !r.Training },
	}
	for name, change := range changes {
		var changed receipts.Signed
		b, _ := json.Marshal(signed)
		_ = json.Unmarshal(b, &changed) // a deep copy
		change(&changed.Receipt)
		if err := receipts.Verify(changed, keys.Public()); !errors.Is(err, receipts.ErrBadSignature) {
			t.Errorf("a receipt with another %s: %v, want ErrBadSignature", name, err)
		}
	}
	// One character of the signature.
	sig := []byte(signed.Signature)
	sig[10] ^= 1
	forged := signed
	forged.Signature = string(sig)
	if err := receipts.Verify(forged, keys.Public()); err == nil {
		t.Error("a changed signature verified")
	}
	forged = signed
	forged.KeyID = "20990101T000000.000000-deadbeef"
	if err := receipts.Verify(forged, keys.Public()); !errors.Is(err, receipts.ErrUnknownKey) {
		t.Errorf("an unknown key id: %v", err)
	}
	// Canonical: the same receipt, the same bytes; no space, UTF-8 as is.
	a, _ := receipt().Canonical()
	b, _ := receipt().Canonical()
	if string(a) != string(b) || strings.Contains(string(a), " \"") || !strings.Contains(string(a), "Cidadão") {
		t.Errorf("canonical encoding %s", a)
	}
}

func TestKeys_ARotatedOutKeyStillVerifiesWhatItSigned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys, err := receipts.OpenKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := keys.Sign(receipt())
	first := old.KeyID
	second, err := keys.Rotate()
	if err != nil || second == first {
		t.Fatalf("Rotate = %q, %v", second, err)
	}
	fresh, _ := keys.Sign(receipt())
	if fresh.KeyID != second || fresh.Signature == old.Signature {
		t.Errorf("after rotating, signed with %q, want %q", fresh.KeyID, second)
	}
	// The old key's private half is deleted: it can sign no more, and what
	// it signed still verifies, from the published list too.
	if err := os.Remove(filepath.Join(dir, first+".key")); err != nil {
		t.Fatal(err)
	}
	reopened, err := receipts.OpenKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub := reopened.Published()
	if len(pub.Keys) != 2 || pub.Keys[0].KeyID != first || pub.Keys[0].Signing || !pub.Keys[1].Signing {
		t.Fatalf("published %+v", pub)
	}
	b, _ := json.Marshal(pub)
	keysFromFile, err := receipts.ParsePublished(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []receipts.Signed{old, fresh} {
		if err := receipts.Verify(s, keysFromFile); err != nil {
			t.Errorf("a receipt of key %s: %v", s.KeyID, err)
		}
	}
	if again, _ := reopened.Sign(receipt()); again.KeyID != second {
		t.Errorf("signs with %s, want the newest key %s", again.KeyID, second)
	}
	info, err := os.Stat(filepath.Join(dir, second+".key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("private key file mode %v, %v; want 0600", info.Mode(), err)
	}
	if _, err := receipts.Parse([]byte(`{"receipt":{},"key_id":"x","signature":"y","extra":1}`)); err == nil {
		t.Error("a receipt with an unknown field was read")
	}
}

func TestCompact_IsShortAndRefusesWhatIsNotACompressedReceipt(t *testing.T) {
	t.Parallel()
	keys, err := receipts.OpenKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := keys.Sign(receipt())
	text, err := receipts.Compact(signed)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(signed)
	if len(text) >= len(plain) {
		t.Errorf("the compact form is %d characters, the JSON %d: it should be shorter", len(text), len(plain))
	}
	for _, bad := range []string{"", "not base64!", "eyJyZWNlaXB0Ijp7fX0"} {
		if _, err := receipts.FromCompact(bad); err == nil {
			t.Errorf("FromCompact(%q) succeeded", bad)
		}
	}
}
