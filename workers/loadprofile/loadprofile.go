// Package loadprofile models the load a network of desks puts on
// spotflow, for spotflow loadgen and the fault suites: a country's day of
// Citizen Spots, compressed.
package loadprofile

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/spotflow/spotflow/events"
)

// Submission is one planned submission: the N-th of the day, by desk
// number Desk (of Day.Desks), with its body, at At into the day.
type Submission struct {
	N       int
	Desk    int
	Service string
	Body    []byte
	At      time.Duration
}

// Municipality names the municipality of desk number i of a day.
func (p Day) Municipality(i int) string { return fmt.Sprintf("municipality-%03d", i%p.Municipalities) }

// Day is a country's day of Citizen Spots, compressed: Desks desks
// in Municipalities municipalities submit Requests requests over Length,
// which stands for a working day from 08:30 to 19:30, with a morning peak
// around 10:30, a lunch dip and an afternoon peak around 15:00; Offline
// desks lose their link for a while and send what they held when it
// returns.
type Day struct {
	Desks, Municipalities int
	Requests              int
	Length                time.Duration
	Offline               int
}

// NationalDay is Portugal's network of Citizen Spots (765 desks in 308
// municipalities), each desk serving about 60 requests a day, the day
// compressed to ten minutes.
var NationalDay = Day{Desks: 765, Municipalities: 308, Requests: 765 * 60, Length: 10 * time.Minute, Offline: 8}

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
func (p Day) hourOfDay(at time.Duration) float64 {
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
func (p Day) Plan(c *events.Catalog, seed int64) []Submission {
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
	deskCum := make([]float64, p.Desks+1)
	for i := range p.Desks {
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
	for len(outages) < min(p.Offline, p.Desks) {
		from := time.Duration(rng.Float64() * 0.7 * float64(p.Length))
		outages[rng.IntN(p.Desks)] = outage{from, from + time.Duration((0.1+0.1*rng.Float64())*float64(p.Length))}
	}
	subs := make([]Submission, p.Requests)
	for n := range subs {
		when := at((float64(n) + rng.Float64()) / float64(p.Requests))
		d := sort.SearchFloat64s(deskCum, rng.Float64()*deskCum[p.Desks]) - 1
		d = min(max(d, 0), p.Desks-1)
		if o, ok := outages[d]; ok && when >= o.from && when < o.to {
			when = o.to // held at the desk until its link is back
		}
		svc := services[sort.SearchFloat64s(svcCum, rng.Float64()*total)]
		body, _ := json.Marshal(map[string]any{
			"service_code": svc.Code,
			"citizen":      map[string]string{"national_id": fmt.Sprintf("%08d", 30000000+n), "name": fmt.Sprintf("Citizen %d", n)},
			"attributes":   svc.SampleAnswers(n),
		})
		subs[n] = Submission{N: n, Desk: d, Body: body, Service: svc.Code, At: when}
	}
	slices.SortStableFunc(subs, func(a, b Submission) int { return int(a.At - b.At) })
	return subs
}
