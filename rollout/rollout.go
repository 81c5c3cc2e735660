package rollout

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// State is where a rollout is in its life.
type State string

const (
	Running     State = "running"
	Paused      State = "paused"
	RollingBack State = "rolling_back"
	Succeeded   State = "succeeded"
	// Failed: the rollout could not go on and its rollback could not
	// complete either (or the plan could not be loaded); Reason says what
	// an operator must check.
	Failed     State = "failed"
	RolledBack State = "rolled_back"
	Aborted    State = "aborted"
)

// Active reports whether the rollout still owns its app.
func (s State) Active() bool { return s == Running || s == Paused || s == RollingBack }

// Rollout is one attempt to move the deployment of Slot into production.
// It is the document persisted (whole) after every transition.
type Rollout struct {
	ID   string `json:"id"`
	App  string `json:"app"`
	Slot string `json:"slot"`
	// State and Reason: why the rollout is paused, why it rolled back...
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Actor started the rollout.
	Actor string `json:"actor,omitempty"`

	Plan       *Plan  `json:"plan"`
	PlanSource string `json:"planSource"`

	// CandidateRevision was in Slot and BaselineRevision in production
	// when the rollout started.
	CandidateRevision string `json:"candidateRevision,omitempty"`
	BaselineRevision  string `json:"baselineRevision,omitempty"`

	// Step is the index of the current step (len(Plan.Steps) when done).
	Step    int        `json:"step"`
	Current *StepState `json:"current,omitempty"`
	// Traffic is the candidate slot's share as the rollout last set it.
	Traffic float64 `json:"traffic"`
	// Cold: the traffic changed since the last judged phase began, so the
	// next one starts with a warm-up.
	Cold bool `json:"cold,omitempty"`
	// Warnings are what an operator should know about the start: the
	// candidate is the version production serves, or served before.
	Warnings []string `json:"warnings,omitempty"`

	// Swap is the swap into production; Swapped once it is known to have
	// happened.
	Swap    *SwapOp `json:"swap,omitempty"`
	Swapped bool    `json:"swapped"`
	// Promoted: an operator skipped the rest of the analysis.
	Promoted bool `json:"promoted,omitempty"`

	Verdicts  []VerdictRecord `json:"verdicts,omitempty"`
	Overrides []Override      `json:"overrides,omitempty"`
	Rollback  *Rollback       `json:"rollback,omitempty"`

	// LastError is the latest failed platform or store call, retried at
	// every interval; cleared once a call succeeds.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`

	PausedAt   time.Time `json:"pausedAt,omitzero"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// StepState is the progress of the current step.
type StepState struct {
	Index     int       `json:"index"`
	Kind      string    `json:"kind"`
	StartedAt time.Time `json:"startedAt"`
	// PauseEntered: a pause step has paused the rollout; resuming ends it.
	PauseEntered bool      `json:"pauseEntered,omitempty"`
	PauseUntil   time.Time `json:"pauseUntil,omitzero"`
	// Percent is a ramp's current level; Levels counts the levels set.
	Percent float64 `json:"percent,omitempty"`
	Levels  int     `json:"levels,omitempty"`
	// Phase is the judged part of a bake, a watch or a ramp level.
	Phase *Phase `json:"phase,omitempty"`
}

// Phase is a judged window: gates look at it every interval.
type Phase struct {
	StartedAt time.Time `json:"startedAt"`
	// Warmup is the phase's warm-up, when the traffic changed before it.
	Warmup *PhaseWarmup `json:"warmup,omitempty"`
	// JudgedFrom is when the judged part began: StartedAt, or the end of
	// the warm-up (zero while it lasts).
	JudgedFrom time.Time `json:"judgedFrom,omitzero"`
	// Span is the deadline's distance: a bake's max, a ramp's interval.
	Span modelslot.Duration `json:"span"`
	// MinDuration and MinRequests: a pass needs this much judged time and
	// this many judged candidate requests.
	MinDuration modelslot.Duration `json:"minDuration"`
	MinRequests int64              `json:"minRequests,omitempty"`
	// Deadline is when OnInconclusive decides; Extended once it moved.
	Deadline time.Time `json:"deadline"`
	Extended bool      `json:"extended,omitempty"`
	// AwaitingDecision: inconclusive at the deadline with policy pause.
	AwaitingDecision bool `json:"awaitingDecision,omitempty"`
	// Cursor: the metric data before it has been given to the gates.
	Cursor time.Time `json:"cursor"`
	// Judged lists the start of every bucket given to the gates (sources
	// with buckets only: Azure Monitor's minutes, Prometheus steps), so
	// that a verdict names the minutes it stands on.
	Judged []time.Time `json:"judged,omitempty"`
	// CandidateRequests and BaselineRequests are the judged requests
	// (after the warm-up).
	CandidateRequests int64       `json:"candidateRequests"`
	BaselineRequests  int64       `json:"baselineRequests"`
	Looks             int         `json:"looks"`
	LookedAt          time.Time   `json:"lookedAt,omitzero"`
	Gates             []GateState `json:"gates"`
	// Verdict and Reason of the latest look, all gates together.
	Verdict Verdict `json:"verdict,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	// CandidateRate is the candidate's judged requests per second so far.
	CandidateRate float64 `json:"candidateRate"`
	// QuietSince is the end of the latest data window with a candidate
	// request (or the phase's start); QuietLooks counts the looks since
	// whose new data had none.
	QuietSince time.Time `json:"quietSince"`
	QuietLooks int       `json:"quietLooks,omitempty"`
	// Notice is what an operator should check now, e.g. that no candidate
	// request arrives.
	Notice string `json:"notice,omitempty"`
}

