// Package procstat reads what Linux's /proc says of processes and of the
// machine: CPU time used and peak memory. The load generator and the
// benchmark measure with it what the system they drive costs.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times, on Linux.
const clockTicks = 100

// Process is what /proc/<pid>/stat says of a process.
type Process struct {
	// Command is its command name as /proc shows it ("postgres").
	Command string
	// CPUSeconds is the CPU time, user and system, it has used so far.
	CPUSeconds float64
}

// Read reads the process pid.
func Read(pid int) (Process, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Process{}, err
	}
	p, ok := parseStat(b)
	if !ok {
		return Process{}, fmt.Errorf("procstat: /proc/%d/stat: unexpected contents", pid)
	}
	return p, nil
}

// parseStat reads a /proc/<pid>/stat file's contents.
func parseStat(b []byte) (Process, bool) {
	// The command name is between the first '(' and the last ')': it may
	// hold either.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Process{}, false
	}
	// utime and stime are the 12th and 13th fields after the name.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return Process{}, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return Process{}, false
	}
	return Process{Command: string(b[open+1 : end]), CPUSeconds: (ut + st) / clockTicks}, true
}

// Named reads, by process ID, this machine's processes whose command is one
// of commands, leaving out the calling process; nil when /proc cannot be
// read.
func Named(commands ...string) map[int]Process {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return nil
	}
	out := map[int]Process{}
	for _, path := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		p, err := Read(pid)
		if err != nil || !slices.Contains(commands, p.Command) {
			continue // ended meanwhile, or another command
		}
		out[pid] = p
	}
	return out
}

// Used is the CPU time, in seconds, each command's processes used between
// two readings of Named. A process that started in between counts from its
// start; one that ended in between took its time with it (count processes
// that live through the measurement, such as Postgres's pooled backends).
// Comparing processes one by one, rather than sums, keeps a process that
// ends between the readings from making the total go backwards.
func Used(before, after map[int]Process) map[string]float64 {
	out := map[string]float64{}
	for pid, p := range after {
		used := p.CPUSeconds
		if b, ok := before[pid]; ok && b.Command == p.Command {
			used -= b.CPUSeconds
		}
		out[p.Command] += used
	}
	return out
}

// MachineBusySeconds is the CPU time every core of the machine has spent
// busy (neither idle nor waiting for I/O) since it started.
func MachineBusySeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("procstat: /proc/stat: unexpected first line %q", line)
	}
	busy := 0.0
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks, nil
}

// PeakRSS is the process pid's peak resident set so far (VmHWM), in MiB.
func PeakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("procstat: /proc/%d/status: VmHWM: %w", pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("procstat: /proc/%d/status has no VmHWM", pid)
}
