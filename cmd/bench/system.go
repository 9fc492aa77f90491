package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/cmd/internal/procstat"
)

// postgresCluster is the project's own cluster, started for the run.
type postgresCluster struct {
	bin, dataDir, url string
}

func startPostgres(ctx context.Context, bin, dataDir string) (*postgresCluster, error) {
	out, err := exec.CommandContext(ctx, bin, "postgres", "start", "--data-dir", dataDir, "--log-level", "warn").Output()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return &postgresCluster{bin: bin, dataDir: dataDir, url: strings.TrimSpace(string(out))}, nil
}

// empty drops everything a previous system left in the database, so that
// each measured system starts on empty tables and migrates them itself.
func (p *postgresCluster) empty(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return fmt.Errorf("empty the database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		return fmt.Errorf("empty the database: %w", err)
	}
	// Vacuumed now, the catalogs leave autovacuum nothing to do while the
	// next system's CPU at rest is measured.
	if _, err := conn.Exec(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("vacuum the emptied database: %w", err)
	}
	return nil
}

func (p *postgresCluster) stop() {
	_ = exec.Command(p.bin, "postgres", "stop", "--data-dir", p.dataDir, "--log-level", "warn").Run()
}

// system is a running all-in-one `spotflow run`.
type system struct {
	bin, dbURL, httpURL string
	cmd                 *exec.Cmd
	exited              chan error
}

