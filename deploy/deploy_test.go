package deploy_test

// The deployment files checked against the spotflow binary the test builds:
// the systemd units (systemd-analyze verify and security, and what they run),
// the Kubernetes manifests (decoded strictly into the API types, then their
// commands, flags, variables, probes, Secrets, ConfigMaps, selectors and
// security contexts), and the NATS Helm chart's values.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	// binaryPath is where the units and the images have spotflow.
	binaryPath = "/usr/local/bin/spotflow"
	// namespace is the Kubernetes namespace of every manifest.
	namespace = "spotflow"
)

// roles are the commands that run one role of the pipeline each.
var roles = []string{"intake", "router", "dispatcher", "projector"}

// reloadsOnHangup are the commands whose process reloads the catalogue on
// SIGHUP (Main.Run in cmd/spotflow/app.go); `spotflow nats` does not, and
// SIGHUP would end it.
var reloadsOnHangup = map[string]bool{"intake": true, "router": true, "dispatcher": true, "projector": true}

// replicas are the Deployments' replicas by role.
var replicas = map[string]int32{"intake": 2, "router": 3, "dispatcher": 3, "projector": 3}

var tmpDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spotflow-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var built struct {
	once sync.Once
	root string
	err  error
}

// spotflow builds the binary once, at binaryPath under a file-system root of
// its own, and returns that root and the binary.
func spotflow(t *testing.T) (root, bin string) {
	t.Helper()
	built.once.Do(func() {
		root := filepath.Join(tmpDir, "root")
		cmd := exec.Command("go", "build", "-o", filepath.Join(root, binaryPath), "github.com/spotflow/spotflow/cmd/spotflow")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.root = root
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.root, filepath.Join(built.root, binaryPath)
}

// run runs the binary with args in an empty environment, so that no
// variable of the test's changes what it prints, and returns its output and
// exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	_, bin := spotflow(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("spotflow %s: %v", strings.Join(args, " "), err)
		return "", 0
	}
}

// A flag of a command, as its --help prints it.
type flagInfo struct {
	takesValue bool   // false for a boolean flag
	env        string // the environment variable of the same setting
	def        string // the default the binary shows, if any
}

type commandHelp struct {
	flags map[string]flagInfo
	envs  map[string]bool // every variable the command reads
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]*commandHelp{}
)

var (
	flagLineRe = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\S+))?$`)
	envNameRe  = regexp.MustCompile(`\(([A-Z][A-Z0-9]*_[A-Z0-9_]*)\)`)
	defaultRe  = regexp.MustCompile(`\(default (.*)\)$`)
)

// help runs `spotflow <command> --help` and reads its flags, their
// variables and defaults.
func help(t *testing.T, command string) *commandHelp {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[command]; ok {
		return h
	}
	words := strings.Fields(command)
	out, code := run(t, append(words, "--help")...)
	if code != 2 || !strings.HasPrefix(out, "Usage: spotflow "+words[0]) {
		t.Fatalf("spotflow %s --help: exit %d\n%s", command, code, out)
	}
	h := &commandHelp{flags: map[string]flagInfo{}, envs: map[string]bool{}}
	var name string
	var usage strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		f := h.flags[name]
		if m := envNameRe.FindStringSubmatch(usage.String()); m != nil {
			f.env = m[1]
			h.envs[m[1]] = true
		}
		if m := defaultRe.FindStringSubmatch(strings.TrimSpace(usage.String())); m != nil {
			f.def = m[1]
			if s, err := strconv.Unquote(m[1]); err == nil {
				f.def = s
			}
		}
		h.flags[name] = f
		name = ""
		usage.Reset()
	}
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		if m := flagLineRe.FindStringSubmatch(line); m != nil {
			flush()
			name = m[1]
			h.flags[name] = flagInfo{takesValue: m[2] != ""}
			continue
		}
		if name != "" && strings.HasPrefix(line, "    \t") {
			usage.WriteString(strings.TrimSpace(line) + " ")
		}
	}
	flush()
	httpEnv := "SPOTFLOW_HTTP_ADDR"
	if command == "edge run" {
		httpEnv = "SPOTFLOW_EDGE_HTTP"
	}
	if len(h.flags) < 10 || !h.flags["http"].takesValue || h.flags["http"].env != httpEnv {
		t.Fatalf("spotflow %s --help: could not read its flags:\n%s", command, out)
	}
	helpCache[command] = h
	return h
}

// parseArgs checks args against the command's flags, as the binary does too:
// it parses them and stops at --help. It returns each flag's value.
func parseArgs(t *testing.T, command string, args []string) map[string]string {
	t.Helper()
	h := help(t, command)
	values := map[string]string{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			t.Errorf("spotflow %s: %q is not a flag (the command takes no arguments)", command, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		f, ok := h.flags[name]
		if !ok {
			t.Errorf("spotflow %s has no flag --%s", command, name)
			continue
		}
		switch {
		case hasValue:
		case f.takesValue && i+1 < len(args):
			i++
			value = args[i]
		case f.takesValue:
			t.Errorf("spotflow %s: --%s needs a value", command, name)
		default:
			value = "true"
		}
		if strings.Contains(value, "$(") || strings.Contains(value, "${") {
			t.Errorf("spotflow %s --%s=%s: the value is expanded by the caller, and cannot be checked", command, name, value)
		}
		values[name] = value
	}
	words := strings.Fields(command)
	out, code := run(t, append(append(words, args...), "--help")...)
	if code != 2 || !strings.HasPrefix(out, "Usage: spotflow "+words[0]) {
		t.Errorf("spotflow %s %s: the binary refuses these flags (exit %d):\n%s", command, strings.Join(args, " "), code, firstLines(out, 3))
	}
	return values
}

// checkValues checks that the command takes each value of a variable: the
// binary ignores a variable that does not parse (docs/configuration.md), so
// the test gives each value to the flag of the same setting, which refuses
// what does not parse.
func checkValues(t *testing.T, command string, env map[string]string) {
	t.Helper()
	h := help(t, command)
	flagOf := map[string]string{}
	for name, f := range h.flags {
		if f.env != "" {
			flagOf[f.env] = name
		}
	}
	var args []string
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if flag, ok := flagOf[name]; ok {
			args = append(args, "--"+flag+"="+env[name])
		}
	}
	out, code := run(t, append(append([]string{command}, args...), "--help")...)
	if code != 2 || !strings.HasPrefix(out, "Usage: spotflow "+command) {
		t.Errorf("spotflow %s: a value does not parse (exit %d): %s", command, code, firstLines(out, 1))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// documentedEnv are the variables docs/configuration.md names.
func documentedEnv(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("`(SPOTFLOW_[A-Z0-9_]+|NATS_URL|DATABASE_URL)`").FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	return names
}

// spotflowEnv are the variables spotflow reads and documents: those its
// commands' --help names that docs/configuration.md describes.
func spotflowEnv(t *testing.T) map[string]bool {
	t.Helper()
	docs := documentedEnv(t)
	names := map[string]bool{}
	for _, c := range append(slices.Clone(roles), "nats") {
		for name := range help(t, c).envs {
			if docs[name] {
				names[name] = true
			}
		}
	}
	for _, name := range []string{"DATABASE_URL", "NATS_URL", "SPOTFLOW_CITIZEN_KEY", "SPOTFLOW_HTTP_ADDR"} {
		if !names[name] {
			t.Fatalf("%s is not among the variables spotflow reads and documents: %v", name, names)
		}
	}
	return names
}

// drainTime is how long a role takes to finish the messages in hand on
// SIGTERM, as docs/guarantees.md states it.
func drainTime(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("../docs/guarantees.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\*\*Graceful stop\.\*\*.*?within (\d+) seconds`).FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/guarantees.md states no drain time under **Graceful stop.**")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