// PhaseWarmup is the progress of a phase's warm-up.
type PhaseWarmup struct {
	// Until is when its duration ends; Requests is the candidate requests
	// it needs.
	Until    time.Time `json:"until"`
	Requests int64     `json:"requests"`
	// The requests it saw: shown, not judged.
	CandidateRequests int64 `json:"candidateRequests"`
	BaselineRequests  int64 `json:"baselineRequests"`
	// EndedAt is zero while it lasts.
	EndedAt time.Time `json:"endedAt,omitzero"`
}

// Warming reports whether the phase is still in its warm-up.
func (ph *Phase) Warming() bool { return ph.Warmup != nil && ph.Warmup.EndedAt.IsZero() }

// judgedStart is when the judged part began (the phase's start while it
// warms up, for the deadline's sake).
func (ph *Phase) judgedStart() time.Time {
	if !ph.JudgedFrom.IsZero() {
		return ph.JudgedFrom
	}
	return ph.StartedAt
}

// GateState is one gate's persisted state and its latest result.
type GateState struct {
	Kind   string          `json:"kind"`
	State  json.RawMessage `json:"state,omitempty"`
	Result *GateResult     `json:"result,omitempty"`
}

// VerdictRecord is one decision of a judged phase, with its evidence.
type VerdictRecord struct {
	Time     time.Time `json:"time"`
	Step     int       `json:"step"`
	StepKind string    `json:"stepKind"`
	// Percent is the candidate's share when the verdict was reached.
	Percent float64 `json:"percent"`
	Verdict Verdict `json:"verdict"`
	// Decision is what the rollout did: continue, rollback, pause,
	// extend, promoted.
	Decision          string       `json:"decision"`
	Reason            string       `json:"reason"`
	From              time.Time    `json:"from"`
	To                time.Time    `json:"to"`
	CandidateRequests int64        `json:"candidateRequests"`
	BaselineRequests  int64        `json:"baselineRequests"`
	Gates             []GateResult `json:"gates,omitempty"`
	Actor             string       `json:"actor,omitempty"`
	// Judged is the phase's Judged at the verdict: the buckets (minutes
	// on Azure) the gates saw, each starting at or after From.
	Judged []time.Time `json:"judged,omitempty"`
}

