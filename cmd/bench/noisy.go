package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
)

// The noisy-desk scenario runs the all-in-one with the desks' default
// limits. Quiet desks submit well under their limits, alone, then while one
// more desk submits at ten times its rate limit; the quiet desks'
// latencies should hardly move, since the noisy desk's surplus is refused
// at the door.
//
// A p99 of about 10 ms moves by a third from one 15-second stage to the
// next on this machine whatever the load, and one stall of the disk can
// multiply it: so the two loads alternate, noisyPairs times, and the
// verdict is the median of the pairs' ratios, every pair shown.
const (
	noisyDeskLimit = 10 // the default --desk-rate
	quietDesks     = 20
	quietRate      = 100 // requests a second from all quiet desks together
	noisyRate      = 10 * noisyDeskLimit
	noisyPairs     = 5
	// targetNoisyRatio bounds the quiet desks' p99 with the noisy desk
	// over their p99 alone.
	targetNoisyRatio = 2.0
)

// noisyPair is one measurement of the quiet desks alone, then beside the
// noisy desk.
type noisyPair struct {
	Baseline stage // the quiet desks alone
	Quiet    stage // the quiet desks beside the noisy one
	Noisy    stage // the noisy desk
}

// ratio is the quiet desks' p99 submit→completed beside the noisy desk
// over alone.
func (p noisyPair) ratio() float64 {
	if p.Baseline.Complete["p99"] == 0 {
		return 0
	}
	return p.Quiet.Complete["p99"] / p.Baseline.Complete["p99"]
}

// noisyResult is what the scenario measured.
type noisyResult struct {
	Pairs []noisyPair
}

func measureNoisy(ctx context.Context, bin string, pg *postgresCluster, cfg config, out io.Writer) (*noisyResult, error) {
	fmt.Fprintf(out, "== noisy desk: %d quiet desks at %d req/s in all, alone, then beside one desk at %d req/s (limit %d/s), %d times\n",
		quietDesks, quietRate, noisyRate, noisyDeskLimit, noisyPairs)
	if err := pg.empty(ctx); err != nil {
		return nil, err
	}
	sys, err := startSystem(ctx, bin, filepath.Join(cfg.DataDir, "nats", "noisy"), pg.url, false,
		"--desk-rate", strconv.Itoa(noisyDeskLimit))
	if err != nil {
		return nil, err
	}
	defer sys.stop()
	var r noisyResult
	for range noisyPairs {
		var p noisyPair
		if p.Baseline, err = sys.loadFrom(ctx, strconv.Itoa(quietRate), quietDesks, cfg); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "   quiet alone:  %s\n", p.Baseline.line())
		noisy := make(chan error, 1)
		go func() {
			var err error
			p.Noisy, err = sys.loadFrom(ctx, strconv.Itoa(noisyRate), 1, cfg)
			noisy <- err
		}()
		quietErr := error(nil)
		p.Quiet, quietErr = sys.loadFrom(ctx, strconv.Itoa(quietRate), quietDesks, cfg)
		if err := <-noisy; err != nil {
			return nil, err
		}
		if quietErr != nil {
			return nil, quietErr
		}
		fmt.Fprintf(out, "   quiet beside: %s\n   noisy desk:   %s  throttled %d\n   ratio %.2f×\n",
			p.Quiet.line(), p.Noisy.line(), p.Noisy.Throttled, p.ratio())
		r.Pairs = append(r.Pairs, p)
	}
	return &r, nil
}

// ratio is the median of the pairs' ratios.
func (r *noisyResult) ratio() float64 {
	ratios := make([]float64, len(r.Pairs))
	for i, p := range r.Pairs {
		ratios[i] = p.ratio()
	}
	slices.Sort(ratios)
	if len(ratios) == 0 {
		return 0
	}
	return ratios[len(ratios)/2]
}

func (r *noisyResult) write(w io.Writer) {
	fmt.Fprintf(w, "\nNoisy desk: %d quiet desks submit %d req/s in all, alone, then beside one desk submitting %d req/s, ten times its limit of %d/s (the default), %d times in turn; same machine, durable defaults.\n\n",
		quietDesks, quietRate, noisyRate, noisyDeskLimit, len(r.Pairs))
	fmt.Fprintln(w, "| pair | load | accepted/s | throttled (429) | submit→accepted p99 | submit→completed p50 | p99 | errors | p99 beside / alone |")
	fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|--:|--:|")
	for i, p := range r.Pairs {
		for _, row := range []struct {
			name  string
			st    stage
			ratio string
		}{{"quiet desks alone", p.Baseline, ""}, {"quiet desks beside the noisy one", p.Quiet, fmt.Sprintf("%.2f×", p.ratio())}, {"the noisy desk", p.Noisy, ""}} {
			fmt.Fprintf(w, "| %d | %s | %.0f | %d | %.1f ms | %.1f ms | %.1f ms | %d | %s |\n", i+1, row.name, row.st.AcceptedPS, row.st.Throttled,
				row.st.Accept["p99"], row.st.Complete["p50"], row.st.Complete["p99"], row.st.Errors, row.ratio)
		}
	}
	fmt.Fprintf(w, "\nTarget: the quiet desks' p99 submit→completed beside the noisy desk within %.0f× alone (the median of the pairs): %s (%.2f×).\n",
		targetNoisyRatio, verdict(r.ratio() > 0 && r.ratio() <= targetNoisyRatio), r.ratio())
}
