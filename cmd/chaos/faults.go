package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// killWorkers kills a worker process with SIGKILL at random moments, plan
// kills times, and starts it again after a short pause. The first kills take
// one process of each role, in random order, so that every role is hit.
func killWorkers(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	kinds := []string{"intake", "router", "dispatcher", "projector"}
	h.rngMu.Lock()
	h.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	h.rngMu.Unlock()
	var victims []string
	defer func() {
		res.Fault = fmt.Sprintf("kill -9 of %d worker processes at random moments, each restarted: %s", len(victims), strings.Join(victims, ", "))
	}()
	// One kill in each of kills equal slots of the load's window, at a
	// random moment early enough in the slot for the restart to fit.
	start, slot := time.Now(), h.plan.killSlot()
	for i := range h.plan.kills {
		at := start.Add(time.Duration(i)*slot + h.between([2]time.Duration{0, slot - h.plan.killPause[1] - time.Second}))
		if !sleepUntil(ctx, at) {
			return time.Time{}, ctx.Err()
		}
		kind := kinds[h.intN(len(kinds))]
		if i < len(kinds) {
			kind = kinds[i]
		}
		var candidates []*process
		for _, p := range h.cluster.workers {
			if strings.HasPrefix(p.spec.Name, kind) {
				candidates = append(candidates, p)
			}
		}
		p := candidates[h.intN(len(candidates))]
		killed := time.Now()
		if err := p.kill(); err != nil {
			return time.Time{}, err
		}
		fmt.Fprintf(h.log, "chaos: kill-workers: killed %s\n", p.spec.Name)
		if !sleepUntil(ctx, time.Now().Add(h.between(h.plan.killPause))) {
			return time.Time{}, ctx.Err()
		}
		if err := p.start(ctx); err != nil {
			return time.Time{}, err
		}
		victims = append(victims, fmt.Sprintf("%s (down %.1fs)", p.spec.Name, time.Since(killed).Seconds()))
	}
	return time.Now(), nil
}

// restartNATS stops the NATS server and starts it again with the same
// store and port, plan natsRestarts times: the first with SIGKILL, the
// next with SIGTERM, in turn.
func restartNATS(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	var done []string
	defer func() {
		res.Fault = fmt.Sprintf("NATS server restarted %d times: %s", len(done), strings.Join(done, ", "))
	}()
	start, slot := time.Now(), h.plan.natsSlot()
	for i := range h.plan.natsRestarts {
		at := start.Add(time.Duration(i)*slot + h.between([2]time.Duration{0, slot - h.plan.natsPause[1] - time.Second}))
		if !sleepUntil(ctx, at) {
			return time.Time{}, ctx.Err()
		}
		stopped := time.Now()
		how := "SIGKILL"
		if i%2 == 0 {
			if err := h.cluster.nats.kill(); err != nil {
				return time.Time{}, err
			}
		} else {
			how = "SIGTERM"
			if err := h.cluster.nats.stop(15 * time.Second); err != nil {
				return time.Time{}, err
			}
		}
		fmt.Fprintf(h.log, "chaos: nats-restart: stopped nats with %s\n", how)
		if !sleepUntil(ctx, time.Now().Add(h.between(h.plan.natsPause))) {
			return time.Time{}, ctx.Err()
		}
		if err := h.cluster.nats.start(ctx); err != nil {
			return time.Time{}, err
		}
		done = append(done, fmt.Sprintf("%s (down %.1fs)", how, time.Since(stopped).Seconds()))
	}
	return time.Now(), nil
}

// stopPostgres stops Postgres for plan pgDown and starts it again.
func stopPostgres(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	res.Fault = fmt.Sprintf("Postgres stopped for %v", h.plan.pgDown)
	if !sleepUntil(ctx, time.Now().Add(h.plan.lead)) {
		return time.Time{}, ctx.Err()
	}
	url := h.cluster.pgURL
	stopped := time.Now()
	if err := h.cluster.stopPostgres(ctx); err != nil {
		return time.Time{}, err
	}
	fmt.Fprintf(h.log, "chaos: postgres-down: postgres stopped\n")
	if !sleepUntil(ctx, stopped.Add(h.plan.pgDown)) {
		return time.Time{}, ctx.Err()
	}
	if err := h.cluster.startPostgres(ctx); err != nil {
		return time.Time{}, err
	}
	if h.cluster.pgURL != url {
		return time.Now(), fmt.Errorf("postgres came back at %s, not %s", h.cluster.pgURL, url)
	}
	res.Fault = fmt.Sprintf("Postgres stopped for %.1fs", time.Since(stopped).Seconds())
	return time.Now(), nil
}

