package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Settings every role runs with: an ack wait short enough that an agency
// answering in 8 seconds is slower than it, a reconciler that stays out
// of the way of a run that lasts minutes, and a projector that refuses an
// event of a round no replay opened after 10 seconds rather than 2 minutes.
var roleFlags = []string{"--ack-wait", "5s", "--reconcile-after", "3m", "--unknown-event-for", "10s"}

// roleCount is how many processes of a role run side by side.
type roleCount struct {
	role string
	n    int
}

// roleCounts are a run's processes: on a NATS cluster, two intakes too,
// and perRole of each other role.
func roleCounts(natsCluster bool, perRole int) []roleCount {
	intakes := 1
	if natsCluster {
		intakes = 2
	}
	return []roleCount{{"intake", intakes}, {"router", perRole}, {"dispatcher", perRole}, {"projector", perRole}}
}

// natsSetup says which NATS a run starts: one `spotflow nats`, or, with
// Server set, a cluster of nats-server nodes run with the configuration
// file Conf.
type natsSetup struct {
	Server, Conf string
	// PerRole is how many processes of each role but intake run; default 2.
	PerRole int
}

// cluster is one running spotflow: Postgres, a NATS server, the simulated
// agencies and every role, each in its own process, all on 127.0.0.1 and
// under dir.
type cluster struct {
	bin string
	dir string
	log io.Writer
	sup *supervisor

	citizenKey  string
	pgURL       string
	natsURL     string
	agenciesURL string
	intakeURLs  []string

	// Either nats, one `spotflow nats`, or natsNodes, a cluster whose
	// clients check its certificates against natsCA.
	nats      *process
	natsNodes []*natsNode
	natsCA    string

	agencies *process
	intakes  []*process
	workers  []*process // every role's processes, intakes first
}

