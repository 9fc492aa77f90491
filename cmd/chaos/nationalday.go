package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/workers/loadprofile"
	"github.com/spotflow/spotflow/workers/postgres"
)

// nationalDay is the national day's profile.
var nationalDay = loadprofile.NationalDay

// dayPlan is the day's submissions, for the harness's desks.
func dayPlan(h *harness) []submission {
	planned := nationalDay.Plan(h.ledger.catalog, h.cfg.Seed)
	subs := make([]submission, len(planned))
	for i, p := range planned {
		subs[i] = submission{Num: p.N, Desk: p.Desk, Key: fmt.Sprintf("day-%d", p.N), Body: p.Body, Service: p.Service, At: p.At}
	}
	return subs
}

// createDesksFast registers the day's desks, straight in Postgres as
// `spotflow desk create` does, for runs of hundreds.
func createDesksFast(ctx context.Context, pgURL string, day loadprofile.Day) ([]desk, error) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store := postgres.NewStore(pool, nil)
	out := make([]desk, day.Desks)
	for i := range out {
		muni := day.Municipality(i)
		d, token, err := store.CreateDesk(ctx, muni, fmt.Sprintf("Citizen Spot %d", i))
		if err != nil {
			return nil, err
		}
		out[i] = desk{ID: d.ID, Municipality: muni, Token: token}
	}
	return out, nil
}

// figuresAgree compares the dashboard's headline figures for the last 24
// hours, as intake serves them, with Postgres's own counts, and says what
// each showed.
func (c *cluster) figuresAgree(ctx context.Context, pgURL string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.intakeURLs[0]+"/dashboard/figures?range=24h", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dashboard figures: %s %s", resp.Status, data)
	}
	var fig struct {
		Since                                  time.Time
		Submitted, Completed, Rejected, Failed *int64
	}
	if err := json.Unmarshal(data, &fig); err != nil {
		return "", fmt.Errorf("dashboard figures: %w", err)
	}
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	var submitted, completed, rejected, failed int64
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE t.status = 'submitted'), count(*) FILTER (WHERE t.status = 'completed'),
		       count(*) FILTER (WHERE t.status = 'rejected'), count(*) FILTER (WHERE t.status = 'failed')
		FROM timeline t JOIN requests r ON r.id = t.request_id
		WHERE t.agency = '' AND t.at >= $1 AND NOT r.training`, fig.Since).Scan(&submitted, &completed, &rejected, &failed); err != nil {
		return "", err
	}
	shown := func(p *int64) int64 {
		if p == nil {
			return -1 // hidden
		}
		return *p
	}
	got := []int64{shown(fig.Submitted), shown(fig.Completed), shown(fig.Rejected), shown(fig.Failed)}
	want := []int64{submitted, completed, rejected, failed}
	line := fmt.Sprintf("dashboard (24 h): submitted %d, completed %d, rejected %d, failed %d; Postgres: %d, %d, %d, %d",
		got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3])
	if !slices.Equal(got, want) {
		return "", fmt.Errorf("the dashboard's figures differ from Postgres's: %s", line)
	}
	return line, nil
}