// unitFile is a unit's settings: section, then key, then each value in order.
type unitFile map[string]map[string][]string

func (u unitFile) get(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func readUnit(t *testing.T, file string) unitFile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a setting: %q", file, n+1, line)
			}
			key = strings.TrimSpace(key)
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	return u
}

// unitCommand is the spotflow command a unit's file name says it runs:
// spotflow-<command>.service or spotflow-<command>@.service.
func unitCommand(file string) (command string, template bool) {
	name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "spotflow-"), ".service")
	command, template = strings.CutSuffix(name, "@")
	return command, template
}

func unitFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("systemd/*.service")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[filepath.Base(f)] = true
	}
	for _, want := range []string{"spotflow-intake.service", "spotflow-router@.service", "spotflow-dispatcher@.service", "spotflow-projector@.service"} {
		if !have[want] {
			t.Errorf("systemd/%s is missing", want)
		}
	}
	return files
}

// systemdDuration reads a systemd time span such as 45s, 1min or 1min 30s.
func systemdDuration(s string) (time.Duration, error) {
	r := strings.NewReplacer("min", "m", "sec", "s", " ", "")
	if d, err := time.ParseDuration(r.Replace(s)); err == nil {
		return d, nil
	}
	n, err := strconv.Atoi(s)
	return time.Duration(n) * time.Second, err
}

func TestSystemdUnits(t *testing.T) {
	drain := drainTime(t)
	for _, file := range unitFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			u := readUnit(t, file)
			command, template := unitCommand(file)
			if !slices.Contains(roles, command) && command != "nats" && command != "edge" {
				t.Fatalf("%s runs no spotflow role (want spotflow-<role>[@].service)", file)
			}
			// The worker roles run as several processes on a host; intake, the
			// NATS server and a desk's edge as one.
			if wantTemplate := command != "intake" && command != "nats" && command != "edge"; template != wantTemplate {
				t.Errorf("template unit: %v, want %v", template, wantTemplate)
			}
			want := map[string]string{
				"Type":                    "exec",
				"User":                    "spotflow",
				"Restart":                 "on-failure",
				"KillSignal":              "SIGTERM",
				"NoNewPrivileges":         "yes",
				"ProtectSystem":           "strict",
				"ProtectHome":             "yes",
				"PrivateTmp":              "yes",
				"PrivateDevices":          "yes",
				"CapabilityBoundingSet":   "",
				"AmbientCapabilities":     "",
				"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
				"SystemCallArchitectures": "native",
				"RestrictSUIDSGID":        "yes",
				"ProtectKernelTunables":   "yes",
				"ProtectKernelModules":    "yes",
				"ProtectControlGroups":    "yes",
				"MemoryDenyWriteExecute":  "yes",
				"LockPersonality":         "yes",
			}
			for key, value := range want {
				if got, ok := u.get("Service", key); !ok || got != value {
					t.Errorf("%s=%q, want %q", key, got, value)
				}
			}
			if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
				t.Errorf("SystemCallFilter=%q, want @system-service among them", u["Service"]["SystemCallFilter"])
			}
			if !slices.Contains(u["Service"]["EnvironmentFile"], "/etc/spotflow/spotflow.env") {
				t.Errorf("EnvironmentFile=%q, want /etc/spotflow/spotflow.env", u["Service"]["EnvironmentFile"])
			}
			if _, ok := u["Install"]["WantedBy"]; !ok {
				t.Error("no [Install] WantedBy=: the unit cannot be enabled")
			}

			stop, _ := u.get("Service", "TimeoutStopSec")
			if d, err := systemdDuration(stop); err != nil || d <= drain {
				t.Errorf("TimeoutStopSec=%q, want more than the drain time, %v (docs/guarantees.md)", stop, drain)
			}
			reload, hasReload := u.get("Service", "ExecReload")
			switch {
			case reloadsOnHangup[command] && reload != "/bin/kill -HUP $MAINPID":
				t.Errorf("ExecReload=%q, want /bin/kill -HUP $MAINPID: SIGHUP reloads the catalogue", reload)
			case !reloadsOnHangup[command] && hasReload:
				t.Errorf("ExecReload=%q: spotflow %s does not handle SIGHUP, which would end it", reload, command)
			}

			// ExecStart runs the role with flags the binary takes.
			start, _ := u.get("Service", "ExecStart")
			argv := strings.Fields(start)
			words := 2
			if command == "edge" {
				// The edge's command is edge run.
				command, words = "edge run", 3
			}
			if len(argv) < words || argv[0] != binaryPath || strings.Join(argv[1:words], " ") != command {
				t.Fatalf("ExecStart=%q, want %s %s ...", start, binaryPath, command)
			}
			args := slices.Clone(argv[words:])
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "%i", "1")
			}
			flags := parseArgs(t, command, args)
			if template {
				// Instances must not share an address.
				if http := strings.Join(argv, " "); strings.Contains(http, "--http") && !strings.Contains(http, "%i") {
					t.Errorf("ExecStart=%q: every instance would listen on the same address", start)
				}
			}
			if addr, ok := flags["http"]; ok && addr != "" {
				host, _, err := net.SplitHostPort(addr)
				if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
					t.Errorf("--http %s: want a loopback address (open /metrics without the operator token)", addr)
				}
			}
			dataDir, ok := flags["data-dir"]
			if !ok {
				t.Fatal("ExecStart passes no --data-dir: the default, .data, is relative to /")
			}
			if !slices.Contains(u["Service"]["ReadWritePaths"], dataDir) {
				t.Errorf("ReadWritePaths=%q, want the data directory %s", u["Service"]["ReadWritePaths"], dataDir)
			}
			if state, _ := u.get("Service", "StateDirectory"); "/var/lib/"+state != dataDir {
				t.Errorf("StateDirectory=%s, want the data directory %s", state, dataDir)
			}
		})
	}
}

