package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
)

// The noisy-desk scenario runs the all-in-one with the desks' default
// limits. Quiet desks submit well under their limits, first alone, then
// while one more desk submits at ten times its rate limit; the quiet
// desks' latencies should hardly move, since the noisy desk's surplus is
// refused at the door.
const (
	noisyDeskLimit = 10 // the default --desk-rate
	quietDesks     = 20
	quietRate      = 100 // requests a second from all quiet desks together
	noisyRate      = 10 * noisyDeskLimit
	// targetNoisyRatio bounds the quiet desks' p99 with the noisy desk
	// over their p99 alone.
	targetNoisyRatio = 2.0
)

// noisyResult is what the scenario measured.
type noisyResult struct {
	Baseline stage // the quiet desks alone
	Quiet    stage // the quiet desks beside the noisy one
	Noisy    stage // the noisy desk
}

func measureNoisy(ctx context.Context, bin string, pg *postgresCluster, cfg config, out io.Writer) (*noisyResult, error) {
	fmt.Fprintf(out, "== noisy desk: %d quiet desks at %d req/s in all, then beside one desk at %d req/s (limit %d/s)\n",
		quietDesks, quietRate, noisyRate, noisyDeskLimit)
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
	if r.Baseline, err = sys.loadFrom(ctx, strconv.Itoa(quietRate), quietDesks, cfg); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   quiet alone:  %s\n", r.Baseline.line())
	noisy := make(chan error, 1)
	go func() {
		var err error
		r.Noisy, err = sys.loadFrom(ctx, strconv.Itoa(noisyRate), 1, cfg)
		noisy <- err
	}()
	quietErr := error(nil)
	r.Quiet, quietErr = sys.loadFrom(ctx, strconv.Itoa(quietRate), quietDesks, cfg)
	if err := <-noisy; err != nil {
		return nil, err
	}
	if quietErr != nil {
		return nil, quietErr
	}
	fmt.Fprintf(out, "   quiet beside: %s\n   noisy desk:   %s  throttled %d\n", r.Quiet.line(), r.Noisy.line(), r.Noisy.Throttled)
	return &r, nil
}

// ratio is the quiet desks' p99 submit→completed beside the noisy desk
// over alone.
func (r *noisyResult) ratio() float64 {
	if r.Baseline.Complete["p99"] == 0 {
		return 0
	}
	return r.Quiet.Complete["p99"] / r.Baseline.Complete["p99"]
}

func (r *noisyResult) write(w io.Writer) {
	fmt.Fprintf(w, "\nNoisy desk: %d quiet desks submit %d req/s in all, alone, then beside one desk submitting %d req/s, ten times its limit of %d/s (the default); same machine, durable defaults.\n\n",
		quietDesks, quietRate, noisyRate, noisyDeskLimit)
	fmt.Fprintln(w, "| load | accepted/s | throttled (429) | submit→accepted p99 | submit→completed p50 | p99 | errors |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, row := range []struct {
		name string
		st   stage
	}{{"quiet desks alone", r.Baseline}, {"quiet desks beside the noisy one", r.Quiet}, {"the noisy desk", r.Noisy}} {
		fmt.Fprintf(w, "| %s | %.0f | %d | %.1f ms | %.1f ms | %.1f ms | %d |\n", row.name, row.st.AcceptedPS, row.st.Throttled,
			row.st.Accept["p99"], row.st.Complete["p50"], row.st.Complete["p99"], row.st.Errors)
	}
	fmt.Fprintf(w, "\nTarget: the quiet desks' p99 submit→completed beside the noisy desk within %.0f× alone: %s (%.2f×).\n",
		targetNoisyRatio, verdict(r.ratio() > 0 && r.ratio() <= targetNoisyRatio), r.ratio())
}