// startSystem starts `spotflow run` on natsDir and dbURL with the bench's
// settings, and extra flags.
func startSystem(ctx context.Context, bin, natsDir, dbURL string, noSync bool, extra ...string) (*system, error) {
	if err := os.MkdirAll(natsDir, 0o755); err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--data-dir", natsDir, "--database-url", dbURL, "--http", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:" + strconv.Itoa(natsPort), "--agencies", "*:latency=0", "--log-level", "warn"}
	if noSync {
		args = append(args, "--nats-no-sync")
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start spotflow: %w", err)
	}
	s := &system{bin: bin, dbURL: dbURL, cmd: cmd, exited: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "HTTP      "); ok {
				ready <- strings.Fields(rest)[0]
			}
		}
	}()
	go func() { s.exited <- cmd.Wait() }()
	select {
	case s.httpURL = <-ready:
		return s, nil
	case err := <-s.exited:
		return nil, fmt.Errorf("spotflow run exited before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("spotflow run was not ready within a minute")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// stop ends the system with SIGTERM, as an operator would.
func (s *system) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			return fmt.Errorf("spotflow run: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("spotflow run did not stop within 30 s of SIGTERM")
	}
}

// peakRSS is the process's peak resident set so far, in MiB; 0 when /proc
// cannot say.
func (s *system) peakRSS() float64 {
	mib, _ := procstat.PeakRSS(s.cmd.Process.Pid)
	return mib
}

// A started system settles for idleSettle, then its idle CPU is measured
// over idleSpan, before any load. The settling leaves out the tail of the
// start (first pulls, first syncs, the collector after the start's
// allocations); the span is long enough for the periodic jobs (every 2 s)
// to weigh as they do at rest, and for /proc's 10 ms ticks to resolve
// about 0.03 % of a core.
const (
	idleSettle = 20 * time.Second
	idleSpan   = 30 * time.Second
)

// idleCPU lets the system settle, then measures, with no load, the CPU of
// its process and of this machine's postgres processes, each in percent
// of one core.
func (s *system) idleCPU(ctx context.Context) (spotflowPct, postgresPct float64, err error) {
	if err := wait(ctx, idleSettle); err != nil {
		return 0, 0, err
	}
	pid := s.cmd.Process.Pid
	before, err := readCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	begin := time.Now()
	if err := wait(ctx, idleSpan); err != nil {
		return 0, 0, err
	}
	own, postgres, err := before.since(pid)
	if err != nil {
		return 0, 0, err
	}
	took := time.Since(begin).Seconds()
	return own / took * 100, postgres / took * 100, nil
}

// cpuReading is the CPU time one process and this machine's postgres
// processes had used when it was read.
type cpuReading struct {
	own      float64
	postgres map[int]procstat.Process
}

func readCPU(pid int) (cpuReading, error) {
	p, err := procstat.Read(pid)
	if err != nil {
		return cpuReading{}, err
	}
	return cpuReading{own: p.CPUSeconds, postgres: procstat.Named("postgres")}, nil
}

// since is the CPU time, in seconds, the process pid and the postgres
// processes used from r until now (procstat.Used says how processes that
// start or end in between count).
func (r cpuReading) since(pid int) (own, postgres float64, err error) {
	now, err := readCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	return now.own - r.own, procstat.Used(r.postgres, now.postgres)["postgres"], nil
}

// wait returns after d, or ctx's error when it ends first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stage is one load generator run against the system.
type stage struct {
	Rate        string             `json:"target_rate"`
	Accepted    int64              `json:"accepted"`
	Completed   int64              `json:"completed"`
	Errors      int64              `json:"errors"`
	Throttled   int64              `json:"throttled"`
	AcceptedPS  float64            `json:"accepted_per_second"`
	CompletedPS float64            `json:"completed_per_second"`
	Accept      map[string]float64 `json:"submit_to_accepted_ms"`
	// Complete is what a desk feels: from the client's first send until
	// the request is readable as completed, as CompleteMeasured says.
	Complete         map[string]float64 `json:"submit_to_completed_ms"`
	CompleteMeasured string             `json:"submit_to_completed_measured"`
	// CPU is the load generator's milliseconds of CPU per completed
	// request of this machine's processes by name ("spotflow",
	// "postgres", "nats-server"), itself left out; CPUMeasured says how.
	CPU         map[string]float64 `json:"cpu_ms_per_request"`
	CPUMeasured string             `json:"cpu_measured"`
	// SpotflowCPU and PostgresCPU are CPU's "spotflow" and "postgres";
	// SystemCPU is theirs and nats-server's together, zero when the load
	// generator measured none. MachineCPU is the whole machine's busy
	// time while the load generator ran, itself included. All are
	// milliseconds per completed request.
	SpotflowCPU float64 `json:"-"`
	PostgresCPU float64 `json:"-"`
	SystemCPU   float64 `json:"-"`
	MachineCPU  float64 `json:"-"`
	// RSSMB is the all-in-one's peak RSS at the end of the stage, in MiB.
	RSSMB float64 `json:"-"`
}

func (st stage) line() string {
	return fmt.Sprintf("rate %-5s  completed %8.0f/s  accepted %8.0f/s  p99 submit→accepted %7.1f ms  p50/p99 submit→completed %7.1f / %7.1f ms  cpu ms/req spotflow %.2f postgres %.2f system %.2f (machine %.2f)  rss %.0f MiB  errors %d",
		st.Rate, st.CompletedPS, st.AcceptedPS, st.Accept["p99"], st.Complete["p50"], st.Complete["p99"],
		st.SpotflowCPU, st.PostgresCPU, st.SystemCPU, st.MachineCPU, st.RSSMB, st.Errors)
}

func (s *system) load(ctx context.Context, rate string, cfg config) (stage, error) {
	return s.loadFrom(ctx, rate, cfg.Desks, cfg)
}

// loadFrom runs the load generator at rate from desks desks.
func (s *system) loadFrom(ctx context.Context, rate string, desks int, cfg config) (stage, error) {
	f, err := os.CreateTemp("", "spotflow-bench-*.json")
	if err != nil {
		return stage{}, err
	}
	jsonPath := f.Name()
	f.Close()
	defer os.Remove(jsonPath)
	concurrency := "256"
	if rate != "max" {
		concurrency = "1024"
	}
	cmd := exec.CommandContext(ctx, s.bin, "loadgen", "--url", s.httpURL, "--database-url", s.dbURL,
		"--rate", rate, "--duration", cfg.Duration.String(), "--drain", cfg.Drain.String(),
		"--desks", strconv.Itoa(desks), "--concurrency", concurrency, "--json", jsonPath, "--log-level", "warn")
	busy0, _ := procstat.MachineBusySeconds()
	if out, err := cmd.CombinedOutput(); err != nil {
		return stage{}, fmt.Errorf("loadgen at %s: %w\n%s", rate, err, out)
	}
	busy1, _ := procstat.MachineBusySeconds()
	busy := busy1 - busy0
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return stage{}, err
	}
	var st stage
	if err := json.Unmarshal(b, &st); err != nil {
		return stage{}, fmt.Errorf("loadgen report: %w", err)
	}
	st.Rate = rate
	st.SpotflowCPU, st.PostgresCPU = st.CPU["spotflow"], st.CPU["postgres"]
	st.SystemCPU = st.SpotflowCPU + st.PostgresCPU + st.CPU["nats-server"]
	if st.Completed > 0 {
		st.MachineCPU = busy * 1000 / float64(st.Completed)
	}
	st.RSSMB = s.peakRSS()
	return st, nil
}
