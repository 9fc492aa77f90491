package main

import (
	"fmt"
	"io"
	"math"
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
	targetCompletedPerSec = 5000
	targetP99AtRate       = "2000"
	targetP99Ms           = 100
	targetRSSMB           = 512
	targetCostSpread      = 0.20
)

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
	fmt.Fprintf(w, "Machine: %s, %d × %s. Command: `%s`; took %s. Simulated agencies at zero latency; every stage submits for its duration from 50 desks, then waits for its requests to finish. CPU is per completed request: of the all-in-one process, and of the whole machine (Postgres and the load generator included).\n\n",
		r.Host, r.CPUs, r.CPU, r.Command, r.Took.Round(time.Second))
	fmt.Fprintln(w, "| setting | rate (req/s) | accepted/s | completed/s | submit→accepted p99 | submit→completed p50 | p95 | p99 | max | CPU ms/req spotflow | CPU ms/req machine | peak RSS | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range r.Settings {
		for _, st := range s.Stages {
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2f | %.2f | %.0f MiB | %d |\n",
				s.Name, st.Rate, st.AcceptedPS, st.CompletedPS, st.Accept["p99"],
				st.Complete["p50"], st.Complete["p95"], st.Complete["p99"], st.Complete["max"],
				st.SpotflowCPU, st.MachineCPU, st.RSSMB, st.Errors)
		}
	}
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
	if len(r.Settings) == 0 {
		return
	}
	d := r.Settings[0]
	spread := d.costSpread()
	fmt.Fprintf(w, "\nTargets, durable: ≥ %d completed/s: %s (%.0f); p99 submit→completed ≤ %d ms at %s req/s: %s (%.1f ms); peak RSS ≤ %d MiB: %s (%.0f MiB); machine CPU per request flat within ±%.0f%% over the fixed rates: %s (±%.0f%%).\n",
		targetCompletedPerSec, verdict(d.stage("max").CompletedPS >= targetCompletedPerSec), d.stage("max").CompletedPS,
		targetP99Ms, targetP99AtRate, verdict(d.stage(targetP99AtRate).Complete["p99"] <= targetP99Ms && d.stage(targetP99AtRate).Completed > 0), d.stage(targetP99AtRate).Complete["p99"],
		targetRSSMB, verdict(d.PeakMB <= targetRSSMB), d.PeakMB,
		targetCostSpread*100, verdict(spread <= targetCostSpread), spread*100)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func (s *setting) stage(rate string) stage {
	for _, st := range s.Stages {
		if st.Rate == rate {
			return st
		}
	}
	return stage{}
}

// costSpread is how far the machine's CPU per request at the fixed rates
// strays from their mean, as a fraction of it.
func (s *setting) costSpread() float64 {
	var costs []float64
	for _, st := range s.Stages {
		if st.Rate != "max" && st.MachineCPU > 0 {
			costs = append(costs, st.MachineCPU)
		}
	}
	if len(costs) == 0 {
		return math.Inf(1)
	}
	mean := 0.0
	for _, c := range costs {
		mean += c
	}
	mean /= float64(len(costs))
	worst := 0.0
	for _, c := range costs {
		worst = math.Max(worst, math.Abs(c/mean-1))
	}
	return worst
}
