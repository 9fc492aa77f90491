package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/cmd/internal/procstat"
	"github.com/spotflow/spotflow/workers/postgres"
)

// How the load generator measures what a desk waits for and what it costs.

// readableLatencies is, for each request of sent that finished, the time
// from its submission's first send to the commit of the transaction that
// wrote its final status: the moment the desk API could first read it as
// completed (or rejected). It needs the server's commit timestamps
// (track_commit_timestamp = on); without them it returns nil and says so.
// The client's and the server's clocks are the same on one machine; across
// machines they must be in step.
func readableLatencies(ctx context.Context, store *postgres.Store, sent map[string]time.Time) ([]float64, string, error) {
	const measured = "client's first send → commit of the request's final status in Postgres (its commit timestamp)"
	ids := make([]string, 0, len(sent))
	for id := range sent {
		ids = append(ids, id)
	}
	var out []float64
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 10000)]
		ids = ids[len(chunk):]
		rows, err := store.Pool().Query(ctx, `
			SELECT id, pg_xact_commit_timestamp(xmin) FROM requests
			WHERE id = ANY($1) AND status IN ('completed', 'rejected')`, chunk)
		if err != nil {
			return nil, "", fmt.Errorf("loadgen: read commit times: %w", err)
		}
		var id string
		var at *time.Time
		_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
			if at != nil {
				out = append(out, float64(at.Sub(sent[id]).Microseconds())/1000)
			}
			return nil
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55000" { // object_not_in_prerequisite_state
			return nil, "submitted_at → the completion event's time, in the server: Postgres keeps no commit timestamps (track_commit_timestamp is off)", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("loadgen: read commit times: %w", err)
		}
	}
	return out, measured, nil
}

// processKinds are the processes whose CPU the load generator counts, by
// their command name: spotflow's roles, its Postgres, a separate NATS.
var processKinds = []string{"spotflow", "postgres", "nats-server"}

// processCPU reads the CPU time used so far by each of this machine's
// processes of processKinds, by process ID, the load generator itself left
// out; nil where /proc cannot be read.
func processCPU() map[int]procstat.Process { return procstat.Named(processKinds...) }

// cpuPerRequest is the CPU each kind of process used between two readings
// of processCPU, in milliseconds per completed request, and how it was
// measured (see procstat.Used for the processes that start or end in
// between).
func cpuPerRequest(before, after map[int]procstat.Process, completed int64) (map[string]float64, string) {
	if before == nil || after == nil || completed == 0 {
		return nil, "not measured: no process of the system seen on this machine, or nothing completed"
	}
	out := map[string]float64{}
	for kind, seconds := range procstat.Used(before, after) {
		if seconds > 0 {
			out[kind] = seconds * 1000 / float64(completed)
		}
	}
	if len(out) == 0 {
		return nil, "not measured: no process of the system seen on this machine"
	}
	return out, "user + system CPU of this machine's spotflow, postgres and nats-server processes (the load generator left out) from the first submission to the last completion, per completed request"
}
