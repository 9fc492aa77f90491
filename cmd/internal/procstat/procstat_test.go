package procstat

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat_TakesTheNameBetweenTheFirstAndLastParenthesis(t *testing.T) {
	// A command name may hold spaces and parentheses; utime 250 and stime
	// 50 ticks are the 14th and 15th fields.
	stat := []byte("4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 4 0 99 1000 200")
	p, ok := parseStat(stat)
	if !ok || p.Command != "a (weird) name" || p.CPUSeconds != 3 {
		t.Errorf("parseStat = %+v, %v; want command %q and 3 s", p, ok, "a (weird) name")
	}
	for _, bad := range []string{"", "4242 no parenthesis S 1", "4242 (short) S 1 2 3"} {
		if p, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) = %+v, want not ok", bad, p)
		}
	}
}

func TestRead_SeesTheCPUThisProcessUses(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		sum = sha256.Sum256(sum[:])
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPUSeconds <= before.CPUSeconds {
		t.Errorf("CPU time %v s after 300 ms of hashing, %v s before; want it to grow", after.CPUSeconds, before.CPUSeconds)
	}
	if _, err := Read(-1); err == nil {
		t.Error("Read of a process that does not exist succeeded")
	}
}

func TestNamed_FindsAnotherProcessByCommandAndLeavesOutItsCaller(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if p, ok := Named("sleep")[cmd.Process.Pid]; !ok || p.Command != "sleep" {
		t.Errorf("Named(sleep) has %+v, %v for the child; want it found", p, ok)
	}
	self, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Named(self.Command)[os.Getpid()]; ok {
		t.Errorf("Named(%q) holds the calling process", self.Command)
	}
}

func TestUsed_ComparesProcessesOneByOne(t *testing.T) {
	before := map[int]Process{
		1: {"postgres", 10},
		2: {"postgres", 5},  // ends before the second reading
		3: {"spotflow", 20}, // its ID is taken by another command after
	}
	after := map[int]Process{
		1: {"postgres", 12},
		3: {"postgres", 0.5},
		4: {"spotflow", 1}, // started in between
	}
	got := Used(before, after)
	if got["postgres"] != 2.5 || got["spotflow"] != 1 || len(got) != 2 {
		t.Errorf("Used = %v, want postgres 2.5 s and spotflow 1 s", got)
	}
}

func TestMachineBusySecondsAndPeakRSS(t *testing.T) {
	busy, err := MachineBusySeconds()
	if err != nil || busy <= 0 {
		t.Errorf("MachineBusySeconds = %v, %v; want a positive time", busy, err)
	}
	rss, err := PeakRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("PeakRSS of this process = %v MiB, %v; want a positive size", rss, err)
	}
	if _, err := PeakRSS(-1); err == nil {
		t.Error("PeakRSS of a process that does not exist succeeded")
	}
}