// systemdAnalyze is systemd-analyze, or a skip without it; under CI=true
// a missing systemd-analyze fails.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-analyze is needed under CI=true: %v (Debian's package systemd)", err)
		}
		t.Skipf("no systemd-analyze: %v", err)
	}
	return p
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on every unit as it
// is, in a file-system root that holds the binary at /usr/local/bin/spotflow,
// the host's own units (the targets the units order themselves after) and
// the other programs the units run; and systemd-analyze security, which must
// rate each unit's exposure at most 2.0 ("OK").
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	root, _ := spotflow(t)
	var system string
	for _, dir := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(dir, "multi-user.target")); err == nil {
			system = dir
			break
		}
	}
	if system == "" {
		t.Fatal("the host has no systemd units to verify against (/usr/lib/systemd/system)")
	}
	if err := copyTree(system, filepath.Join(root, "usr/lib/systemd/system")); err != nil {
		t.Fatal(err)
	}
	units := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, file := range unitFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(units, filepath.Base(file)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		// Every other program a unit runs, from the host.
		u := readUnit(t, file)
		for key, values := range u["Service"] {
			if !strings.HasPrefix(key, "Exec") {
				continue
			}
			for _, v := range values {
				prog := strings.TrimLeft(strings.Fields(v)[0], "-@:+!")
				if prog == binaryPath {
					continue
				}
				if err := copyFile(prog, filepath.Join(root, prog)); err != nil {
					t.Fatalf("%s runs %s: %v", file, prog, err)
				}
			}
		}
	}
	for _, file := range unitFiles(t) {
		name := filepath.Base(file)
		if _, template := unitCommand(file); template {
			name = strings.Replace(name, "@.", "@1.", 1)
		}
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(analyze, "verify", "--man=no", "--root="+root, name).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
			out, err = exec.Command(analyze, "security", "--offline=yes", "--no-pager", "--threshold=20", "--root="+root, name).CombinedOutput()
			last := strings.TrimSpace(string(out))
			last = last[strings.LastIndex(last, "\n")+1:]
			if err != nil {
				t.Errorf("systemd-analyze security %s: %v: %s", name, err, last)
			} else {
				t.Log(last)
			}
		})
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	info, err := os.Stat(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, info.Mode().Perm())
}

// copyTree copies a directory of files and symbolic links.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			return copyFile(p, dst)
		}
		return nil
	})
}

