package main

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// pageFigures is what the dashboard shows, read from the page.
type pageFigures struct {
	Submitted, Completed, Rejected, Failed int64
	// LastHour adds up the per-minute table behind the throughput chart.
	LastHourSubmitted, LastHourCompleted int64
	Updates                              int
	Marker                               bool
}

const readFigures = `(() => {
	const v = name => Number(document.querySelector('[data-figure="' + name + '"]').dataset.value);
	let sub = 0, done = 0;
	for (const row of document.querySelectorAll('#throughput-data tbody tr')) {
		sub += Number(row.cells[1].textContent);
		done += Number(row.cells[2].textContent);
	}
	return {Submitted: v("submitted"), Completed: v("completed"), Rejected: v("rejected"), Failed: v("failed"),
		LastHourSubmitted: sub, LastHourCompleted: done,
		Updates: Number(document.getElementById("live").dataset.updates || 0),
		Marker: window.__notReloaded === true};
})()`

func TestDashboard_FiguresMoveLiveAndAgreeWithPostgresInARealBrowser(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	// As an operator, who sees every count, small ones included.
	const operatorToken = "operator-token-for-the-browser"
	m, dbURL := startMain(t, "*:latency=5ms", func(c *Config) { c.OperatorToken = operatorToken })
	b := startBrowser(t, 1280, 1000)
	b.call(b.session, "Network.enable", nil, nil)
	b.call(b.session, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Authorization": "Bearer " + operatorToken}}, nil)
	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()
	_, token, err := store.CreateDesk(ctx, "braga", "Loja do Cidadão Braga")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.HTTPAddr()

	b.navigate(base + "/dashboard?range=1h")
	var before pageFigures
	workertest.WaitWithin(t, 30*time.Second, "the dashboard to load and take a live update", func() error {
		err := b.eval(readFigures, &before)
		if err == nil && before.Updates >= 1 {
			return nil
		}
		return fmt.Errorf("%+v %v", before, err)
	})
	if before.Submitted != 0 {
		t.Errorf("before any load the page shows %d submitted, want 0", before.Submitted)
	}
	// A marker that a reload would wipe out.
	if err := b.eval(`window.__notReloaded = true`, nil); err != nil {
		t.Fatal(err)
	}

	// Load: 80 requests over about eight seconds, while the page is watched.
	const n = 80
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			post(t, http.DefaultClient, base, token, submission{key: fmt.Sprintf("browser-%d", i), body: validBody(i)})
			time.Sleep(100 * time.Millisecond)
		}
	})
	seen := map[int64]bool{}
	var last pageFigures
	workertest.WaitWithin(t, 90*time.Second, "the page to show every request finished", func() error {
		if err := b.eval(readFigures, &last); err != nil {
			return err
		}
		seen[last.Submitted] = true
		finished := last.Completed + last.Rejected + last.Failed
		if last.Submitted == n && finished == n {
			return nil
		}
		return fmt.Errorf("%+v", last)
	})
	wg.Wait()
	intermediate := 0
	for v := range seen {
		if v > 0 && v < n {
			intermediate++
		}
	}
	if intermediate == 0 {
		t.Errorf("the submitted figure went from 0 to %d without showing any value in between: it did not move live (saw %v)", n, seen)
	}
	if !last.Marker {
		t.Error("the page was reloaded; it must update in place")
	}
	if last.Updates <= before.Updates {
		t.Errorf("the page took %d live updates, no more than the %d it had before the load", last.Updates, before.Updates)
	}

	// The page agrees with Postgres.
	var submitted, completed, rejected, failed int64
	err = pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
		count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status = 'failed') FROM requests`).
		Scan(&submitted, &completed, &rejected, &failed)
	if err != nil {
		t.Fatal(err)
	}
	want := pageFigures{Submitted: submitted, Completed: completed, Rejected: rejected, Failed: failed,
		LastHourSubmitted: submitted, LastHourCompleted: completed, Updates: last.Updates, Marker: true}
	if last != want {
		t.Errorf("the page shows %+v, Postgres holds %+v", last, want)
	}

	// The municipality filter applies without a reload.
	if err := b.eval(`document.getElementById("municipality").value = "braga";
		document.getElementById("filter").requestSubmit(); true`, nil); err != nil {
		t.Fatal(err)
	}
	workertest.WaitWithin(t, 20*time.Second, "the filtered figures", func() error {
		var status string
		err := b.eval(`document.getElementById("status").textContent`, &status)
		if err == nil && strings.Contains(status, "braga") {
			return nil
		}
		return errors.New(status)
	})

	path := filepath.Join(artifactDir(t), "dashboard.png")
	b.screenshot(path)
	t.Logf("screenshot of the dashboard: %s", path)
	b.checkAccessibility(t, axe)
}
