package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyTimeout bounds the wait for a started process to say it is ready.
const readyTimeout = 60 * time.Second

// procSpec says how to run one long-lived process of the suite.
type procSpec struct {
	// Name identifies the process in logs and the report: "router-1".
	Name string
	// Bin is the program to run; default the spotflow binary.
	Bin string
	// Args follow the program on the command line.
	Args []string
	// Env is the process's whole environment.
	Env []string
	// Ready is what the process prints on stdout once it is ready; empty
	// when Probe alone says so.
	Ready string
	// Probe, when set, must also succeed before the process counts as
	// ready; it is polled until readyTimeout.
	Probe func(ctx context.Context) error
}

// process is one supervised process, started again after each kill. Its
// stdout and stderr go to one log file, appended to across restarts.
type process struct {
	spec    procSpec
	bin     string
	logPath string
	sup     *supervisor

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current run has exited
	expected bool          // the current run is being stopped on purpose
	starts   int
}

// supervisor starts, kills and stops the suite's processes. Every process
// runs in a process group of its own, so a kill reaches whatever it started
// and a Ctrl-C at the terminal reaches only the suite, which stops them in
// order. It is safe for concurrent use.
type supervisor struct {
	bin    string
	logDir string

	mu         sync.Mutex
	procs      []*process
	unexpected []string
}

func newSupervisor(bin, logDir string) (*supervisor, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	return &supervisor{bin: bin, logDir: logDir}, nil
}

// add registers a process without starting it.
func (s *supervisor) add(spec procSpec) *process {
	p := &process{spec: spec, bin: s.bin, logPath: filepath.Join(s.logDir, spec.Name+".log"), sup: s}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// Unexpected lists the processes that exited without being told to.
func (s *supervisor) Unexpected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unexpected...)
}

// LogPaths lists every process's log file.
func (s *supervisor) LogPaths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p.logPath)
	}
	return out
}

// stopAll stops every running process, newest first, each with SIGTERM and,
// after grace, SIGKILL.
func (s *supervisor) stopAll(grace time.Duration) {
	s.mu.Lock()
	procs := append([]*process(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Go(func() { procs[i].stop(grace) })
	}
	wg.Wait()
}

// start runs the process and returns once it is ready, or with an error
// (quoting the end of its log) if it exits or is not ready in time.
func (p *process) start(ctx context.Context) error {
	p.mu.Lock()
	if p.running() {
		p.mu.Unlock()
		return fmt.Errorf("start %s: already running", p.spec.Name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	p.starts++
	bin := cmp.Or(p.spec.Bin, p.bin)
	fmt.Fprintf(f, "=== chaos: start #%d at %s: %s %s\n", p.starts, time.Now().Format(time.RFC3339Nano), filepath.Base(bin), strings.Join(p.spec.Args, " "))
	ready := &markerWriter{w: f, marker: []byte(p.spec.Ready), found: make(chan struct{})}
	if p.spec.Ready == "" {
		ready.done = true
		close(ready.found)
	}
	cmd := exec.Command(bin, p.spec.Args...)
	cmd.Env = p.spec.Env
	cmd.Stdout, cmd.Stderr = ready, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.expected = cmd, exited, false
	p.mu.Unlock()

	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== chaos: exited at %s: %v\n", time.Now().Format(time.RFC3339Nano), cmdExit(err))
		f.Close()
		p.mu.Lock()
		if !p.expected {
			p.sup.mu.Lock()
			p.sup.unexpected = append(p.sup.unexpected,
				fmt.Sprintf("%s exited unexpectedly (%v); log %s", p.spec.Name, cmdExit(err), p.logPath))
			p.sup.mu.Unlock()
		}
		p.mu.Unlock()
		close(exited)
	}()

	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	select {
	case <-ready.found:
	case <-exited:
		return fmt.Errorf("start %s: exited before it was ready; log %s:\n%s", p.spec.Name, p.logPath, tailFile(p.logPath, 2000))
	case <-timeout.C:
		p.kill()
		return fmt.Errorf("start %s: not ready after %v; log %s:\n%s", p.spec.Name, readyTimeout, p.logPath, tailFile(p.logPath, 2000))
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	}
	if p.spec.Probe == nil {
		return nil
	}
	for {
		probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.spec.Probe(probeCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("start %s: exited before it was ready; log %s:\n%s", p.spec.Name, p.logPath, tailFile(p.logPath, 2000))
		case <-timeout.C:
			p.kill()
			return fmt.Errorf("start %s: not ready after %v: %v; log %s", p.spec.Name, readyTimeout, err, p.logPath)
		case <-ctx.Done():
			p.kill()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// running reports whether a run of the process has started and not exited.
// Called with mu held.
func (p *process) running() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the process's group and waits for it to exit.
func (p *process) kill() error {
	return p.signal(syscall.SIGKILL, 0)
}

// stop sends SIGTERM to the process's group, waits up to grace, then
// kills it.
func (p *process) stop(grace time.Duration) error {
	return p.signal(syscall.SIGTERM, grace)
}

func (p *process) signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	if !p.running() {
		p.mu.Unlock()
		return nil
	}
	p.expected = true
	pid, exited := p.cmd.Process.Pid, p.exited
	p.mu.Unlock()
	_ = syscall.Kill(-pid, sig)
	if sig != syscall.SIGKILL {
		t := time.NewTimer(grace)
		select {
		case <-exited:
			t.Stop()
			return nil
		case <-t.C:
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 30s after SIGKILL", p.spec.Name, pid)
	}
}

// markerWriter passes writes through to w and closes found the first time
// a line containing marker has been written.
type markerWriter struct {
	w      *os.File
	marker []byte
	found  chan struct{}
	line   []byte
	done   bool
}

func (m *markerWriter) Write(b []byte) (int, error) {
	n, err := m.w.Write(b)
	if !m.done {
		m.line = append(m.line, b...)
		for {
			i := bytes.IndexByte(m.line, '\n')
			if i < 0 {
				break
			}
			if bytes.Contains(m.line[:i], m.marker) {
				m.done = true
				m.line = nil
				close(m.found)
				break
			}
			m.line = m.line[i+1:]
		}
	}
	return n, err
}

// cmdExit describes how a command ended.
func cmdExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
	}
	return err.Error()
}

// tailFile returns at most the last n bytes of the file at path.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(" + err.Error() + ")"
	}
	return string(buf)
}
