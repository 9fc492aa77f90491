package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The browser tests drive a real headless Chromium through the DevTools
// protocol, spoken over the pipe that --remote-debugging-pipe opens (file
// descriptors 3 and 4, messages separated by NUL bytes).

// chromiumBinary finds Chromium, installing Debian's package when running
// as root without it. It skips the test when Chromium cannot be had, except
// under CI=true, where it fails.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	find := func() string {
		for _, p := range []string{os.Getenv("SPOTFLOW_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
			if p == "" {
				continue
			}
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		if p, err := exec.LookPath("chromium"); err == nil {
			return p
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	var why string
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		why = "not root or no apt-get"
	} else {
		t.Log("installing Chromium: apt-get install -y chromium")
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", "apt-get update -qq && apt-get install -y -qq chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if p := find(); err == nil && p != "" {
			return p
		}
		why = fmt.Sprintf("apt-get install chromium: %v: %s", err, lastLines(string(out), 5))
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("Chromium is needed and could not be installed (%s)", why)
	}
	t.Skipf("Chromium is not installed and could not be installed (%s); set SPOTFLOW_CHROMIUM or run as root", why)
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// browser is a headless Chromium with one page, driven over the DevTools
// protocol. Its methods are safe for concurrent use.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     io.WriteCloser
	session string

	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpMessage
	closed  chan struct{}
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startBrowser starts Chromium with an empty page of the given size, and
// stops it when the test ends.
func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	bin := chromiumBinary(t)
	toChrome, ours, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	theirs, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--hide-scrollbars", "--mute-audio", "--user-data-dir="+t.TempDir(), "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	toChrome.Close()
	fromChrome.Close()
	b := &browser{t: t, cmd: cmd, out: ours, waiting: make(map[int]chan cdpMessage), closed: make(chan struct{})}
	go b.read(theirs)
	t.Cleanup(func() {
		ours.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	b.call(b.session, "Page.setBypassCSP", map[string]any{"enabled": true}, nil)
	b.call(b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	return b
}

func (b *browser) read(r io.Reader) {
	defer close(b.closed)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMessage
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil || m.ID == 0 {
			continue // an event: none is needed
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		delete(b.waiting, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends a command and decodes its result into result, failing the
// test on an error or after 60 seconds.
func (b *browser) call(session, method string, params, result any) {
	b.t.Helper()
	if err := b.try(session, method, params, result); err != nil {
		b.t.Fatalf("chromium %s: %v", method, err)
	}
}

func (b *browser) try(session, method string, params, result any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.out.Write(append(data, 0)); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.closed:
		return errors.New("chromium exited")
	case <-time.After(60 * time.Second):
		return errors.New("no answer within 60s")
	}
}

// navigate opens url in the page.
func (b *browser) navigate(url string) {
	b.t.Helper()
	var r struct {
		ErrorText string `json:"errorText"`
	}
	b.call(b.session, "Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		b.t.Fatalf("navigate to %s: %s", url, r.ErrorText)
	}
}

// eval runs a JavaScript expression in the page, waiting for it if it is
// a promise, and decodes its value into out.
func (b *browser) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.try(b.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s %s", r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// screenshot saves the whole page, not just the window, as a PNG at path.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	var metrics struct {
		ContentSize struct {
			Width, Height float64
		} `json:"cssContentSize"`
	}
	b.call(b.session, "Page.getLayoutMetrics", nil, &metrics)
	var shot struct {
		Data string `json:"data"`
	}
	b.call(b.session, "Page.captureScreenshot", map[string]any{
		"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": metrics.ContentSize.Width, "height": metrics.ContentSize.Height, "scale": 1},
	}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// artifactDir is where a test keeps what people look at afterwards:
// SPOTFLOW_TEST_ARTIFACTS (make test sets it to .data/test-artifacts), or
// the test's artifact directory.
func artifactDir(t *testing.T) string {
	if dir := os.Getenv("SPOTFLOW_TEST_ARTIFACTS"); dir != "" {
		return dir
	}
	return t.ArtifactDir()
}

// axeSource is axe-core's script from testdata/browser/node_modules.
func axeSource(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(nodeModule(t, "testdata/browser", "axe-core/axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// nodeModule returns the path of file in dir's node_modules, which `npm ci`
// fetches as dir's package-lock.json pins it (make test runs it; the test
// runs it too when npm is there). Without it the test fails under CI=true
// and skips otherwise.
func nodeModule(t *testing.T, dir, file string) string {
	t.Helper()
	path := filepath.Join(dir, "node_modules", file)
	if _, err := os.Stat(path); err != nil {
		if npm, err := exec.LookPath("npm"); err == nil {
			out, err := exec.Command(npm, "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
			if err != nil {
				t.Logf("npm ci: %v: %s", err, lastLines(string(out), 5))
			}
		}
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed: run `npm ci --prefix cmd/spotflow/%s` (make test does): %v", file, dir, err)
		}
		t.Skipf("%s is not installed: run `npm ci --prefix cmd/spotflow/%s` (make test does)", file, dir)
	}
	return path
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkAccessibility runs axe-core on the page and fails the test on any
// serious or critical violation; it logs the others.
func (b *browser) checkAccessibility(t *testing.T, axe string) {
	t.Helper()
	if err := b.eval(axe+"\n;true", nil); err != nil {
		t.Fatalf("load axe-core into the page: %v", err)
	}
	var violations []axeViolation
	err := b.eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))})))`, &violations)
	if err != nil {
		t.Fatalf("run axe-core: %v", err)
	}
	for _, v := range violations {
		msg := fmt.Sprintf("axe %s (%s): %s, at %v", v.ID, v.Impact, v.Help, v.Nodes)
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
	t.Logf("axe-core: %d violations, none serious or critical allowed", len(violations))
}
