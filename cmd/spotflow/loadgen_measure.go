package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// processTime is one process's kind and the CPU time it has used, in
// seconds.
type processTime struct {
	kind    string
	seconds float64
}

// processCPU reads the CPU time used so far by each of this machine's
// processes of processKinds, by process ID, the load generator itself left
// out; nil where /proc cannot be read.
func processCPU() map[int]processTime {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return nil
	}
	out := map[int]processTime{}
	for _, path := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(b[open+1 : end])
		if !slices.Contains(processKinds, comm) {
			continue
		}
		// utime and stime are the 12th and 13th fields after the name.
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[pid] = processTime{kind: comm, seconds: (ut + st) / clockTicks}
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc's CPU times, on Linux.
const clockTicks = 100

// cpuPerRequest is the CPU each kind of process used between two readings
// of processCPU, in milliseconds per completed request, and how it was
// measured. A process that started in between counts from its start; one
// that ended in between took its time with it (Postgres's backends live as
// long as their pools).
func cpuPerRequest(before, after map[int]processTime, completed int64) (map[string]float64, string) {
	if before == nil || after == nil || completed == 0 {
		return nil, "not measured: no process of the system seen on this machine, or nothing completed"
	}
	out := map[string]float64{}
	for pid, t := range after {
		used := t.seconds
		if b, ok := before[pid]; ok && b.kind == t.kind {
			used -= b.seconds
		}
		if used > 0 {
			out[t.kind] += used * 1000 / float64(completed)
		}
	}
	if len(out) == 0 {
		return nil, "not measured: no process of the system seen on this machine"
	}
	return out, "user + system CPU of this machine's spotflow, postgres and nats-server processes (the load generator left out) from the first submission to the last completion, per completed request"
}