// startCluster starts everything, in dependency order, and returns once
// every process is ready, the roles logging at logLevel. On error the
// caller still calls close.
func startCluster(ctx context.Context, bin, dir, logLevel string, setup natsSetup, log io.Writer) (*cluster, error) {
	sup, err := newSupervisor(bin, filepath.Join(dir, "logs"))
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := &cluster{bin: bin, dir: dir, log: log, sup: sup, citizenKey: hex.EncodeToString(key)}

	fmt.Fprintf(log, "chaos: starting postgres\n")
	if err := c.startPostgres(ctx); err != nil {
		return c, err
	}
	agencyPort, err := freePort()
	if err != nil {
		return c, err
	}
	c.agenciesURL = fmt.Sprintf("http://127.0.0.1:%d", agencyPort)
	if setup.Server != "" {
		if err := c.startNATSCluster(ctx, setup.Server, setup.Conf); err != nil {
			return c, err
		}
	} else {
		natsPort, err := freePort()
		if err != nil {
			return c, err
		}
		natsAddr := fmt.Sprintf("127.0.0.1:%d", natsPort)
		c.natsURL = "nats://" + natsAddr
		fmt.Fprintf(log, "chaos: starting nats on %s\n", natsAddr)
		c.nats = sup.add(procSpec{
			Name: "nats",
			// It provisions the consumers, so it takes the roles' settings.
			Args:  append([]string{"nats", "--data-dir", dir, "--nats-listen", natsAddr, "--log-level", "warn"}, roleFlags...),
			Env:   c.env(),
			Ready: "NATS nats://",
		})
		if err := c.nats.start(ctx); err != nil {
			return c, err
		}
	}
	fmt.Fprintf(log, "chaos: starting the agencies on %s\n", c.agenciesURL)
	// The agencies take only deliveries signed with their secret.
	secretFile := filepath.Join(dir, "agencies.whsec")
	if _, err := c.spotflow(ctx, time.Minute, "agency", "secret", "--out", secretFile); err != nil {
		return c, err
	}
	delivery, err := json.Marshal(map[string]any{"*": map[string]string{
		"delivery": "http", "url": c.agenciesURL + "/agencies/{agency}/work-items", "signing_secret_file": secretFile,
	}})
	if err != nil {
		return c, err
	}
	c.agencies = sup.add(procSpec{
		Name: "agencies",
		Args: []string{"agencies", "--data-dir", dir, "--http", fmt.Sprintf("127.0.0.1:%d", agencyPort), "--agencies", "*:latency=5ms",
			"--signing-secret-file", secretFile, "--log-level", "warn"},
		Env:   c.env(),
		Ready: "simulated agencies on",
	})
	if err := c.agencies.start(ctx); err != nil {
		return c, err
	}

	for _, rc := range roleCounts(setup.Server != "", cmp.Or(setup.PerRole, 2)) {
		for i := 1; i <= rc.n; i++ {
			name := rc.role
			if rc.n > 1 {
				name = fmt.Sprintf("%s-%d", rc.role, i)
			}
			args := append([]string{rc.role, "--data-dir", filepath.Join(dir, "roles", name), "--log-level", logLevel}, roleFlags...)
			spec := procSpec{Name: name, Env: c.env(), Ready: "spotflow running"}
			switch rc.role {
			case "intake":
				port, err := freePort()
				if err != nil {
					return c, err
				}
				url := fmt.Sprintf("http://127.0.0.1:%d", port)
				args = append(args, "--http", fmt.Sprintf("127.0.0.1:%d", port))
				spec.Probe = func(ctx context.Context) error { return ready(ctx, url) }
				c.intakeURLs = append(c.intakeURLs, url)
			case "dispatcher":
				args = append(args, "--delivery", string(delivery))
			}
			spec.Args = args
			p := sup.add(spec)
			c.workers = append(c.workers, p)
			if rc.role == "intake" {
				c.intakes = append(c.intakes, p)
			}
		}
	}
	fmt.Fprintf(log, "chaos: starting %d role processes; intake on %s\n", len(c.workers), strings.Join(c.intakeURLs, " and "))
	// The first process migrates the database alone; the rest start at once.
	if err := c.workers[0].start(ctx); err != nil {
		return c, err
	}
	errs := make(chan error, len(c.workers))
	for _, p := range c.workers[1:] {
		go func() { errs <- p.start(ctx) }()
	}
	var first error
	for range c.workers[1:] {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return c, first
}

// env is the environment of every spotflow process: the suite's own, less
// any spotflow setting, plus the cluster's addresses and citizen key.
func (c *cluster) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SPOTFLOW_") || name == "NATS_URL" || name == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "SPOTFLOW_CITIZEN_KEY="+c.citizenKey, "SPOTFLOW_NATS_IDENTITIES="+c.identities())
	if c.natsCA != "" {
		// A cluster: TLS, and every stream on three nodes.
		env = append(env, "SPOTFLOW_NATS_CA="+c.natsCA, fmt.Sprintf("SPOTFLOW_STREAM_REPLICAS=%d", clusterNodes))
	}
	if c.natsURL != "" {
		env = append(env, "NATS_URL="+c.natsURL)
	}
	if c.pgURL != "" {
		env = append(env, "DATABASE_URL="+c.pgURL)
	}
	return env
}

func (c *cluster) pgDir() string { return filepath.Join(c.dir, "pg") }

// identities is where the NATS server keeps the seeds of spotflow's own
// identities, which every process of the cluster reads.
func (c *cluster) identities() string { return filepath.Join(c.dir, "identities") }

// startPostgres starts (initialising on first use) the cluster's Postgres
// and records its URL; the port stays the same across restarts.
func (c *cluster) startPostgres(ctx context.Context) error {
	out, err := c.spotflow(ctx, 2*time.Minute, "postgres", "start", "--data-dir", c.pgDir(), "--log-level", "warn")
	if err != nil {
		return err
	}
	c.pgURL = strings.TrimSpace(out)
	return nil
}