// JudgedSpan names the buckets the verdict stands on, e.g. " [judged 10
// buckets, 17:11 to 17:20 UTC]"; "" for a source of raw samples.
func (v VerdictRecord) JudgedSpan() string {
	if len(v.Judged) == 0 {
		return ""
	}
	first, last := v.Judged[0].UTC(), v.Judged[len(v.Judged)-1].UTC()
	layout := "15:04"
	if first.Second() != 0 || last.Second() != 0 {
		layout = "15:04:05"
	}
	if len(v.Judged) == 1 {
		return fmt.Sprintf(" [judged 1 bucket, %s UTC]", first.Format(layout))
	}
	return fmt.Sprintf(" [judged %d buckets, %s to %s UTC]", len(v.Judged), first.Format(layout), last.Format(layout))
}

// Override is an operator's action on the rollout.
type Override struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // pause, resume, promote, abort
	Actor  string    `json:"actor"`
	Step   int       `json:"step"`
	Reason string    `json:"reason,omitempty"`
}

// SwapOp tracks one Platform.Swap so that a restart never repeats it:
// RequestedAt is persisted before the call, and a restart that finds it
// without Done looks at the platform's swap history and the slots'
// revisions to learn whether it happened.
type SwapOp struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Revisions in Source and Target before the swap.
	SourceRevision string `json:"sourceRevision"`
	TargetRevision string `json:"targetRevision"`
	// HistoryMark is the newest swap record id before the request: a
	// record of this swap has a larger id.
	HistoryMark int64     `json:"historyMark"`
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	Attempts    int       `json:"attempts"`
	Done        bool      `json:"done"`
	RecordID    int64     `json:"recordId,omitempty"`
	Error       string    `json:"error,omitempty"`
}