// agencyDown makes one agency answer every delivery with 503 for plan
// agencyDown.
func agencyDown(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	res.Fault = fmt.Sprintf("agency %s failing transiently (503) for %v", transientAgency, h.plan.agencyDown)
	if !sleepUntil(ctx, time.Now().Add(h.plan.lead)) {
		return time.Time{}, ctx.Err()
	}
	if _, err := h.cluster.controlAgency(ctx, transientAgency, map[string]any{"down": true}); err != nil {
		return time.Time{}, err
	}
	defer h.cluster.controlAgency(context.WithoutCancel(ctx), transientAgency, map[string]any{"down": false})
	down := time.Now()
	fmt.Fprintf(h.log, "chaos: agency-transient: %s down\n", transientAgency)
	if !sleepUntil(ctx, down.Add(h.plan.agencyDown)) {
		return time.Time{}, ctx.Err()
	}
	if _, err := h.cluster.controlAgency(ctx, transientAgency, map[string]any{"down": false}); err != nil {
		return time.Time{}, err
	}
	res.Fault = fmt.Sprintf("agency %s failing transiently (503) for %.1fs", transientAgency, time.Since(down).Seconds())
	return time.Now(), nil
}

// agencySlow makes one agency take longer than the ack wait over every
// delivery for the scenario's load, then brings it back to speed.
func agencySlow(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	res.Fault = fmt.Sprintf("agency %s answering in %v (ack wait 5s) for %v", slowAgency, h.plan.slowLatency, h.plan.slow)
	if _, err := h.cluster.controlAgency(ctx, slowAgency, map[string]any{"latency": h.plan.slowLatency.String()}); err != nil {
		return time.Time{}, err
	}
	defer h.cluster.controlAgency(context.WithoutCancel(ctx), slowAgency, map[string]any{"latency": "5ms"})
	if !sleepUntil(ctx, time.Now().Add(h.plan.slow)) {
		return time.Time{}, ctx.Err()
	}
	if _, err := h.cluster.controlAgency(ctx, slowAgency, map[string]any{"latency": "5ms"}); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// publishPoison publishes the poison messages straight onto NATS at random
// moments during the load and records where each was stored.
func publishPoison(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	msgs := poisonMessages(h.plan.poison, h.run, h.ledger.catalog.AgencyCodes(), h.desks)
	counts := map[string]int{}
	for _, m := range msgs {
		counts[strings.SplitN(m.Subject, ".", 3)[1]]++
	}
	res.Fault = fmt.Sprintf("%d poison messages published onto NATS: %d on request subjects, %d on work queues, %d on status subjects",
		len(msgs), counts["requests"], counts["work"], counts["status"])
	p, err := newPoisoner(h.cluster.natsURL, h.cluster.identities())
	if err != nil {
		return time.Time{}, err
	}
	defer p.close()
	at := make([]time.Duration, len(msgs))
	for i := range at {
		at[i] = h.between([2]time.Duration{0, h.plan.poisonWindow * 4 / 5})
	}
	slices.Sort(at)
	start := time.Now()
	for i, m := range msgs {
		if !sleepUntil(ctx, start.Add(at[i])) {
			return time.Time{}, ctx.Err()
		}
		seq, err := p.publish(ctx, m)
		if err != nil {
			return time.Time{}, err
		}
		h.poison[seq] = true
	}
	if len(h.poison) != len(msgs) {
		return time.Now(), fmt.Errorf("%d poison messages stored at only %d places", len(msgs), len(h.poison))
	}
	n, err := forge(ctx, h, res)
	if err != nil {
		return time.Time{}, err
	}
	res.Fault += fmt.Sprintf("; %d status events forged with tax's credential, refused by the projector, and a publish on sns's subject and an anonymous connection, refused by the server", n)
	return time.Now(), nil
}

// deskBurst is a desk's default burst (--desk-burst): what it may submit at
// once before it is held to its rate.
const deskBurst = 50

// submitBurst sends every submission from one desk at the same moment,
// several times its burst: the desk is throttled (429 with Retry-After),
// waits as told and sends again with the same key, and every submission
// must end accepted once, as if it had been paced.
func submitBurst(ctx context.Context, h *harness, subs []submission, res *ScenarioResult) ([]accepted, time.Time) {
	for i := range subs {
		subs[i].Desk = 0
	}
	outs := h.loader.run(ctx, subs, 0)
	throttled, retried := 0, 0
	for _, o := range outs {
		throttled += o.Throttled
		if o.Throttled > 0 {
			retried++
		}
	}
	res.Fault = fmt.Sprintf("one desk sent %d submissions at once (its burst is %d): %d answers were 429, and the %d submissions they held back were sent again after their Retry-After",
		len(subs), deskBurst, throttled, retried)
	if len(subs) > deskBurst && throttled == 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d submissions at once from one desk, over its burst of %d, and none was throttled", len(subs), deskBurst))
	}
	return h.collect(subs, outs, res), time.Now()
}

