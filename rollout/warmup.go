package rollout

import (
	"fmt"
	"slices"
	"time"

	"github.com/modelslot/modelslot"
)

// quietLooks is how many looks in a row without a candidate request make
// the phase tell the operator.
const quietLooks = 3

func (r *runner) warmupSpec(j judged) string {
	if j.warmup == nil {
		return "none"
	}
	return j.warmup.String()
}

// noteQuiet follows the looks whose new data (up to end) has no candidate
// request: after quietLooks of them the phase's Notice asks whether
// traffic reaches the gateway. A look whose data is not final yet (the
// cursor did not move) does not count.
func (r *runner) noteQuiet(ph *Phase, j judged, n int64, end time.Time) {
	switch {
	case n > 0:
		ph.QuietSince, ph.QuietLooks, ph.Notice = end, 0, ""
		return
	case !end.After(ph.Cursor):
		return
	}
	if ph.QuietSince.IsZero() {
		ph.QuietSince = ph.StartedAt
	}
	ph.QuietLooks++
	if ph.QuietLooks < quietLooks {
		return
	}
	ph.Notice = fmt.Sprintf("no %s requests for %v: is traffic reaching the gateway?", slotRole(j), end.Sub(ph.QuietSince).Round(time.Second))
	if j.candidate == r.doc.Slot && r.doc.Traffic == 0 {
		ph.Notice += fmt.Sprintf(" (slot %q has 0%% of the traffic)", j.candidate)
	}
}

func slotRole(j judged) string {
	if j.candidate == modelslot.Production {
		return "production (candidate)"
	}
	return "candidate"
}

// warmUp takes the phase's warm-up off the start of the new data
// [ph.Cursor's old value, end): it counts those requests in ph.Warmup and
// returns the data after the warm-up, which the gates judge. The warm-up
// ends at the later of its Until and the arrival of its last needed
// candidate request; a bucket that begins before that instant belongs to
// the warm-up.
func warmUp(ph *Phase, cand, base modelslot.Series, end time.Time) (modelslot.Series, modelslot.Series) {
	w := ph.Warmup
	if w == nil || !w.EndedAt.IsZero() {
		return cand, base
	}
	at, ok := warmupEnd(w, cand)
	if !ok || at.After(end) {
		w.CandidateRequests += requests(cand)
		w.BaselineRequests += requests(base)
		return modelslot.Series{Slot: cand.Slot, Complete: true}, modelslot.Series{Slot: base.Slot, Complete: true}
	}
	cw, cj := split(cand, at)
	bw, bj := split(base, at)
	w.CandidateRequests += requests(cw)
	w.BaselineRequests += requests(bw)
	w.EndedAt, ph.JudgedFrom = at, at
	ph.QuietSince = maxTime(ph.QuietSince, at)
	ph.Deadline = at.Add(ph.Span.D())
	return cj, bj
}

// warmupEnd returns when the warm-up ends given the candidate's new data,
// or false if its requests are not all there yet.
func warmupEnd(w *PhaseWarmup, cand modelslot.Series) (time.Time, bool) {
	need := w.Requests - w.CandidateRequests
	if need <= 0 {
		return w.Until, true
	}
	// Arrival times: a sample's own, a bucket's end for all its requests.
	type arrival struct {
		t time.Time
		n int64
	}
	var arr []arrival
	for _, s := range cand.Samples {
		arr = append(arr, arrival{s.Time.Add(time.Nanosecond), 1})
	}
	for _, b := range cand.Buckets {
		arr = append(arr, arrival{b.Start.Add(b.Grain), b.Requests})
	}
	slices.SortFunc(arr, func(a, b arrival) int { return a.t.Compare(b.t) })
	for _, a := range arr {
		if need -= a.n; need <= 0 {
			return maxTime(w.Until, a.t), true
		}
	}
	return time.Time{}, false
}

// split cuts s at t: the samples before t and the buckets that begin
// before t, then the rest.
func split(s modelslot.Series, t time.Time) (before, after modelslot.Series) {
	before = modelslot.Series{Slot: s.Slot, Complete: true}
	after = modelslot.Series{Slot: s.Slot, Complete: true}
	for _, x := range s.Samples {
		if x.Time.Before(t) {
			before.Samples = append(before.Samples, x)
		} else {
			after.Samples = append(after.Samples, x)
		}
	}
	for _, b := range s.Buckets {
		if b.Start.Before(t) {
			before.Buckets = append(before.Buckets, b)
		} else {
			after.Buckets = append(after.Buckets, b)
		}
	}
	return before, after
}