// stopPostgres stops the cluster's Postgres (fast mode: clients are cut).
func (c *cluster) stopPostgres(ctx context.Context) error {
	_, err := c.spotflow(ctx, 2*time.Minute, "postgres", "stop", "--data-dir", c.pgDir(), "--log-level", "warn")
	return err
}

// spotflow runs a short spotflow command in a process group of its own and
// returns its stdout; its stderr goes to logs/commands.log.
func (c *cluster) spotflow(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logPath := filepath.Join(c.sup.logDir, "commands.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== chaos: %s: spotflow %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env()
	cmd.Stdout, cmd.Stderr = &stdout, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("spotflow %s: %w (log %s):\n%s", strings.Join(args, " "), err, logPath, tailFile(logPath, 1500))
	}
	return stdout.String(), nil
}

// desk is a registered desk and its credential.
type desk struct {
	ID           string `json:"desk_id"`
	Municipality string `json:"municipality"`
	Token        string `json:"token"`
}

// createDesks registers n desks in municipalities m0, m1, ….
func (c *cluster) createDesks(ctx context.Context, n int) ([]desk, error) {
	desks := make([]desk, n)
	for i := range desks {
		out, err := c.spotflow(ctx, time.Minute, "desk", "create", "--municipality", fmt.Sprintf("m%d", i),
			"--name", fmt.Sprintf("Chaos desk %d", i), "--database-url", c.pgURL, "--data-dir", c.dir, "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(out), &desks[i]); err != nil || desks[i].Token == "" {
			return nil, fmt.Errorf("desk create: unexpected answer %q", out)
		}
	}
	return desks, nil
}

// ready succeeds once the intake at url answers /readyz with 200.
func ready(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

// agencyControl is the simulated agencies' fault control of one agency.
type agencyControl struct {
	Agency     string `json:"agency"`
	Down       bool   `json:"down"`
	Latency    string `json:"latency"`
	Applied    int    `json:"applied"`
	Duplicates int    `json:"duplicates"`
}

// controlAgency changes an agency's faults: body is {"down": …} and/or
// {"latency": …}.
func (c *cluster) controlAgency(ctx context.Context, agency string, body map[string]any) (agencyControl, error) {
	return c.agencyRequest(ctx, http.MethodPut, agency, body)
}

// agencyState reads an agency's faults and counters.
func (c *cluster) agencyState(ctx context.Context, agency string) (agencyControl, error) {
	return c.agencyRequest(ctx, http.MethodGet, agency, nil)
}

func (c *cluster) agencyRequest(ctx context.Context, method, agency string, body map[string]any) (agencyControl, error) {
	var st agencyControl
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return st, err
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.agenciesURL+"/control/"+agency, rd)
	if err != nil {
		return st, err
	}
	req.Header.Set("Content-Type", "application/json")
	// A control request sets a state, so sending it twice is harmless:
	// saying so lets the transport send it again on a fresh connection
	// when the server closed the idle one it picked just as it was reused.
	req.Header.Set("Idempotency-Key", method+" "+agency)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("%s /control/%s: %w", method, agency, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return st, fmt.Errorf("%s /control/%s: %s: %s", method, agency, resp.Status, data)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("%s /control/%s: %w", method, agency, err)
	}
	return st, nil
}

// close stops every process and Postgres. It is safe to call on a cluster
// that started only partly.
func (c *cluster) close() {
	c.sup.stopAll(15 * time.Second)
	if c.pgURL != "" {
		if err := c.stopPostgres(context.Background()); err != nil {
			fmt.Fprintf(c.log, "chaos: stop postgres: %v\n", err)
		}
	}
}

// relocatedPostgres returns where localpg placed the cluster when the
// postgres user could not reach the data directory, or "".
func (c *cluster) relocatedPostgres() string {
	data, err := os.ReadFile(filepath.Join(c.pgDir(), "postgres.location"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
