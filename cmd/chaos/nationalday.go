package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// dayProfile is a country's day of Citizen Spots, compressed: Desks desks
// in Municipalities municipalities submit Requests requests over Length,
// which stands for a working day from 08:30 to 19:30, with a morning peak
// around 10:30, a lunch dip and an afternoon peak around 15:00; Offline
// desks lose their link for a while and send what they held when it
// returns.
type dayProfile struct {
	Desks, Municipalities int
	Requests              int
	Length                time.Duration
	Offline               int
}

// nationalDay is Portugal's network of Citizen Spots (765 desks in 308
// municipalities), each desk serving about 60 requests a day, the day
// compressed to ten minutes.
var nationalDay = dayProfile{Desks: 765, Municipalities: 308, Requests: 765 * 60, Length: 10 * time.Minute, Offline: 8}

// serviceWeights is a desk's mix of services in a day: certificates,
// health and tax services most, intellectual property least; a change of
// address fans out to four agencies.
var serviceWeights = map[string]int{
	"citizen-card-renewal": 14, "health-appointment": 12, "criminal-record-certificate": 10,
	"tax-id-certificate": 8, "driving-licence-renewal": 8, "change-of-address": 7, "birth-certificate": 6,
	"european-health-insurance-card": 5, "tax-debt-certificate": 5, "contributions-statement": 5,
	"health-user-registration": 3, "income-tax-return": 3, "unemployment-benefit": 3, "social-benefit-application": 2,
	"employment-registration": 2, "driving-licence-replacement": 2, "marriage-certificate": 2, "tax-number-request": 2,
	"water-supply-contract": 2, "electricity-contract": 2, "adse-enrolment": 1, "adse-reimbursement": 1,
	"old-age-pension": 1, "vocational-training": 1, "vehicle-ownership-registration": 1,
	"international-driving-permit": 1, "trademark-registration": 1, "patent-application": 1,
}

// hourOfDay maps an offset into the compressed day to the hour it stands
// for.
func (p dayProfile) hourOfDay(at time.Duration) float64 {
	return 8.5 + 11*at.Seconds()/p.Length.Seconds()
}

// intensity is the relative rate of submissions at hour h.
func intensity(h float64) float64 {
	peak := func(at, width, height float64) float64 { return height * math.Exp(-(h-at)*(h-at)/(2*width*width)) }
	return 0.25 + peak(10.5, 1.0, 1.0) + peak(15.0, 1.3, 0.8) - peak(13.0, 0.5, 0.2)
}

// plan makes the day's submissions, each at its moment: times drawn from
// the day's curve, desks of unequal size (a few large town halls, many
// parishes), services by serviceWeights; an offline desk's submissions
// during its outage are sent together when it comes back.
func (p dayProfile) plan(c *events.Catalog, desks []desk, seed int64) []submission {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>7|1))
	// The day's curve, as a cumulative table over a thousand steps.
	const steps = 1000
	cum := make([]float64, steps+1)
	for i := range steps {
		cum[i+1] = cum[i] + intensity(p.hourOfDay(time.Duration(float64(p.Length)*(float64(i)+0.5)/steps)))
	}
	at := func(u float64) time.Duration {
		x := u * cum[steps]
		i := sort.SearchFloat64s(cum, x)
		i = min(max(i, 1), steps)
		frac := (x - cum[i-1]) / (cum[i] - cum[i-1])
		return time.Duration(float64(p.Length) * (float64(i-1) + frac) / steps)
	}
	// Desk sizes: lognormal, so that some desks serve several times the
	// median.
	deskCum := make([]float64, len(desks)+1)
	for i := range desks {
		deskCum[i+1] = deskCum[i] + math.Exp(0.8*rng.NormFloat64())
	}
	var services []events.Service
	var svcCum []float64
	total := 0.0
	for _, s := range c.Services {
		if w := serviceWeights[s.Code]; w > 0 {
			total += float64(w)
			services, svcCum = append(services, s), append(svcCum, total)
		}
	}
	// Outages: Offline desks, each away for a tenth to a fifth of the day.
	type outage struct{ from, to time.Duration }
	outages := make(map[int]outage)
	for len(outages) < min(p.Offline, len(desks)) {
		from := time.Duration(rng.Float64() * 0.7 * float64(p.Length))
		outages[rng.IntN(len(desks))] = outage{from, from + time.Duration((0.1+0.1*rng.Float64())*float64(p.Length))}
	}
	subs := make([]submission, p.Requests)
	for n := range subs {
		when := at((float64(n) + rng.Float64()) / float64(p.Requests))
		d := sort.SearchFloat64s(deskCum, rng.Float64()*deskCum[len(desks)]) - 1
		d = min(max(d, 0), len(desks)-1)
		if o, ok := outages[d]; ok && when >= o.from && when < o.to {
			when = o.to // held at the desk until its link is back
		}
		svc := services[sort.SearchFloat64s(svcCum, rng.Float64()*total)]
		body, _ := json.Marshal(map[string]any{
			"service_code": svc.Code,
			"citizen":      map[string]string{"national_id": fmt.Sprintf("%08d", 30000000+n), "name": fmt.Sprintf("Citizen %d", n)},
			"attributes":   svc.SampleAnswers(n),
		})
		subs[n] = submission{Num: n, Desk: d, Key: fmt.Sprintf("day-%d", n), Body: body, Service: svc.Code, At: when}
	}
	slices.SortStableFunc(subs, func(a, b submission) int { return int(a.At - b.At) })
	return subs
}

// createDesksFast registers n desks spread over municipalities, straight
// in Postgres as `spotflow desk create` does, for runs of hundreds.
func createDesksFast(ctx context.Context, pgURL string, n, municipalities int) ([]desk, error) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store := postgres.NewStore(pool, nil)
	out := make([]desk, n)
	for i := range out {
		muni := fmt.Sprintf("municipality-%03d", i%municipalities)
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
