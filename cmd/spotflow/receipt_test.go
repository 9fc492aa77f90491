package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/receipts"
)

// TestReceipt_VerifyAcceptsAReceiptAndRefusesACopyWithOneCharacterChanged
// checks a receipt offline, as a citizen's lawyer or an ombudsman would,
// with the keys spotflow publishes.
func TestReceipt_VerifyAcceptsAReceiptAndRefusesACopyWithOneCharacterChanged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "receipt-keys")
	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := dispatch(t.Context(), append(args, "--receipt-keys", keyDir, "--data-dir", dir, "--log-level", "warn"), &stdout, &stderr)
		return stdout.String(), err
	}
	keys, err := receipts.OpenKeys(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	signed, err := keys.Sign(receipts.Receipt{Visit: "01a24aec-visit", Desk: "desk-1", DeskName: "Loja do Cidadão", Municipality: "lisboa",
		Mediator: "ana.sousa", Language: "pt", ConsentVersion: "2026-12-01", ConsentAt: at, StartedAt: at,
		Requests: []receipts.Request{{ID: "01a24aec-req", Service: "change-of-address", Agencies: []string{"civil-registry"}, SubmittedAt: at, ExpectedBy: at.Add(120 * time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "receipt.json")
	b, _ := json.MarshalIndent(signed, "", "  ")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The keys as published, then a rotation: the receipt still verifies.
	published, err := run("receipt", "keys")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run("receipt", "rotate"); err != nil || !strings.Contains(out, "new signing key") {
		t.Fatalf("receipt rotate: %q, %v", out, err)
	}
	keysFile := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keysFile, []byte(published), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("receipt", "verify", file, "--keys", keysFile)
	if err != nil || !strings.Contains(out, "valid: receipt 01a24aec-visit") || !strings.Contains(out, "01a24aec-req  change-of-address") {
		t.Fatalf("receipt verify of a good receipt: %q, %v", out, err)
	}
	if _, err := run("receipt", "verify", file); err != nil {
		t.Errorf("receipt verify with the local keys: %v", err)
	}
	// One character changed, anywhere that counts: refused.
	for _, change := range [][2]string{{"2026-12-06T10:00:00Z", "2026-12-06T10:00:01Z"}, {"ana.sousa", "ana.souza"}, {"2026-12-11", "2026-12-12"},
		{"civil-registry", "civil-registrx"}, {`"Loja do Cidadão"`, `"Loja do Cidadãn"`}} {
		changed := strings.Replace(string(b), change[0], change[1], 1)
		if changed == string(b) {
			t.Fatalf("%q is not in the receipt", change[0])
		}
		bad := filepath.Join(dir, "changed.json")
		if err := os.WriteFile(bad, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run("receipt", "verify", bad, "--keys", keysFile); err == nil || !strings.Contains(err.Error(), "NOT valid") {
			t.Errorf("a receipt with %q for %q verified: %q, %v", change[1], change[0], out, err)
		}
	}
	if _, err := run("receipt", "verify"); err == nil {
		t.Error("receipt verify without a file succeeded")
	}
}
