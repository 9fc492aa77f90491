package natsbus_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// storeHolds reports whether any file under dir contains needle.
func storeHolds(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		data, err := os.ReadFile(path)
		found = found || bytes.Contains(data, needle)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestRunServer_EncryptsTheStoreWithItsKey(t *testing.T) {
	t.Parallel()
	const key = "5f0c2b8e9d4a7c1e3b6f8a2d4c7e9b1a3f5d7c9e1b3a5d7f9c1e3b5a7d9f1c3e"
	nationalID := []byte("NATIONAL-ID-31337")
	run := func(dir, key string) *natsbus.Server {
		ns, err := natsbus.RunServer(natsbus.ServerConfig{Anonymous: true, StoreDir: dir, StoreKey: key, Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	store := func(ns *natsbus.Server) {
		nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := natsbus.Provision(t.Context(), js, natsbus.Topology{Agencies: []string{"tax"}}); err != nil {
			t.Fatal(err)
		}
		if err := natsbus.NewPublisher(js).Publish(t.Context(), natsbus.Outgoing{
			Subject: events.WorkSubject("tax"), ID: "w1", Value: map[string]string{"national_id": string(nationalID)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(ns *natsbus.Server) {
		ns.Shutdown()
		ns.WaitForShutdown()
	}

	clear, encrypted := t.TempDir(), t.TempDir()
	ns := run(clear, "")
	store(ns)
	stop(ns)
	if !storeHolds(t, clear, nationalID) {
		t.Fatal("a store without a key does not hold the national ID in clear; the check below would prove nothing")
	}

	ns = run(encrypted, key)
	store(ns)
	stop(ns)
	if storeHolds(t, encrypted, nationalID) {
		t.Error("the encrypted store holds the national ID in clear")
	}

	// A store written in clear is encrypted once a key is given.
	ns = run(clear, key)
	stop(ns)
	if storeHolds(t, clear, nationalID) {
		t.Error("the store written in clear still holds the national ID in clear after a start with a key")
	}

	// With its key, the store reads back.
	ns = run(encrypted, key)
	defer stop(ns)
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := js.Stream(t.Context(), events.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatalf("read the stored work item back: %v", err)
	}
	if !bytes.Contains(m.Data, nationalID) {
		t.Errorf("the work item read back is %q", m.Data)
	}
}