// Rollback is the progress of a rollback.
type Rollback struct {
	// State the rollout ends in: rolled_back or aborted.
	Final     State     `json:"final"`
	Reason    string    `json:"reason"`
	Actor     string    `json:"actor,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	// SwapBack is set when the candidate had been swapped in.
	SwapBack     *SwapOp `json:"swapBack,omitempty"`
	TrafficReset bool    `json:"trafficReset"`
}

// Brief returns the status-view summary.
func (r *Rollout) Brief() *modelslot.RolloutBrief {
	return &modelslot.RolloutBrief{ID: r.ID, Slot: r.Slot, State: string(r.State), Step: r.StepSummary()}
}

// StepSummary says where the rollout is: "3/6 bake 10m (4m12s, 1234 requests)".
func (r *Rollout) StepSummary() string {
	n := len(r.Plan.Steps)
	if r.Step >= n {
		return fmt.Sprintf("%d/%d done", n, n)
	}
	s := fmt.Sprintf("%d/%d %s", r.Step+1, n, r.Plan.Steps[r.Step].Kind())
	c := r.Current
	if c == nil || c.Index != r.Step {
		return s
	}
	if c.Kind == KindRampUp {
		s += fmt.Sprintf(" at %g%%", c.Percent)
	}
	if ph := c.Phase; ph != nil {
		judged := r.UpdatedAt
		if len(ph.Judged) > 0 {
			judged = ph.Cursor // a source that reports late has judged less than the wall time
		}
		s += fmt.Sprintf(" (%v judged, %d candidate requests", judged.Sub(ph.StartedAt).Truncate(time.Second), ph.CandidateRequests)
		if ph.Verdict != "" {
			s += ", " + string(ph.Verdict)
		}
		s += ")"
	}
	return s
}

// Describe says in plain words what the rollout did and where it is.
func (r *Rollout) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Rollout %s of app %q moves slot %q", r.ID, r.App, r.Slot)
	if r.CandidateRevision != "" {
		fmt.Fprintf(&b, " (revision %s)", r.CandidateRevision)
	}
	fmt.Fprintf(&b, " into production")
	if r.Actor != "" {
		fmt.Fprintf(&b, "; started by %s", r.Actor)
	}
	fmt.Fprintf(&b, " at %s.\n", r.CreatedAt.UTC().Format(time.RFC3339))
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", sentence(w))
	}
	switch r.State {
	case Running:
		fmt.Fprintf(&b, "It is running step %s; the candidate has %g%% of the traffic.\n", r.StepSummary(), r.Traffic)
	case Paused:
		fmt.Fprintf(&b, "It is paused at step %s: %s\n", r.StepSummary(), sentence(r.Reason))
		b.WriteString("Resume it to go on, promote it to skip the rest of the analysis, or abort it to roll back.\n")
	case RollingBack:
		fmt.Fprintf(&b, "It is rolling back: %s\n", sentence(r.Reason))
	case Succeeded:
		fmt.Fprintf(&b, "It succeeded: %s\n", sentence(r.Reason))
	case RolledBack, Aborted:
		fmt.Fprintf(&b, "It was %s: %s\n", strings.ReplaceAll(string(r.State), "_", " "), sentence(r.Reason))
	case Failed:
		fmt.Fprintf(&b, "It failed: %s\n", sentence(r.Reason))
	}
	if ph := r.currentPhase(); ph != nil && r.State.Active() && ph.Reason != "" {
		// What the gates wait for: the latest look, in their own words.
		fmt.Fprintf(&b, "Latest look (%d so far): %s\n", ph.Looks, sentence(ph.Reason))
	}
	if ph := r.currentPhase(); ph != nil && r.State.Active() && ph.Notice != "" {
		fmt.Fprintf(&b, "Check: %s\n", ph.Notice)
	}
	if r.Swapped {
		b.WriteString("The candidate is in production (swapped).\n")
	} else if r.Rollback != nil && r.Rollback.SwapBack != nil && r.Rollback.SwapBack.Done {
		b.WriteString("The candidate was swapped in, then swapped back out.\n")
	}
	for _, v := range r.Verdicts {
		fmt.Fprintf(&b, "- %s step %d (%s at %g%%): %s -> %s: %s%s\n", v.Time.UTC().Format("15:04:05"), v.Step+1, v.StepKind, v.Percent, v.Verdict, v.Decision, v.Reason, v.JudgedSpan())
	}
	for _, o := range r.Overrides {
		fmt.Fprintf(&b, "- %s %s by %s at step %d", o.Time.UTC().Format("15:04:05"), o.Action, o.Actor, o.Step+1)
		if o.Reason != "" {
			fmt.Fprintf(&b, ": %s", o.Reason)
		}
		b.WriteString("\n")
	}
	if r.LastError != "" {
		fmt.Fprintf(&b, "Last error (retrying): %s\n", r.LastError)
	}
	return b.String()
}

func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no reason recorded)."
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// record converts the rollout to its store record.
func (r *Rollout) record() (*modelslot.RolloutRecord, error) {
	doc, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &modelslot.RolloutRecord{
		ID: r.ID, App: r.App, Slot: r.Slot, State: string(r.State), Active: r.State.Active(),
		Doc: doc, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}, nil
}

// decodeRollout reads a stored rollout and re-parses its plan, so that
// gates are built again.
func decodeRollout(rec *modelslot.RolloutRecord) (*Rollout, error) {
	var r Rollout
	if err := json.Unmarshal(rec.Doc, &r); err != nil {
		return nil, fmt.Errorf("decode rollout %s: %w", rec.ID, err)
	}
	p, err := ParsePlan([]byte(r.PlanSource))
	if err != nil {
		return &r, fmt.Errorf("rollout %s: its plan no longer parses: %w", rec.ID, err)
	}
	r.Plan = p
	return &r, nil
}

// clone returns a deep copy for callers outside the runner.
func (r *Rollout) clone() *Rollout {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	var c Rollout
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	c.Plan = r.Plan // immutable after parsing
	return &c
}

// GetPhase returns the step's judged phase, or nil (nil-safe).
func (c *StepState) GetPhase() *Phase {
	if c == nil {
		return nil
	}
	return c.Phase
}
