// Package gates adds rollout gate kinds that judge a candidate by sending
// it traffic or by watching its shadow traffic: loadtest, eval and shadow.
// Import it for its side effect: each kind registers with rollout.RegisterGate.
package gates

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/rollout"
)

// Gate kinds.
const (
	KindLoadtest = "loadtest"
	KindEval     = "eval"
	KindShadow   = "shadow"
)

func init() {
	rollout.RegisterGate(KindLoadtest, newLoadtestGate)
	rollout.RegisterGate(KindEval, newEvalGate)
	rollout.RegisterGate(KindShadow, newShadowGate)
}

// invalid is a plan error about the gate at path.
func invalid(path, format string, args ...any) error {
	return modelslot.Errorf(modelslot.EINVALID, "%s: %s", path, fmt.Sprintf(format, args...))
}

// onceState is the state of a gate that runs once per phase (loadtest,
// eval): its result, handed back at every later look of the same phase.
type onceState struct {
	Verdict  rollout.Verdict `json:"verdict"`
	Reason   string          `json:"reason"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
}

// cached returns the result of an earlier look of this phase.
func cached(in rollout.GateInput) (rollout.GateResult, bool) {
	if len(in.State) == 0 {
		return rollout.GateResult{}, false
	}
	var st onceState
	if err := json.Unmarshal(in.State, &st); err != nil || st.Verdict == "" {
		return rollout.GateResult{}, false
	}
	return rollout.GateResult{Verdict: st.Verdict, Reason: st.Reason, Evidence: st.Evidence, State: in.State}, true
}

// remember makes res the phase's result.
func remember(v rollout.Verdict, reason string, evidence any) (rollout.GateResult, error) {
	ev, err := json.Marshal(evidence)
	if err != nil {
		return rollout.GateResult{}, err
	}
	st, err := json.Marshal(onceState{Verdict: v, Reason: reason, Evidence: ev})
	if err != nil {
		return rollout.GateResult{}, err
	}
	return rollout.GateResult{Verdict: v, Reason: reason, Evidence: ev, State: st}, nil
}

// slotClient sends every request to one slot of one app through the
// gateway: the app header names the app and the routing query parameter
// names the slot, as a user pinned to it would.
type slotClient struct {
	app, slot string
	headers   http.Header
	next      http.RoundTripper
}

func (c slotClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	q := r.URL.Query()
	q.Set(gateway.RoutingParam, c.slot)
	r.URL.RawQuery = q.Encode()
	r.Header.Set("X-Modelslot-App", c.app)
	for k, v := range c.headers {
		r.Header[k] = v
	}
	return c.next.RoundTrip(r)
}

// gatewayClients returns clients for the baseline and the candidate, and a
// function that releases their connections.
func gatewayClients(in rollout.GateInput, conns int) (base, cand *http.Client, done func(), err error) {
	if in.GatewayURL == "" {
		return nil, nil, nil, fmt.Errorf("the gateway's address is unknown: this gate needs the daemon's gateway")
	}
	if _, err := url.Parse(in.GatewayURL); err != nil {
		return nil, nil, nil, fmt.Errorf("gateway address %q: %w", in.GatewayURL, err)
	}
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	baseline := in.Baseline
	if baseline == modelslot.Production {
		baseline = modelslot.Self
	}
	base = &http.Client{Transport: slotClient{app: in.App, slot: baseline, headers: in.GatewayHeaders, next: t}}
	cand = &http.Client{Transport: slotClient{app: in.App, slot: candidateName(in), headers: in.GatewayHeaders, next: t}}
	return base, cand, t.CloseIdleConnections, nil
}

func candidateName(in rollout.GateInput) string {
	if in.Candidate == modelslot.Production {
		return modelslot.Self
	}
	return in.Candidate
}

// check is one comparison of a gate, as its evidence shows it.
type check struct {
	Name    string          `json:"name"`
	Verdict rollout.Verdict `json:"verdict"`
	Value   float64         `json:"value"`
	// Low and High bound Value when the check has an interval (its level
	// is in Note).
	Low   *float64 `json:"low,omitempty"`
	High  *float64 `json:"high,omitempty"`
	Limit string   `json:"limit"`
	N     int      `json:"n,omitempty"`
	Note  string   `json:"note,omitempty"`
}

// combine folds checks into a verdict: any fail fails, all pass passes.
func combine(checks []check) (rollout.Verdict, string) {
	v := rollout.Pass
	var failed, open []string
	for _, c := range checks {
		switch c.Verdict {
		case rollout.Fail:
			v = rollout.Fail
			failed = append(failed, c.Name+" "+c.Note)
		case rollout.Inconclusive:
			if v != rollout.Fail {
				v = rollout.Inconclusive
			}
			open = append(open, c.Name+" "+c.Note)
		}
	}
	switch v {
	case rollout.Fail:
		return v, "failed: " + join(failed)
	case rollout.Inconclusive:
		return v, "not yet decided: " + join(open)
	}
	return v, fmt.Sprintf("all %d checks pass", len(checks))
}

func join(parts []string) string { return strings.Join(parts, "; ") }

func ptr(v float64) *float64 { return &v }