// TestSystemdEnvironmentExample checks spotflow.env.example: it names every
// variable spotflow reads and documents, and nothing else, and holds no
// secret.
func TestSystemdEnvironmentExample(t *testing.T) {
	f, err := os.Open("systemd/spotflow.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := spotflowEnv(t)
	seen, values := map[string]bool{}, map[string]string{}
	assign := regexp.MustCompile(`^(#?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	secrets := map[string]bool{"SPOTFLOW_CITIZEN_KEY": true, "SPOTFLOW_NATS_STORE_KEY": true, "SPOTFLOW_OPERATOR_TOKEN": true, "DATABASE_URL": true}
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		m := assign.FindStringSubmatch(s.Text())
		if m == nil {
			continue
		}
		set, name, value := m[1] == "", m[2], m[3]
		values[name] = value
		if !known[name] {
			t.Errorf("line %d: spotflow reads no variable %s (or docs/configuration.md does not describe it)", n, name)
		}
		if seen[name] {
			t.Errorf("line %d: %s again", n, name)
		}
		seen[name] = true
		if set && secrets[name] {
			if u, err := url.Parse(value); name != "DATABASE_URL" || err != nil {
				t.Errorf("line %d: %s is set: leave secrets commented out", n, name)
			} else if p, ok := u.User.Password(); ok && p != "CHANGE-ME" {
				t.Errorf("line %d: DATABASE_URL holds a password: want the placeholder CHANGE-ME", n)
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for name := range known {
		if !seen[name] {
			t.Errorf("%s is not in spotflow.env.example", name)
		}
	}
	// Every value, set or shown commented out, is one spotflow takes.
	for _, command := range append(slices.Clone(roles), "nats") {
		checkValues(t, command, values)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

// manifests are the objects of deploy/kubernetes, decoded strictly.
type manifests struct {
	namespaces  []*corev1.Namespace
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	services    []*corev1.Service
	deployments []*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifest decodes one YAML document into its Kubernetes API type,
// refusing duplicate keys, unknown fields and kinds it does not know; an
// empty document is nil.
func decodeManifest(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	if s := string(bytes.TrimSpace(j)); s == "null" || s == "" {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("unknown kind %q of apiVersion %q", tm.Kind, tm.APIVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the object", tm.Kind)
	}
	// encoding/json matches field names whatever their case; the API server
	// does not, and neither does its decoder.
	strict, err := kjson.UnmarshalStrict(j, reflect.New(reflect.TypeOf(obj).Elem()).Interface())
	if err = errors.Join(append(strict, err)...); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// isHelmValues tells the values files of Helm charts, which are no manifests.
func isHelmValues(file string) bool { return strings.HasSuffix(file, "-values.yaml") }

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.y*ml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, file := range files {
		if isHelmValues(file) {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			obj, err := decodeManifest([]byte(doc))
			if err != nil {
				t.Fatalf("%s, document %d: %v", file, i+1, err)
			}
			var meta *metav1.ObjectMeta
			switch o := obj.(type) {
			case nil:
				continue
			case *corev1.Namespace:
				m.namespaces, meta = append(m.namespaces, o), &o.ObjectMeta
			case *corev1.ConfigMap:
				m.configMaps[o.Name], meta = o, &o.ObjectMeta
			case *corev1.Secret:
				m.secrets[o.Name], meta = o, &o.ObjectMeta
			case *corev1.Service:
				m.services, meta = append(m.services, o), &o.ObjectMeta
			case *appsv1.Deployment:
				m.deployments, meta = append(m.deployments, o), &o.ObjectMeta
			case *policyv1.PodDisruptionBudget:
				m.pdbs, meta = append(m.pdbs, o), &o.ObjectMeta
			}
			where := fmt.Sprintf("%s, document %d", file, i+1)
			if meta.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			if _, ok := obj.(*corev1.Namespace); ok {
				if meta.Name != namespace {
					t.Errorf("%s: namespace %q, want %q", where, meta.Name, namespace)
				}
			} else if meta.Namespace != namespace {
				t.Errorf("%s: %s is in namespace %q, want %q", where, meta.Name, meta.Namespace, namespace)
			}
		}
	}
	if len(m.namespaces) != 1 {
		t.Errorf("%d Namespaces, want 1", len(m.namespaces))
	}
	return m
}

// TestKubernetesDecodingIsStrict makes sure the decoding the other tests rely
// on refuses what the API server would.
func TestKubernetesDecodingIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n",
		"nested unknown": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1, targetport: 1}]}\n",
		"unknown kind":   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"wrong version":  "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n",
		"duplicate key":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"bad quantity":   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, resources: {limits: {cpu: lots}}}]}}}\n",
	} {
		if _, err := decodeManifest([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// secretKeys are the keys a Secret is known to hold: from a manifest, or
// from the commands of kubernetes/README.md that make it.
type secretKeys struct {
	keys     map[string]bool
	anyKey   bool              // made from a directory: any file name
	literals map[string]string // values given on the command line
}

// knownSecrets are the Secrets the manifests and the README make.
func knownSecrets(t *testing.T, m *manifests) map[string]*secretKeys {
	t.Helper()
	known := map[string]*secretKeys{}
	get := func(name string) *secretKeys {
		if known[name] == nil {
			known[name] = &secretKeys{keys: map[string]bool{}, literals: map[string]string{}}
		}
		return known[name]
	}
	for name, s := range m.secrets {
		k := get(name)
		for key := range s.Data {
			k.keys[key] = true
		}
		for key, value := range s.StringData {
			k.keys[key] = true
			k.literals[key] = value
		}
	}
	b, err := os.ReadFile("kubernetes/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(strings.ReplaceAll(string(b), "\\\n", " ")) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "kubectl ") {
			continue
		}
		words := shellWords(line)
		i := slices.Index(words, "create")
		if i < 0 || i+3 >= len(words) || words[i+1] != "secret" {
			continue
		}
		ns := ""
		for j, w := range words[:i] {
			if (w == "-n" || w == "--namespace") && j+1 < len(words) {
				ns = words[j+1]
			}
		}
		if ns != namespace {
			t.Errorf("README: %q makes a Secret outside namespace %s", line, namespace)
		}
		kind, k := words[i+2], get(words[i+3])
		if kind == "tls" {
			k.keys[corev1.TLSCertKey], k.keys[corev1.TLSPrivateKeyKey] = true, true
			continue
		}
		for _, w := range words[i+4:] {
			if v, ok := strings.CutPrefix(w, "--from-literal="); ok {
				key, value, _ := strings.Cut(v, "=")
				k.keys[key], k.literals[key] = true, value
			} else if v, ok := strings.CutPrefix(w, "--from-file="); ok {
				key, _, hasKey := strings.Cut(v, "=")
				switch {
				case hasKey:
					k.keys[key] = true
				case strings.HasSuffix(v, "/"):
					k.anyKey = true
				default:
					k.keys[path.Base(v)] = true
				}
			}
		}
	}
	if len(known) == 0 {
		t.Fatal("kubernetes/README.md makes no Secret")
	}
	return known
}

// shellWords splits a command line as a shell would, for quoted words.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	depth := 0 // $( ... ) inside double quotes
	for _, r := range line {
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case quote == '"':
			switch {
			case r == '"' && depth == 0:
				quote = 0
			case r == '(':
				depth++
				w.WriteRune(r)
			case r == ')' && depth > 0:
				depth--
				w.WriteRune(r)
			default:
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// pod is what a Deployment's container sees, for the checks.
type pod struct {
	t         *testing.T
	m         *manifests
	secrets   map[string]*secretKeys
	spec      *corev1.PodSpec
	container *corev1.Container
	where     string
}

// volumeAt is the volume mounted at the longest mount path that holds p, and
// the path within it.
func (p *pod) volumeAt(file string) (*corev1.Volume, string) {
	var best *corev1.VolumeMount
	for i, vm := range p.container.VolumeMounts {
		if file == vm.MountPath || strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			if best == nil || len(vm.MountPath) > len(best.MountPath) {
				best = &p.container.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, best.MountPath), "/")
	if best.SubPath != "" {
		rel = path.Join(best.SubPath, rel)
	}
	for i, v := range p.spec.Volumes {
		if v.Name == best.Name {
			return &p.spec.Volumes[i], rel
		}
	}
	return nil, ""
}

// checkSecretKey checks that the Secret name is made, with key.
func (p *pod) checkSecretKey(what, name, key string) {
	s, ok := p.secrets[name]
	switch {
	case !ok:
		p.t.Errorf("%s: %s: Secret %q is neither in the manifests nor made in kubernetes/README.md", p.where, what, name)
	case key != "" && !s.anyKey && !s.keys[key]:
		p.t.Errorf("%s: %s: Secret %q has no key %q (it has %v)", p.where, what, name, key, slices.Sorted(maps.Keys(s.keys)))
	}
}

func (p *pod) checkConfigMapKey(what, name, key string) {
	cm, ok := p.m.configMaps[name]
	switch {
	case !ok:
		p.t.Errorf("%s: %s: no ConfigMap %q", p.where, what, name)
	case key != "":
		if _, ok := cm.Data[key]; !ok {
			p.t.Errorf("%s: %s: ConfigMap %q has no key %q", p.where, what, name, key)
		}
	}
}

// checkFile checks that the container finds a file at file: a key of the
// Secret or ConfigMap mounted there.
func (p *pod) checkFile(what, file string) {
	v, rel := p.volumeAt(file)
	if v == nil {
		p.t.Errorf("%s: %s %s is on no volume: the image has no such file", p.where, what, file)
		return
	}
	key := rel
	var items []corev1.KeyToPath
	switch {
	case v.Secret != nil:
		items = v.Secret.Items
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
	default:
		p.t.Errorf("%s: %s %s is on volume %q, which is no Secret or ConfigMap", p.where, what, file, v.Name)
		return
	}
	if len(items) > 0 {
		key = ""
		for _, it := range items {
			if it.Path == rel {
				key = it.Key
			}
		}
		if key == "" {
			p.t.Errorf("%s: %s %s: volume %q projects no item at %s", p.where, what, file, v.Name, rel)
			return
		}
	}
	if v.Secret != nil {
		p.checkSecretKey(what+" "+file, v.Secret.SecretName, key)
	} else {
		p.checkConfigMapKey(what+" "+file, v.ConfigMap.Name, key)
	}
}

// settings are the values of a container's settings by variable: the
// binary's defaults, then envFrom, env and the flags in args, each winning
// over the one before. A value from a Secret is its literal in the README,
// or "" when unknown; fromSecret tells them.
func (p *pod) settings(command string, flags map[string]string, known map[string]bool) (values map[string]string, fromSecret map[string]bool) {
	h := help(p.t, command)
	values, fromSecret = map[string]string{}, map[string]bool{}
	set := map[string]string{} // the values the manifests give
	defer func() { checkValues(p.t, command, set) }()
	for _, f := range h.flags {
		if f.env != "" && f.def != "" {
			values[f.env] = f.def
		}
	}
	checkName := func(where, name string) {
		if !known[name] {
			p.t.Errorf("%s: %s: spotflow reads no variable %s (or docs/configuration.md does not describe it)", p.where, where, name)
		}
	}
	for _, from := range p.container.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			p.checkConfigMapKey("envFrom", from.ConfigMapRef.Name, "")
			if cm := p.m.configMaps[from.ConfigMapRef.Name]; cm != nil {
				for name, value := range cm.Data {
					checkName("ConfigMap "+cm.Name, from.Prefix+name)
					values[from.Prefix+name], set[from.Prefix+name] = value, value
				}
			}
		default:
			p.t.Errorf("%s: envFrom other than a ConfigMap: name each variable taken from a Secret in env", p.where)
		}
	}
	for _, e := range p.container.Env {
		checkName("env", e.Name)
		switch {
		case e.ValueFrom == nil:
			if strings.Contains(e.Value, "$(") {
				p.t.Errorf("%s: env %s=%s: no $(VAR) expansion, the test cannot check it", p.where, e.Name, e.Value)
			}
			values[e.Name], set[e.Name] = e.Value, e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			p.checkSecretKey("env "+e.Name, ref.Name, ref.Key)
			values[e.Name], fromSecret[e.Name] = "", true
			if s := p.secrets[ref.Name]; s != nil && s.literals[ref.Key] != "" {
				values[e.Name], set[e.Name] = s.literals[ref.Key], s.literals[ref.Key]
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			p.checkConfigMapKey("env "+e.Name, ref.Name, ref.Key)
			if cm := p.m.configMaps[ref.Name]; cm != nil {
				values[e.Name], set[e.Name] = cm.Data[ref.Key], cm.Data[ref.Key]
			}
		default:
			p.t.Errorf("%s: env %s: only values, Secrets and ConfigMaps", p.where, e.Name)
		}
	}
	for name, value := range flags {
		if env := h.flags[name].env; env != "" {
			values[env] = value
			delete(fromSecret, env)
		}
	}
	return values, fromSecret
}

// ptrString prints what p points to, or "unset".
func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// resolvePort is the container port a probe or a Service targets.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// delivery is an agency's entry in spotflow's delivery configuration
// (docs/agencies.md#delivery).
type delivery struct {
	Delivery          string `json:"delivery"`
	URL               string `json:"url,omitempty"`
	CredentialHeader  string `json:"credential_header,omitempty"`
	CredentialEnv     string `json:"credential_env,omitempty"`
	CredentialFile    string `json:"credential_file,omitempty"`
	SigningSecretEnv  string `json:"signing_secret_env,omitempty"`
	SigningSecretFile string `json:"signing_secret_file,omitempty"`
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	secrets := knownSecrets(t, m)
	known := spotflowEnv(t)
	drain := drainTime(t)
	admins := 0
	deployments := map[string]*appsv1.Deployment{}
	httpPorts := map[string]int{} // by role

	for _, d := range m.deployments {
		t.Run("Deployment "+d.Name, func(t *testing.T) {
			spec := &d.Spec.Template.Spec
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("%d containers and %d init containers, want one container", len(spec.Containers), len(spec.InitContainers))
			}
			c := &spec.Containers[0]
			p := &pod{t: t, m: m, secrets: secrets, spec: spec, container: c, where: d.Name}

			// The command: the binary, a role, and flags it takes.
			argv := append(slices.Clone(c.Command), c.Args...)
			if len(argv) < 2 || argv[0] != binaryPath || !slices.Contains(roles, argv[1]) {
				t.Fatalf("runs %q, want %s <%s> [flags]", argv, binaryPath, strings.Join(roles, "|"))
			}
			role := argv[1]
			if deployments[role] != nil {
				t.Errorf("a second Deployment of role %s", role)
			}
			deployments[role] = d
			if d.Name != "spotflow-"+role || d.Labels["app.kubernetes.io/component"] != role {
				t.Errorf("name %q, component %q: want spotflow-%s and %s", d.Name, d.Labels["app.kubernetes.io/component"], role, role)
			}
			flags := parseArgs(t, role, argv[2:])
			values, fromSecret := p.settings(role, flags, known)

			if got := ptrString(d.Spec.Replicas); got != fmt.Sprint(replicas[role]) {
				t.Errorf("replicas %s, want %d", got, replicas[role])
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("selector %v does not select the pods' labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
			}
			if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(path.Base(c.Image), ":") {
				t.Errorf("image %q: want a tagged image", c.Image)
			}

			// Probes on the port the role serves HTTP on.
			addr := values["SPOTFLOW_HTTP_ADDR"]
			host, portStr, err := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portStr)
			if err != nil || port == 0 {
				t.Fatalf("HTTP address %q: the role serves no /healthz or /readyz without --http", addr)
			}
			if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
				t.Errorf("HTTP address %q is loopback: the kubelet cannot probe it", addr)
			}
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == port }) {
				t.Errorf("no container port %d, the port of --http", port)
			}
			scheme := corev1.URISchemeHTTP
			if values["SPOTFLOW_TLS_CERT"] != "" {
				scheme = corev1.URISchemeHTTPS
				p.checkFile("SPOTFLOW_TLS_CERT", values["SPOTFLOW_TLS_CERT"])
				p.checkFile("SPOTFLOW_TLS_KEY", values["SPOTFLOW_TLS_KEY"])
			}
			for _, pr := range []struct {
				name     string
				probe    *corev1.Probe
				path     string
				required bool
			}{
				{"liveness", c.LivenessProbe, "/healthz", true},
				{"readiness", c.ReadinessProbe, "/readyz", true},
				{"startup", c.StartupProbe, "/healthz", false},
			} {
				if pr.probe == nil {
					if pr.required {
						t.Errorf("no %s probe", pr.name)
					}
					continue
				}
				g := pr.probe.HTTPGet
				if g == nil {
					t.Errorf("%s probe: want an HTTP GET of %s", pr.name, pr.path)
					continue
				}
				if got, ok := resolvePort(c, g.Port); !ok || int(got) != port {
					t.Errorf("%s probe: port %s, want %d (--http %s)", pr.name, g.Port.String(), port, addr)
				}
				if g.Path != pr.path {
					t.Errorf("%s probe: path %q, want %q", pr.name, g.Path, pr.path)
				}
				if cmpScheme := cmp.Or(g.Scheme, corev1.URISchemeHTTP); cmpScheme != scheme {
					t.Errorf("%s probe: scheme %s, want %s (a certificate is set: %v)", pr.name, cmpScheme, scheme, scheme == corev1.URISchemeHTTPS)
				}
			}
			if !fromSecret["SPOTFLOW_OPERATOR_TOKEN"] {
				t.Errorf("no SPOTFLOW_OPERATOR_TOKEN from a Secret: beyond loopback /metrics answers 403 without it")
			}
			httpPorts[role] = port

			// What the role needs, where it reads it.
			for _, name := range []string{"DATABASE_URL", "SPOTFLOW_CITIZEN_KEY", "NATS_URL"} {
				if values[name] == "" && !fromSecret[name] {
					t.Errorf("%s is not set: the role would start a local cluster, or make a key of its own", name)
				}
			}
			for _, name := range []string{"DATABASE_URL", "SPOTFLOW_CITIZEN_KEY", "SPOTFLOW_OPERATOR_TOKEN"} {
				if values[name] != "" && !fromSecret[name] {
					t.Errorf("%s is set in the clear: take it from a Secret", name)
				}
			}
			if dbURL, err := url.Parse(values["DATABASE_URL"]); err == nil {
				if ca := dbURL.Query().Get("sslrootcert"); ca != "" {
					p.checkFile("DATABASE_URL's sslrootcert", ca)
				}
				if mode := dbURL.Query().Get("sslmode"); values["DATABASE_URL"] != "" && mode != "verify-full" {
					t.Errorf("DATABASE_URL sslmode=%q, want verify-full (docs/operations.md#tls)", mode)
				}
			}
			if u, err := url.Parse(values["NATS_URL"]); err != nil || u.Scheme != "tls" {
				t.Errorf("NATS_URL %q: want tls://", values["NATS_URL"])
			}
			if ca := values["SPOTFLOW_NATS_CA"]; ca != "" {
				p.checkFile("SPOTFLOW_NATS_CA", ca)
			}
			if role == "intake" {
				dir := values["SPOTFLOW_RECEIPT_KEYS"]
				if v, rel := p.volumeAt(dir); v == nil || rel != "" || v.Secret == nil {
					t.Errorf("SPOTFLOW_RECEIPT_KEYS %q: want a Secret mounted there, the same keys on every intake process", dir)
				} else {
					p.checkSecretKey("receipt keys", v.Secret.SecretName, "")
				}
			}

			// The seeds of its identities: its role's, and admin's in one
			// Deployment only.
			ids := values["SPOTFLOW_NATS_IDENTITIES"]
			if v, rel := p.volumeAt(ids); v == nil || rel != "" || v.Secret == nil || len(v.Secret.Items) == 0 {
				t.Errorf("SPOTFLOW_NATS_IDENTITIES %q: want a Secret mounted there, with only the seeds this role uses as items", ids)
			} else {
				seeds := map[string]bool{}
				for _, it := range v.Secret.Items {
					if it.Path != it.Key {
						t.Errorf("seed %s mounted as %s: spotflow reads <identity>.nk", it.Key, it.Path)
					}
					seeds[it.Key] = true
					p.checkFile("NATS seed", path.Join(ids, it.Path))
				}
				if !seeds[role+".nk"] {
					t.Errorf("the seed %s.nk is not mounted: the role connects as its own identity", role)
				}
				if seeds["admin.nk"] {
					admins++
				}
				for s := range seeds {
					if s != role+".nk" && s != "admin.nk" {
						t.Errorf("seed %s mounted: give a role only its own seed", s)
					}
				}
			}

			// The delivery configuration, with the files it names.
			if spec := values["SPOTFLOW_DELIVERY"]; spec != "" {
				if role != "dispatcher" {
					t.Errorf("SPOTFLOW_DELIVERY is the dispatcher's")
				}
				p.checkFile("SPOTFLOW_DELIVERY", spec)
				v, rel := p.volumeAt(spec)
				if v != nil && v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] != nil {
					var config map[string]delivery
					dec := json.NewDecoder(strings.NewReader(m.configMaps[v.ConfigMap.Name].Data[rel]))
					dec.DisallowUnknownFields()
					if err := dec.Decode(&config); err != nil {
						t.Errorf("delivery configuration %s: %v", spec, err)
					}
					for agency, e := range config {
						for _, f := range []string{e.CredentialFile, e.SigningSecretFile} {
							if f != "" {
								p.checkFile("delivery of "+agency, f)
							}
						}
						for _, env := range []string{e.CredentialEnv, e.SigningSecretEnv} {
							if env != "" && !fromSecret[env] {
								t.Errorf("delivery of %s names %s, which no Secret sets", agency, env)
							}
						}
						if e.Delivery == "http" && !strings.HasPrefix(e.URL, "https://") {
							t.Errorf("delivery of %s: %q, want https:// (docs/security.md)", agency, e.URL)
						}
					}
				}
			}

			// Where it writes, and the security contexts.
			dataDir := values["SPOTFLOW_DATA_DIR"]
			if v, rel := p.volumeAt(dataDir); v == nil || rel != "" || v.EmptyDir == nil {
				t.Errorf("SPOTFLOW_DATA_DIR %q: want an emptyDir mounted there, the root file system being read-only", dataDir)
			}
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
				(psc.RunAsUser != nil && *psc.RunAsUser == 0) {
				t.Errorf("pod securityContext %+v: want runAsNonRoot and the RuntimeDefault seccomp profile", psc)
			}
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				(sc.Privileged != nil && *sc.Privileged) ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root file system and every capability dropped", sc)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("the pod mounts a service account token: spotflow does not talk to the API server")
			}
			if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drain {
				t.Errorf("terminationGracePeriodSeconds %s: want more than the drain time, %v", ptrString(g), drain)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[r]
				lim, hasLim := c.Resources.Limits[r]
				if !hasReq || !hasLim || req.Cmp(lim) > 0 || req.IsZero() {
					t.Errorf("%s: request %v, limit %v: want both, the request no more than the limit", r, req.String(), lim.String())
				}
			}

			// Every volume mounted is defined, every one defined mounted, and
			// every Secret and ConfigMap it names known.
			defined := map[string]bool{}
			for _, v := range spec.Volumes {
				defined[v.Name] = true
				switch {
				case v.Secret != nil:
					for _, it := range v.Secret.Items {
						p.checkSecretKey("volume "+v.Name, v.Secret.SecretName, it.Key)
					}
					p.checkSecretKey("volume "+v.Name, v.Secret.SecretName, "")
				case v.ConfigMap != nil:
					for _, it := range v.ConfigMap.Items {
						p.checkConfigMapKey("volume "+v.Name, v.ConfigMap.Name, it.Key)
					}
					p.checkConfigMapKey("volume "+v.Name, v.ConfigMap.Name, "")
				case v.EmptyDir != nil:
				default:
					t.Errorf("volume %s: only Secrets, ConfigMaps and emptyDirs", v.Name)
				}
				if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == v.Name }) {
					t.Errorf("volume %s is not mounted", v.Name)
				}
			}
			for _, vm := range c.VolumeMounts {
				if !defined[vm.Name] {
					t.Errorf("mount %s: no volume %s", vm.MountPath, vm.Name)
				}
			}
		})
	}
	for _, role := range roles {
		if deployments[role] == nil {
			t.Errorf("no Deployment runs %s", role)
		}
	}
	if admins != 1 {
		t.Errorf("%d Deployments have the admin seed, want 1: it provisions the streams", admins)
	}

	// Each Deployment has one PodDisruptionBudget, selecting its pods only.
	for _, d := range m.deployments {
		var budgets []string
		for _, b := range m.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
			if err != nil || sel.Empty() {
				t.Errorf("PodDisruptionBudget %s: selector %v (%v)", b.Name, b.Spec.Selector, err)
				continue
			}
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				budgets = append(budgets, b.Name)
				if (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil) {
					t.Errorf("PodDisruptionBudget %s: want minAvailable or maxUnavailable", b.Name)
				}
				if b.Spec.MinAvailable != nil && d.Spec.Replicas != nil && b.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
					t.Errorf("PodDisruptionBudget %s: minAvailable %s of %d replicas leaves no disruption", b.Name, b.Spec.MinAvailable.String(), *d.Spec.Replicas)
				}
			}
		}
		if len(budgets) != 1 {
			t.Errorf("Deployment %s: PodDisruptionBudgets %v, want one", d.Name, budgets)
		}
	}
	for _, b := range m.pdbs {
		sel, _ := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if !slices.ContainsFunc(m.deployments, func(d *appsv1.Deployment) bool { return sel.Matches(labels.Set(d.Spec.Template.Labels)) }) {
			t.Errorf("PodDisruptionBudget %s selects no Deployment's pods", b.Name)
		}
	}

	// The Service of intake's HTTP selects intake's pods only, on its port.
	intake := deployments["intake"]
	if intake == nil {
		return
	}
	served := false
	for _, s := range m.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		if len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(intake.Spec.Template.Labels)) {
			t.Errorf("Service %s does not select intake's pods", s.Name)
			continue
		}
		for _, d := range m.deployments {
			if d != intake && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Service %s selects %s's pods too", s.Name, d.Name)
			}
		}
		c := &intake.Spec.Template.Spec.Containers[0]
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			if got, ok := resolvePort(c, target); !ok || int(got) != httpPorts["intake"] {
				t.Errorf("Service %s port %d: targetPort %s is not intake's HTTP port %d", s.Name, sp.Port, target.String(), httpPorts["intake"])
			} else {
				served = true
			}
		}
	}
	if !served {
		t.Error("no Service reaches intake's HTTP")
	}
}

// ---------------------------------------------------------------------------
// The NATS Helm chart's values
// ---------------------------------------------------------------------------

// natsChartKeys are keys of the values of the nats chart (nats-io/k8s,
// helm/charts/nats/values.yaml, chart 2.14) that nats-values.yaml may set: a
// key ending in a dot takes a free-form value (merge and patch, env,
// resources, ...), which the test does not descend into.
var natsChartKeys = strings.Fields(`
	global.image.pullPolicy global.image.pullSecretNames global.image.registry global.labels.
	nameOverride fullnameOverride namespaceOverride
	tlsCA.enabled tlsCA.configMapName tlsCA.secretName tlsCA.dir tlsCA.key
	config.cluster.enabled config.cluster.port config.cluster.replicas config.cluster.noAdvertise
	config.cluster.routeURLs.user config.cluster.routeURLs.password config.cluster.routeURLs.useFQDN config.cluster.routeURLs.k8sClusterDomain
	config.cluster.tls.enabled config.cluster.tls.secretName config.cluster.tls.dir config.cluster.tls.cert config.cluster.tls.key
	config.cluster.tls.merge. config.cluster.tls.patch. config.cluster.merge. config.cluster.patch.
	config.jetstream.enabled config.jetstream.fileStore.enabled config.jetstream.fileStore.dir
	config.jetstream.fileStore.pvc.enabled config.jetstream.fileStore.pvc.size config.jetstream.fileStore.pvc.storageClassName
	config.jetstream.fileStore.pvc.merge. config.jetstream.fileStore.pvc.patch. config.jetstream.fileStore.pvc.name
	config.jetstream.fileStore.maxSize config.jetstream.memoryStore.enabled config.jetstream.memoryStore.maxSize
	config.jetstream.merge. config.jetstream.patch.
	config.nats.port config.nats.tls.enabled config.nats.tls.secretName config.nats.tls.dir config.nats.tls.cert config.nats.tls.key
	config.nats.tls.merge. config.nats.tls.patch.
	config.leafnodes.enabled config.websocket.enabled config.mqtt.enabled config.gateway.enabled
	config.monitor.enabled config.monitor.port config.monitor.tls.enabled config.profiling.enabled config.profiling.port
	config.resolver.enabled config.serverNamePrefix config.merge. config.patch.
	container.image.repository container.image.tag container.image.pullPolicy container.image.registry container.image.digest container.image.fullImageName
	container.ports. container.env. container.merge. container.patch. container.resources.
	reloader.enabled reloader.image.repository reloader.image.tag reloader.env. reloader.natsVolumeMountPrefixes reloader.merge. reloader.patch.
	promExporter.enabled promExporter.port promExporter.env. promExporter.merge. promExporter.patch. promExporter.podMonitor.enabled
	service.enabled service.ports. service.merge. service.patch. service.name
	statefulSet.merge. statefulSet.patch. statefulSet.name
	podTemplate.configChecksumAnnotation podTemplate.topologySpreadConstraints. podTemplate.merge. podTemplate.patch.
	headlessService.merge. headlessService.patch. headlessService.name
	configMap.merge. configMap.patch. configMap.name
	podDisruptionBudget.enabled podDisruptionBudget.merge. podDisruptionBudget.patch. podDisruptionBudget.name
	serviceAccount.enabled serviceAccount.merge. serviceAccount.patch. serviceAccount.name
	natsBox.enabled extraResources.
`)

// lookup is the value at a dotted path of v.
func lookup(v any, dotted string) any {
	for _, k := range strings.Split(dotted, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestNATSHelmValues(t *testing.T) {
	b, err := os.ReadFile("kubernetes/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(b, &values); err != nil {
		t.Fatal(err)
	}

	// Only keys of the chart.
	leaf, freeForm := map[string]bool{}, map[string]bool{}
	for _, k := range natsChartKeys {
		if k, ok := strings.CutSuffix(k, "."); ok {
			freeForm[k] = true
		} else {
			leaf[k] = true
		}
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch {
		case freeForm[prefix] || leaf[prefix]:
		case prefix != "" && !slices.ContainsFunc(natsChartKeys, func(k string) bool { return strings.HasPrefix(k, prefix+".") }):
			t.Errorf("%s is not a key of the nats chart's values", prefix)
		default:
			m, ok := v.(map[string]any)
			if !ok {
				t.Errorf("%s: want a map", prefix)
				return
			}
			for k, sub := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), sub)
			}
		}
	}
	walk("", values)

	m := loadManifests(t)
	secrets := knownSecrets(t, m)
	secret := func(what, name, key string) {
		s, ok := secrets[name]
		if !ok {
			t.Errorf("%s: Secret %q is not made in kubernetes/README.md", what, name)
		} else if !s.anyKey && !s.keys[key] {
			t.Errorf("%s: Secret %q has no key %q", what, name, key)
		}
	}
	want := map[string]any{
		"config.cluster.enabled":                 true,
		"config.jetstream.enabled":               true,
		"config.jetstream.fileStore.enabled":     true,
		"config.jetstream.fileStore.pvc.enabled": true,
		"config.nats.tls.enabled":                true,
		"config.cluster.tls.enabled":             true,
		"tlsCA.enabled":                          true,
	}
	for k, v := range want {
		if got := lookup(values, k); got != v {
			t.Errorf("%s: %v, want %v", k, got, v)
		}
	}
	// Atomic batches as large as spotflow's (docs/guarantees.md).
	if n, _ := lookup(values, "config.jetstream.merge.limits.batch.max_msgs").(float64); n < 1000 {
		t.Errorf("config.jetstream.merge.limits.batch.max_msgs %v: want at least 1000", n)
	}
	// As many nodes as spotflow's streams have replicas.
	replicasWanted := m.configMaps["spotflow-config"].Data["SPOTFLOW_STREAM_REPLICAS"]
	if got := lookup(values, "config.cluster.replicas"); fmt.Sprint(got) != "3" || replicasWanted != "3" {
		t.Errorf("config.cluster.replicas %v and SPOTFLOW_STREAM_REPLICAS %q: want 3 and 3", got, replicasWanted)
	}
	size, _ := lookup(values, "config.jetstream.fileStore.pvc.size").(string)
	if q, err := resource.ParseQuantity(size); err != nil || q.Cmp(resource.MustParse("1Gi")) < 0 {
		t.Errorf("config.jetstream.fileStore.pvc.size %q: want a size of at least 1Gi (%v)", size, err)
	}
	// The chart's defaults for the keys of the Secrets (values.yaml).
	str := func(k, def string) string {
		s, _ := lookup(values, k).(string)
		return cmp.Or(s, def)
	}
	for _, k := range []string{"config.nats.tls", "config.cluster.tls"} {
		name := str(k+".secretName", "")
		secret(k, name, str(k+".cert", corev1.TLSCertKey))
		secret(k, name, str(k+".key", corev1.TLSPrivateKeyKey))
	}
	secret("tlsCA", str("tlsCA.secretName", ""), str("tlsCA.key", "ca.crt"))

	// The store's encryption key comes from a Secret through the container's
	// environment.
	key, _ := lookup(values, "config.jetstream.merge.key").(string)
	if m := regexp.MustCompile(`^<<\s*\$([A-Z_][A-Z0-9_]*)\s*>>$`).FindStringSubmatch(key); m == nil {
		t.Errorf("config.jetstream.merge.key %q: want << $VARIABLE >> from a Secret", key)
	} else if ref, _ := lookup(values, "container.env."+m[1]+".valueFrom.secretKeyRef").(map[string]any); ref == nil {
		t.Errorf("container.env.%s: want a secretKeyRef", m[1])
	} else {
		secret("container.env."+m[1], fmt.Sprint(ref["name"]), fmt.Sprint(ref["key"]))
	}

	// spotflow's authorization, included from a Secret mounted by the patches.
	mounts := map[string]string{} // mount path → volume
	patches, _ := lookup(values, "container.patch").([]any)
	for _, p := range patches {
		op, _ := p.(map[string]any)
		if v, _ := op["value"].(map[string]any); op["op"] == "add" && op["path"] == "/volumeMounts/-" && v != nil {
			mounts[fmt.Sprint(v["mountPath"])] = fmt.Sprint(v["name"])
		}
	}
	volumes := map[string]string{} // volume → Secret
	patches, _ = lookup(values, "podTemplate.patch").([]any)
	for _, p := range patches {
		op, _ := p.(map[string]any)
		v, _ := op["value"].(map[string]any)
		if op["op"] == "add" && op["path"] == "/spec/volumes/-" && v != nil {
			if s, _ := lookup(v, "secret.secretName").(string); s != "" {
				volumes[fmt.Sprint(v["name"])] = s
			}
		}
	}
	included := false
	merge, _ := lookup(values, "config.merge").(map[string]any)
	for k, v := range merge {
		if !strings.HasSuffix(k, "$include") {
			continue
		}
		// Includes are relative to the directory of nats.conf.
		file := path.Join("/etc/nats-config", fmt.Sprint(v))
		dir := path.Dir(file)
		vol, ok := mounts[dir]
		if !ok {
			t.Errorf("config.merge.%s: %s is on no volume container.patch mounts", k, file)
			continue
		}
		name, ok := volumes[vol]
		if !ok {
			t.Errorf("config.merge.%s: volume %s is no Secret podTemplate.patch adds", k, vol)
			continue
		}
		if !strings.HasPrefix(dir, "/etc/") {
			t.Errorf("config.merge.%s: %s is outside /etc/, which the reloader does not watch", k, dir)
		}
		secret("config.merge."+k, name, path.Base(file))
		included = true
	}
	if !included {
		t.Error("config.merge includes no authorization block from `spotflow nats-config`")
	}

	// spotflow connects over TLS to the chart's Service.
	natsURL := m.configMaps["spotflow-config"].Data["NATS_URL"]
	if u, err := url.Parse(natsURL); err != nil || u.Scheme != "tls" || u.Port() != "4222" {
		t.Errorf("NATS_URL %q: want tls:// to the chart's client port, 4222", natsURL)
	}
}
