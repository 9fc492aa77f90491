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

// A key the keyboard helpers press: its DOM key and code, its Windows key
// code, and the text it types, if any.
type keyDef struct {
	key, code string
	keyCode   int
	text      string
}

// Keys the browser tests press.
var (
	keyTab       = keyDef{"Tab", "Tab", 9, ""}
	keyEnter     = keyDef{"Enter", "Enter", 13, "\r"}
	keySpace     = keyDef{" ", "Space", 32, " "}
	keyArrowUp   = keyDef{"ArrowUp", "ArrowUp", 38, ""}
	keyArrowDown = keyDef{"ArrowDown", "ArrowDown", 40, ""}
)

// modShift is the Shift modifier of Input.dispatchKeyEvent.
const modShift = 8

// press presses and releases k, with modifiers (modShift), as the
// keyboard would.
func (b *browser) press(k keyDef, modifiers int) {
	b.t.Helper()
	down := map[string]any{"type": "rawKeyDown", "key": k.key, "code": k.code,
		"windowsVirtualKeyCode": k.keyCode, "nativeVirtualKeyCode": k.keyCode, "modifiers": modifiers}
	if k.text != "" {
		down["type"], down["text"], down["unmodifiedText"] = "keyDown", k.text, k.text
	}
	b.call(b.session, "Input.dispatchKeyEvent", down, nil)
	b.call(b.session, "Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": k.key, "code": k.code,
		"windowsVirtualKeyCode": k.keyCode, "nativeVirtualKeyCode": k.keyCode, "modifiers": modifiers}, nil)
}

// typeText types text into the focused control, as a keyboard or an input
// method would.
func (b *browser) typeText(text string) {
	b.t.Helper()
	b.call(b.session, "Input.insertText", map[string]any{"text": text}, nil)
}

// tabTo presses Tab (Shift+Tab when backwards) until the focused element
// satisfies is, a JavaScript function of the element, failing the test
// after max presses: what a keyboard user does to reach a control. It
// presses nothing when the focus is there already.
func (b *browser) tabTo(t *testing.T, what, is string, backwards bool, max int) {
	t.Helper()
	mods := 0
	if backwards {
		mods = modShift
	}
	var trail []string
	for i := range max + 1 {
		if i > 0 {
			b.press(keyTab, mods)
		}
		var at struct {
			Is   bool
			Desc string
		}
		err := b.eval(`(() => { const el = document.activeElement;
			const desc = el ? el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.getAttribute("href") ? "[href=" + el.getAttribute("href") + "]" : "") +
				' "' + (el.innerText || el.value || "").trim().slice(0, 30) + '"' : "none";
			return {Is: !!el && !!(`+is+`)(el), Desc: desc}; })()`, &at)
		if err != nil {
			t.Fatalf("read the focus while tabbing to %s: %v", what, err)
		}
		trail = append(trail, at.Desc)
		if at.Is {
			return
		}
	}
	t.Fatalf("%s not reached with %d presses of Tab; the focus went %s", what, max, strings.Join(trail, " → "))
}

// resize sets the page's viewport to width by height CSS pixels.
func (b *browser) resize(width, height int) {
	b.t.Helper()
	b.call(b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// setJavaScript turns the page's own scripts on or off, at once: the
// scripts of the pages loaded next, and the timers of the page shown.
// DevTools' Runtime.evaluate runs either way, but what it starts that waits
// on a timer does not finish while scripts are off.
func (b *browser) setJavaScript(on bool) {
	b.t.Helper()
	b.call(b.session, "Emulation.setScriptExecutionDisabled", map[string]any{"value": !on}, nil)
}

// documentID names the document the page shows; it changes with every
// navigation that loads a new one (not with a jump to a fragment).
func (b *browser) documentID() string {
	b.t.Helper()
	var tree struct {
		FrameTree struct {
			Frame struct {
				LoaderID string `json:"loaderId"`
			} `json:"frame"`
		} `json:"frameTree"`
	}
	b.call(b.session, "Page.getFrameTree", nil, &tree)
	return tree.FrameTree.Frame.LoaderID
}

// waitForDocument waits until the page shows a document other than the
// one named previous, fully loaded.
func (b *browser) waitForDocument(t *testing.T, previous string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state string
		if id := b.documentID(); id != previous {
			if err := b.eval(`document.readyState`, &state); err == nil && state == "complete" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new page loaded within 30s (ready state %q)", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAccessibilityStrictly runs axe-core on the page and fails the test
// on every violation, whatever its impact, logging each with the elements
// at fault. It returns how many rules were broken.
func (b *browser) checkAccessibilityStrictly(t *testing.T, axe string) int {
	t.Helper()
	if err := b.eval(axe+"\n;true", nil); err != nil {
		t.Fatalf("load axe-core into the page: %v", err)
	}
	var violations []axeViolation
	err := b.eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.html.slice(0, 200))})))`, &violations)
	if err != nil {
		t.Fatalf("run axe-core: %v", err)
	}
	for _, v := range violations {
		t.Errorf("axe %s (%s): %s, at %d elements:\n\t%s", v.ID, v.Impact, v.Help, len(v.Nodes), strings.Join(v.Nodes, "\n\t"))
	}
	return len(violations)
}
