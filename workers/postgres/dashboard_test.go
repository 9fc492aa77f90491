package postgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// slaStore is a store over a fresh schema that knows two services' expected
// completion times.
func slaStore(t *testing.T) *postgres.Store {
	t.Helper()
	return postgres.NewStore(pgtest.Pool(t, pgtest.Schema(t)), []byte("0123456789abcdef0123456789abcdef"),
		postgres.ServiceLevels(map[string]time.Duration{"change-of-address": time.Hour, "tax-id-certificate": time.Hour}))
}

// complete carries r through routing to its agencies' answers at done.
func complete(r *events.Request, done time.Time, status events.Status, agencies ...string) []events.Change {
	changes := []events.Change{submitted(r), routed(r, r.SubmittedAt.Add(time.Second), agencies...)}
	for _, a := range agencies {
		changes = append(changes, agencyEvent(r, a, events.StatusDispatched, r.SubmittedAt.Add(2*time.Second)),
			agencyEvent(r, a, status, done))
	}
	return changes
}

func tallyOf(t *testing.T, tallies []events.Tally, key string) events.Tally {
	t.Helper()
	for _, x := range tallies {
		if x.Key == key {
			return x
		}
	}
	t.Fatalf("no tally for %q in %+v", key, tallies)
	return events.Tally{}
}

