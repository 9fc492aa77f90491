package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is one bench run, written as a dated section of BENCHMARKS.md.
type report struct {
	When     time.Time
	Host     string
	CPUs     int
	CPU      string
	Command  string
	Took     time.Duration
	Settings []*setting
	Noisy    *noisyResult
}

// Targets on one machine, simulated agencies answering at once, durable
// defaults on.
const (
	// targetCompletedPerSec is the completed requests a second at the
	// maximum rate.
	targetCompletedPerSec = 3000
	// targetSystemCPUMs bounds the system's CPU per completed request
	// (spotflow's processes, Postgres and a separate NATS, if any) at
	// every rate, the maximum included, in milliseconds.
	targetSystemCPUMs = 1.5
	// targetIdlePct bounds the CPU of spotflow and Postgres at rest, in
	// percent of one core.
	targetIdlePct = 1.0
	targetRSSMB   = 512
)

// latencyTarget bounds the p99 a desk feels at a fixed rate: from the
// client's first send until the API shows the request completed.
type latencyTarget struct {
	Rate  string // one of --rates, requests per second
	P99Ms float64
}

var latencyTargets = []latencyTarget{{Rate: "50", P99Ms: 50}, {Rate: "1000", P99Ms: 100}}

func (r report) write(w io.Writer) {
	defer func() {
		if r.Noisy != nil {
			r.Noisy.write(w)
		}
	}()
	fmt.Fprintf(w, "## End to end, %s\n\n", r.When.Format("2006-01-02 15:04 UTC"))
	if len(r.Settings) == 0 {
		fmt.Fprintf(w, "Machine: %s, %d × %s. Command: `%s`; took %s.\n", r.Host, r.CPUs, r.CPU, r.Command, r.Took.Round(time.Second))
		return
	}
	fmt.Fprintf(w, "Machine: %s, %d × %s. Command: `%s`; took %s. Simulated agencies at zero latency; every stage submits for its duration from 50 desks, then waits for its requests to finish. CPU is per completed request: of this machine's spotflow processes, of its postgres processes, of the system (both, and nats-server's if any; the load generator left out), and of the whole machine while the load generator ran (its busy time, the load generator included).\n\n",
		r.Host, r.CPUs, r.CPU, r.Command, r.Took.Round(time.Second))
	fmt.Fprintln(w, "| setting | rate (req/s) | accepted/s | completed/s | submit→accepted p99 | submit→completed p50 | p99 | max | CPU ms/req spotflow | postgres | system | machine | peak RSS | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range r.Settings {
		for _, st := range s.Stages {
			spotflow, postgres, system := "–", "–", "–"
			if st.SystemCPU > 0 {
				spotflow, postgres, system = fmt.Sprintf("%.2f", st.SpotflowCPU), fmt.Sprintf("%.2f", st.PostgresCPU), fmt.Sprintf("%.2f", st.SystemCPU)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %s | %s | %s | %.2f | %.0f MiB | %d |\n",
				s.Name, st.Rate, st.AcceptedPS, st.CompletedPS, st.Accept["p99"],
				st.Complete["p50"], st.Complete["p99"], st.Complete["max"],
				spotflow, postgres, system, st.MachineCPU, st.RSSMB, st.Errors)
		}
	}
	fmt.Fprintf(w, "\nsubmit→completed is what a desk feels, measured as: %s. CPU per request measured as: %s.\n", r.measured(func(st stage) string { return st.CompleteMeasured }), r.measured(func(st stage) string { return st.CPUMeasured }))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| setting | raw limit (JetStream → consume → batched upsert), msg/s | spotflow at max, completed/s | ratio | peak RSS |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
	for _, s := range r.Settings {
		max := s.stage("max")
		ratio := 0.0
		if s.Raw > 0 {
			ratio = max.CompletedPS / s.Raw
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.3f | %.0f MiB |\n", s.Name, s.Raw, max.CompletedPS, ratio, s.PeakMB)
	}
	r.writeFloors(w)
	var idle []string
	for _, s := range r.Settings {
		idle = append(idle, fmt.Sprintf("%s: spotflow %.2f%% + postgres %.2f%% = %.2f%%", s.Name, s.IdleSpotflowPct, s.IdlePostgresPct, s.IdlePct))
	}
	fmt.Fprintf(w, "\nAt rest (measured for %s, %s after the start, before any load), CPU in percent of one core: %s.\n",
		idleSpan, idleSettle, strings.Join(idle, "; "))

	d := r.Settings[0]
	max := d.stage("max")
	targets := []string{fmt.Sprintf("≥ %s completed/s at the maximum: %s (%.0f)",
		thousands(fmt.Sprint(targetCompletedPerSec)), verdict(max.CompletedPS >= targetCompletedPerSec), max.CompletedPS)}
	for _, t := range latencyTargets {
		judged := fmt.Sprintf("p99 submit→completed ≤ %.0f ms at %s req/s: ", t.P99Ms, thousands(t.Rate))
		if st := d.stage(t.Rate); st.Completed > 0 {
			judged += fmt.Sprintf("%s (%.1f ms)", verdict(st.Complete["p99"] <= t.P99Ms), st.Complete["p99"])
		} else {
			judged += verdict(false) + " (not measured)"
		}
		targets = append(targets, judged)
	}
	judged := fmt.Sprintf("system CPU ≤ %.1f ms per completed request at every rate, the maximum included: ", targetSystemCPUMs)
	if worst, ok := d.worstSystemCPU(); ok {
		judged += fmt.Sprintf("%s (worst %.2f ms, at %s)", verdict(worst.SystemCPU <= targetSystemCPUMs), worst.SystemCPU, rateName(worst.Rate))
	} else if worst.Rate != "" {
		judged += fmt.Sprintf("%s (not measured at %s)", verdict(false), rateName(worst.Rate))
	} else {
		judged += verdict(false) + " (no stage)"
	}
	targets = append(targets, judged,
		fmt.Sprintf("CPU at rest < %.0f%% of a core: %s (%.2f%%)", targetIdlePct, verdict(d.IdlePct < targetIdlePct), d.IdlePct),
		fmt.Sprintf("peak RSS ≤ %d MiB: %s (%.0f MiB)", targetRSSMB, verdict(d.PeakMB <= targetRSSMB), d.PeakMB))
	fmt.Fprintf(w, "\nTargets, durable: %s.\n", strings.Join(targets, "; "))
}

// writeFloors writes what JetStream and Postgres alone cost per request,
// and how long requests took through them, beside what the system cost and
// took at the same rate.
func (r report) writeFloors(w io.Writer) {
	if !slices.ContainsFunc(r.Settings, func(s *setting) bool { return len(s.Floors) > 0 }) {
		return
	}
	fmt.Fprintf(w, "\nThe floor: what the parts alone cost per request at a fixed rate (after %s at that rate left out), with none of spotflow's own work, on an embedded server with the all-in-one's store encryption and durability. *One message*: a request-sized message published (waiting for JetStream's acknowledgement), delivered to a durable consumer and acknowledged. *The request's chain*: a Postgres commit claiming its key, its message stored, a router storing a routed event and a work item, an agency taking the work item from its queue and storing its answer, a projector writing the request's events to Postgres in one commit (lingering %d ms), on spotflow's streams and consumers. CPU in ms per request: of this process (the server and its clients), of Postgres, together; latency from the submission's start until the message is delivered (one message) or the answer committed (the chain); then the system's CPU and p99 at the same rate, from the table above.\n\n", floorWarmUp, floorLingerMs)
	fmt.Fprintln(w, "| setting | floor | rate (req/s) | requests | CPU ms/req process | postgres | together | p50 | p99 | the system's CPU | the system's p99 |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range r.Settings {
		for _, f := range s.Floors {
			cpu, p99 := "–", "–"
			if st := s.stage(strconv.Itoa(f.Rate)); st.Completed > 0 {
				p99 = fmt.Sprintf("%.1f ms", st.Complete["p99"])
				if st.SystemCPU > 0 {
					cpu = fmt.Sprintf("%.2f", st.SystemCPU)
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %.2f | %.2f | %.2f | %.1f ms | %.1f ms | %s | %s |\n",
				s.Name, f.What, thousands(strconv.Itoa(f.Rate)), f.Completed, f.ProcessCPU, f.PostgresCPU, f.ProcessCPU+f.PostgresCPU, f.P50Ms, f.P99Ms, cpu, p99)
		}
	}
}

// measured says how the stages measured a figure, as of says for one
// stage: once if they agree, each way if not.
func (r report) measured(of func(stage) string) string {
	var ways []string
	for _, s := range r.Settings {
		for _, st := range s.Stages {
			if w := of(st); w != "" && !slices.Contains(ways, w) {
				ways = append(ways, w)
			}
		}
	}
	switch len(ways) {
	case 0:
		return "not said by the load generator"
	case 1:
		return ways[0]
	}
	return "differently from stage to stage: " + strings.Join(ways, "; ")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// rateName is a stage's rate as a sentence says it: "the maximum" or
// "1,000 req/s".
func rateName(rate string) string {
	if rate == "max" {
		return "the maximum"
	}
	return rateCell(rate)
}

func (s *setting) stage(rate string) stage {
	for _, st := range s.Stages {
		if st.Rate == rate {
			return st
		}
	}
	return stage{}
}

// worstSystemCPU is the stage with the most system CPU per completed
// request, and whether every stage measured it; when one did not, it is
// that stage.
func (s *setting) worstSystemCPU() (stage, bool) {
	var worst stage
	for _, st := range s.Stages {
		if st.SystemCPU <= 0 {
			return st, false
		}
		if worst.Rate == "" || st.SystemCPU > worst.SystemCPU {
			worst = st
		}
	}
	return worst, worst.Rate != ""
}