// submitDuplicates sends every submission twice at the same moment, then
// every one again, then every fourth with the same key and another body:
// the same key and body must come back with the same request, and another
// body must be refused with 409, creating nothing.
func submitDuplicates(ctx context.Context, h *harness, subs []submission, res *ScenarioResult) ([]accepted, time.Time) {
	window := h.plan.dupWindow
	twins := h.loader.runCopies(ctx, subs, window, 2)
	ids := make(map[string]string, len(subs))
	var firsts []outcome
	for i, outs := range twins {
		firsts = append(firsts, outs[0])
		if outs[0].ID != "" && outs[1].ID != "" && outs[0].ID != outs[1].ID {
			res.AppliedTwice++
			res.Problems = append(res.Problems, fmt.Sprintf("key %s sent twice at once with the same body got two requests: %s and %s", subs[i].Key, outs[0].ID, outs[1].ID))
		}
		if outs[1].Status != http.StatusAccepted {
			res.Problems = append(res.Problems, fmt.Sprintf("key %s sent twice at once: the second copy got HTTP %d %s %v", subs[i].Key, outs[1].Status, outs[1].Code, outs[1].Err))
		}
	}
	reqs := h.collect(subs, firsts, res)
	for _, r := range reqs {
		ids[r.Key] = r.ID
	}

	again := h.loader.run(ctx, subs, window/3)
	for i, o := range again {
		switch {
		case o.Status != http.StatusAccepted:
			res.Problems = append(res.Problems, fmt.Sprintf("key %s sent again with the same body: HTTP %d %s %v", subs[i].Key, o.Status, o.Code, o.Err))
		case o.ID != ids[subs[i].Key]:
			res.AppliedTwice++
			res.Problems = append(res.Problems, fmt.Sprintf("key %s sent again with the same body got request %s, not %s", subs[i].Key, o.ID, ids[subs[i].Key]))
		}
	}

	var changed []submission
	for i, s := range subs {
		if i%4 == 0 {
			_, body := validBody(s.Num, "changed ")
			s.Body = body
			changed = append(changed, s)
		}
	}
	conflicts := h.loader.run(ctx, changed, window/4)
	for i, o := range conflicts {
		if o.Status != http.StatusConflict || o.Code != "idempotency_conflict" {
			res.Problems = append(res.Problems, fmt.Sprintf("key %s sent with another body: HTTP %d %q %v, want 409 idempotency_conflict", changed[i].Key, o.Status, o.Code, o.Err))
		}
	}
	res.Fault = fmt.Sprintf("%d submissions each sent twice at once, then all %d again, then %d with the same key and another body (409)",
		len(subs), len(subs), len(changed))
	return reqs, time.Now()
}