func TestDashboard_CountsSubmissionsOutcomesAndServiceLevelsByEveryDimension(t *testing.T) {
	t.Parallel()
	s := slaStore(t)
	ctx := withTimeout(t)

	// Within its hour: 10 minutes. Past it: two hours. Rejected: no SLA.
	quick := newRequest("desk-1", "change-of-address", t0)
	slow := newRequest("desk-2", "tax-id-certificate", t0.Add(time.Minute))
	slow.Municipality = "porto"
	refused := newRequest("desk-1", "birth-certificate", t0.Add(2*time.Minute))
	var changes []events.Change
	changes = append(changes, complete(quick, t0.Add(10*time.Minute), events.StatusCompleted, "civil-registry", "tax")...)
	changes = append(changes, complete(slow, t0.Add(121*time.Minute), events.StatusCompleted, "tax")...)
	changes = append(changes, complete(refused, t0.Add(5*time.Minute), events.StatusRejected, "civil-registry")...)
	mustProject(t, s, changes...)
	// Redelivered events change nothing.
	mustProject(t, s, changes...)

	now := t0.Add(3 * time.Hour)
	for _, tc := range []struct {
		name   string
		filter events.DashboardFilter
		want   events.Tally
	}{
		{"every municipality over a day", events.DashboardFilter{Range: events.RangeDay},
			events.Tally{Submitted: 3, Completed: 2, Rejected: 1, WithinSLA: 1, Breached: 1, LatencyMillis: (10 + 120) * 60000}},
		{"one municipality over a week", events.DashboardFilter{Municipality: "lisboa", Range: events.RangeWeek},
			events.Tally{Submitted: 2, Completed: 1, Rejected: 1, WithinSLA: 1, LatencyMillis: 10 * 60000}},
		{"the last hour, which saw only the slow completion", events.DashboardFilter{Range: events.RangeHour},
			events.Tally{Completed: 1, Breached: 1, LatencyMillis: 120 * 60000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Dashboard(ctx, tc.filter, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Tallies[events.DimensionTotal]; len(got) != 1 || got[0] != tc.want {
				t.Errorf("total = %+v, want %+v", got, tc.want)
			}
		})
	}

	d, err := s.Dashboard(ctx, events.DashboardFilter{Range: events.RangeDay}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := tallyOf(t, d.Tallies[events.DimensionDesk], "desk-1"); got.Submitted != 2 || got.Completed != 1 || got.Rejected != 1 {
		t.Errorf("desk-1 = %+v, want 2 submitted, 1 completed, 1 rejected", got)
	}
	if got := tallyOf(t, d.Tallies[events.DimensionMunicipality], "porto"); got.Submitted != 1 || got.Breached != 1 {
		t.Errorf("porto = %+v, want 1 submitted, 1 breached", got)
	}
	if got := tallyOf(t, d.Tallies[events.DimensionService], "tax-id-certificate"); got.Completed != 1 || got.Breached != 1 {
		t.Errorf("tax-id-certificate = %+v, want 1 completed past its SLA", got)
	}
	if got := tallyOf(t, d.Tallies[events.DimensionAgency], "tax"); got.Submitted != 2 || got.Completed != 2 || got.WithinSLA != 1 || got.Breached != 1 {
		t.Errorf("agency tax = %+v, want 2 dispatched, 2 completed, 1 within SLA, 1 breached", got)
	}
	if got := tallyOf(t, d.Tallies[events.DimensionAgency], "civil-registry"); got.Submitted != 2 || got.Completed != 1 || got.Rejected != 1 {
		t.Errorf("agency civil-registry = %+v, want 2 dispatched, 1 completed, 1 rejected", got)
	}
	if n := d.Latencies[""].Count(); n != 2 {
		t.Errorf("latency histogram of every service counts %d completions, want 2", n)
	}
	if p := d.Latencies["tax-id-certificate"].Quantile(0.5); p < 85*time.Minute || p > 170*time.Minute {
		t.Errorf("median of tax-id-certificate = %v, want about 2h (within a factor of √2)", p)
	}
	if len(d.Municipalities) != 0 {
		t.Errorf("municipalities = %v, want none: no desk was registered", d.Municipalities)
	}
}

func TestDashboard_LastHourHasSixtyMinutesOldestFirst(t *testing.T) {
	t.Parallel()
	s := slaStore(t)
	ctx := withTimeout(t)
	r := newRequest("desk-1", "change-of-address", t0)
	mustProject(t, s, complete(r, t0.Add(90*time.Second), events.StatusCompleted, "tax")...)

	minutes, err := s.DashboardMinutes(ctx, "", t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(minutes) != 60 {
		t.Fatalf("got %d minutes, want 60", len(minutes))
	}
	if last := minutes[59].At; !last.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("last minute is %v, want the current one, %v", last, t0.Add(30*time.Minute))
	}
	for _, m := range minutes {
		want := events.MinuteCount{At: m.At}
		switch {
		case m.At.Equal(t0):
			want.Submitted = 1
		case m.At.Equal(t0.Add(time.Minute)):
			want.Completed = 1
		}
		if m != want {
			t.Errorf("minute %v = %+v, want %+v", m.At, m, want)
		}
	}
}

func TestDashboard_RollupsAgreeWithTheTimelineAtEveryGrain(t *testing.T) {
	t.Parallel()
	s := slaStore(t)
	ctx := withTimeout(t)
	var changes []events.Change
	for i := range 40 {
		at := t0.Add(time.Duration(i) * 7 * time.Minute)
		r := newRequest([]string{"desk-1", "desk-2", "desk-3"}[i%3], []string{"change-of-address", "tax-id-certificate"}[i%2], at)
		status := events.StatusCompleted
		if i%5 == 0 {
			status = events.StatusRejected
		}
		changes = append(changes, complete(r, at.Add(time.Duration(i)*time.Minute), status, "tax")...)
	}
	mustProject(t, s, changes...)
	for _, g := range events.Grains {
		var mismatched int
		err := s.Pool().QueryRow(ctx, `
			WITH expected AS (
				SELECT date_trunc($1, t.at) AS at,
				       count(*) FILTER (WHERE t.status = 'submitted') AS submitted,
				       count(*) FILTER (WHERE t.status = 'completed') AS completed,
				       count(*) FILTER (WHERE t.status = 'rejected') AS rejected
				FROM timeline t WHERE t.agency = '' GROUP BY 1),
			stored AS (
				SELECT at, submitted, completed, rejected FROM dashboard_counts
				WHERE grain = $1 AND scope = '' AND dim = 'total'),
			diff AS ((SELECT * FROM expected EXCEPT SELECT * FROM stored)
			         UNION ALL (SELECT * FROM stored EXCEPT SELECT * FROM expected))
			SELECT count(*) FROM diff`, string(g)).Scan(&mismatched)
		if err != nil {
			t.Fatal(err)
		}
		if mismatched != 0 {
			t.Errorf("%s grain: %d buckets differ from the timeline", g, mismatched)
		}
	}
}

func TestPruneDashboard_DropsOnlyRowsNoRangeReads(t *testing.T) {
	t.Parallel()
	s := slaStore(t)
	ctx := withTimeout(t)
	r := newRequest("desk-1", "change-of-address", t0)
	mustProject(t, s, complete(r, t0.Add(time.Minute), events.StatusCompleted, "tax")...)
	count := func(grain events.Grain) int {
		var n int
		err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM dashboard_counts WHERE grain = $1)
			+ (SELECT count(*) FROM dashboard_latency WHERE grain = $1)`, string(grain)).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := map[events.Grain]int{}
	for _, g := range events.Grains {
		before[g] = count(g)
	}
	if _, err := s.PruneDashboard(ctx, t0.Add(47*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := count(events.GrainMinute); got != before[events.GrainMinute] {
		t.Errorf("after 47 hours %d minute rows are left, want all %d", got, before[events.GrainMinute])
	}
	if _, err := s.PruneDashboard(ctx, t0.Add(3*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := count(events.GrainMinute); got != 0 {
		t.Errorf("after 3 days %d minute rows are left, want none", got)
	}
	if got := count(events.GrainHour); got != before[events.GrainHour] {
		t.Errorf("after 3 days %d hour rows are left, want all %d", got, before[events.GrainHour])
	}
	if _, err := s.PruneDashboard(ctx, t0.Add(9*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, want := count(events.GrainHour)+count(events.GrainDay), before[events.GrainDay]; got != want {
		t.Errorf("after 9 days %d hour and day rows are left, want the %d day rows", got, want)
	}
}

func TestFoldRollups_CountsEachProjectedEventOnceAcrossConcurrentFolds(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	var changes []events.Change
	for i := range 40 {
		r := newRequest(fmt.Sprintf("desk-%d", i%4), "tax-id-certificate", t0.Add(time.Duration(i)*time.Second))
		changes = append(changes, complete(r, r.SubmittedAt.Add(30*time.Second), events.StatusCompleted, "tax")...)
	}
	// Project in many small batches, without folding: the roll-ups wait.
	for i := 0; i < len(changes); i += 7 {
		for _, err := range s.Project(ctx, changes[i:min(i+7, len(changes))]) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var rows int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM dashboard_counts`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("dashboard_counts has %d rows before any fold, want 0", rows)
	}

	var wg sync.WaitGroup
	folded := make([]int, 4)
	for i := range folded {
		wg.Go(func() {
			n, err := s.FoldRollups(ctx)
			if err != nil {
				t.Errorf("fold %d: %v", i, err)
			}
			folded[i] = n
		})
	}
	wg.Wait()
	var total int
	for _, n := range folded {
		total += n
	}
	// Each request: submitted, routed, tax dispatched, tax completed,
	// completed.
	if want := 40 * 5; total != want {
		t.Errorf("the folds added %d events in all (%v), want %d", total, folded, want)
	}
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM dashboard_inbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("%d inbox rows left after folding", rows)
	}
	if n, err := s.FoldRollups(ctx); err != nil || n != 0 {
		t.Errorf("folding an empty inbox added %d events (%v), want 0", n, err)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestFoldRollups_FoldsABacklogLargerThanOneFoldInOneCall(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	// A backlog of 2,500 projector batches of one submission each, more
	// than a fold takes at once.
	const batches = 2500
	_, err := s.Pool().Exec(ctx, `
		INSERT INTO dashboard_inbox (minute, desk_id, municipality, service_code, agency, status, since_submitted_us)
		SELECT ARRAY[$1::timestamptz], ARRAY['desk-' || (i % 7)], ARRAY['lisboa'], ARRAY['tax-id-certificate'],
		       ARRAY[''], ARRAY['submitted'], ARRAY[0::bigint]
		FROM generate_series(1, $2) AS i`, t0, batches)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.FoldRollups(ctx)
	if err != nil || n != batches {
		t.Fatalf("FoldRollups folded %d events (%v), want all %d", n, err, batches)
	}
	var left, counted int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM dashboard_inbox`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	err = s.Pool().QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM throughput_minute WHERE status = 'submitted'`).Scan(&counted)
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 || counted != batches {
		t.Errorf("after one FoldRollups: %d inbox rows left, %d submissions counted; want 0 and %d", left, counted, batches)
	}
}
