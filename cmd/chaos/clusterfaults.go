package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/spotflow/spotflow/events"
)

// The faults of a run on a three-node NATS cluster.

func clusterScenarios() []scenario {
	return []scenario{
		{name: "leader-kill", window: func(p plan) time.Duration { return time.Duration(p.leaderKills) * p.leaderEvery }, inject: killLeaders},
		{name: "quorum-loss", window: func(p plan) time.Duration { return p.lead + p.quorumDown + p.tail }, inject: loseQuorum},
		// The load lasts about as long as the rounds: a node in lame-duck
		// mode moves its clients away and exits within 30 s (its setting),
		// and rejoins in a few.
		{name: "lame-duck", window: func(p plan) time.Duration {
			return time.Duration(p.lameRounds*clusterNodes) * 15 * time.Second
		}, inject: lameDuckRestarts},
	}
}

// killLeaders kills, with SIGKILL, the node that leads the events stream,
// once every plan leaderEvery, and starts it again after leaderDown.
func killLeaders(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	nc, js, err := h.cluster.admin()
	if err != nil {
		return time.Time{}, err
	}
	defer nc.Close()
	var done []string
	defer func() {
		res.Fault = fmt.Sprintf("kill -9 of the events stream's leader every %v, each restarted: %s", h.plan.leaderEvery, strings.Join(done, ", "))
	}()
	start := time.Now()
	for i := range h.plan.leaderKills {
		if !sleepUntil(ctx, start.Add(time.Duration(i)*h.plan.leaderEvery)) {
			return time.Time{}, ctx.Err()
		}
		leader, err := h.cluster.streamLeader(ctx, js, events.EventsStream)
		if err != nil {
			return time.Time{}, err
		}
		killed := time.Now()
		if err := leader.proc.kill(); err != nil {
			return time.Time{}, err
		}
		fmt.Fprintf(h.log, "chaos: leader-kill: killed %s, the leader\n", leader.name)
		if !sleepUntil(ctx, time.Now().Add(h.between(h.plan.leaderDown))) {
			return time.Time{}, ctx.Err()
		}
		if err := leader.proc.start(ctx); err != nil {
			return time.Time{}, err
		}
		done = append(done, fmt.Sprintf("%s (down %.1fs)", leader.name, time.Since(killed).Seconds()))
	}
	return time.Now(), nil
}

// loseQuorum stops two of the three nodes for plan quorumDown: no stream
// can store anything meanwhile, so intake must answer 503 rather than 202.
func loseQuorum(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	nodes := h.cluster.natsNodes
	first := h.intN(len(nodes))
	down := []*natsNode{nodes[first], nodes[(first+1)%len(nodes)]}
	res.Fault = fmt.Sprintf("%s and %s stopped together for %v: quorum lost", down[0].name, down[1].name, h.plan.quorumDown)
	if !sleepUntil(ctx, time.Now().Add(h.plan.lead)) {
		return time.Time{}, ctx.Err()
	}
	for _, n := range down {
		if err := n.proc.stop(15 * time.Second); err != nil {
			return time.Time{}, err
		}
	}
	fmt.Fprintf(h.log, "chaos: quorum-loss: stopped %s and %s\n", down[0].name, down[1].name)
	if !sleepUntil(ctx, time.Now().Add(h.plan.quorumDown)) {
		return time.Time{}, ctx.Err()
	}
	errs := make(chan error, len(down))
	for _, n := range down {
		go func() { errs <- n.proc.start(ctx) }()
	}
	for range down {
		if err := <-errs; err != nil {
			return time.Time{}, err
		}
	}
	return time.Now(), nil
}

// lameDuckRestarts restarts every node in turn, plan lameRounds times: the
// node is put in lame-duck mode (SIGUSR2, as nats-server --signal ldm
// does), which moves its clients away before it exits, and is started
// again once it has; the next waits until it is healthy.
func lameDuckRestarts(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	var done []string
	defer func() {
		res.Fault = fmt.Sprintf("%d rounds of restarting each node in lame-duck mode: %s", h.plan.lameRounds, strings.Join(done, ", "))
	}()
	if !sleepUntil(ctx, time.Now().Add(h.plan.lead)) {
		return time.Time{}, ctx.Err()
	}
	for round := range h.plan.lameRounds {
		for _, n := range h.cluster.natsNodes {
			began := time.Now()
			// Lame duck lasts 30 s (deploy/nats/cluster.conf); the node
			// exits at its end.
			if err := n.proc.signal(syscall.SIGUSR2, time.Minute); err != nil {
				return time.Time{}, err
			}
			if err := n.proc.start(ctx); err != nil {
				return time.Time{}, err
			}
			fmt.Fprintf(h.log, "chaos: lame-duck: round %d: %s restarted\n", round+1, n.name)
			done = append(done, fmt.Sprintf("%s (%.0fs)", n.name, time.Since(began).Seconds()))
		}
	}
	return time.Now(), nil
}

// quietDay is the national day's "fault": none. It waits out the day.
func quietDay(ctx context.Context, h *harness, res *ScenarioResult) (time.Time, error) {
	res.Fault = fmt.Sprintf("none: %d desks in %d municipalities, %d requests over a day compressed to %v, %d desks offline for a while",
		nationalDay.Desks, nationalDay.Municipalities, nationalDay.Requests, nationalDay.Length, nationalDay.Offline)
	if !sleepUntil(ctx, time.Now().Add(nationalDay.Length)) {
		return time.Time{}, ctx.Err()
	}
	return time.Now(), nil
}
