package gateway

import (
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/modelslot/modelslot"
)

// buckets is the resolution of a traffic split: shares are laid out on
// [0, buckets), so a split is exact to 0.01%.
const buckets = 10000

// snapshot is the immutable routing state every request reads through an
// atomic pointer: a control-plane change builds a new one and swaps it in.
type snapshot struct {
	apps map[string]*appRoute
	// only is set when there is exactly one app: no lookup needed.
	only *appRoute
}

type appRoute struct {
	name       string
	generation int64
	genSuffix  string // "." + generation, as stamped into cookies
	// stickyHeader is the canonical header whose value pins a user;
	// stickyUser hashes the OpenAI "user" field instead.
	stickyHeader string
	stickyUser   bool
	prod         *slotRoute
	slots        map[string]*slotRoute
	// ranges lays the non-production shares on [0, buckets) in slot-name
	// order; production takes [ranges[len-1].end, buckets).
	ranges []bucketRange
	mirror *mirrorRule
	// notReady holds the slots whose deployment has no healthy backend yet
	// (restoring after a restart) and why; they get no traffic.
	notReady map[string]string
}

type bucketRange struct {
	end  int // exclusive
	slot *slotRoute
}

// slotRoute is one slot with a deployment, as the hot path needs it.
type slotRoute struct {
	app      string
	name     string
	revision string
	backend  *Backend
	meter    *slotMeter
	// header values, allocated once per snapshot rather than per request
	slotHdr    []string
	versionHdr []string
	rewrite    *rewriter
}

// RouteApp is what the engine publishes for one app: its state and, for
// every slot with a deployment, the backend that serves it.
type RouteApp struct {
	App      *modelslot.App
	Backends map[string]*Backend
	// NotReady names the slots whose deployment is not served yet (its
	// backend is starting) and why: their share goes to production, and a
	// request for one of them gets a 503 that says so.
	NotReady map[string]string
}

func (g *Gateway) buildSnapshot(apps []RouteApp) *snapshot {
	s := &snapshot{apps: make(map[string]*appRoute, len(apps))}
	for _, ra := range apps {
		a := ra.App
		ar := &appRoute{
			name:       a.Name,
			generation: a.Routing.Generation,
			genSuffix:  "." + strconv.FormatInt(a.Routing.Generation, 10),
			slots:      make(map[string]*slotRoute, len(a.Slots)),
		}
		if len(ra.NotReady) > 0 {
			ar.notReady = ra.NotReady
		}
		switch {
		case a.StickyKey == "user":
			ar.stickyUser = true
		case strings.HasPrefix(a.StickyKey, "header:"):
			ar.stickyHeader = textproto.CanonicalMIMEHeaderKey(strings.TrimPrefix(a.StickyKey, "header:"))
		}
		for _, sl := range a.Slots {
			b := ra.Backends[sl.Name]
			if sl.Deployment == nil || b == nil {
				continue
			}
			sr := &slotRoute{
				app:        a.Name,
				name:       sl.Name,
				revision:   sl.Deployment.Revision,
				backend:    b,
				meter:      g.meter.slot(a.Name, sl.Name),
				slotHdr:    []string{sl.Name},
				versionHdr: []string{sl.Deployment.Label()},
				rewrite:    newRewriter(a.Name, sl.Deployment),
			}
			sr.meter.bindRevision(sl.Deployment.Revision, sl.Deployment.Version)
			ar.slots[sl.Name] = sr
			if sl.Name == modelslot.Production {
				ar.prod = sr
			}
		}
		end := 0
		for _, rule := range a.Routing.Rules {
			sr := ar.slots[rule.Slot]
			n := int(math.Round(rule.Percent * buckets / 100))
			if sr == nil || n <= 0 {
				continue
			}
			end += n
			if end > buckets {
				end = buckets
			}
			ar.ranges = append(ar.ranges, bucketRange{end: end, slot: sr})
		}
		if m := a.Mirror; m != nil && m.Percent > 0 {
			if sr := ar.slots[m.Slot]; sr != nil {
				ar.mirror = &mirrorRule{slot: sr, threshold: int(math.Round(m.Percent * buckets / 100))}
			}
		}
		s.apps[a.Name] = ar
	}
	if len(s.apps) == 1 {
		for _, ar := range s.apps {
			s.only = ar
		}
	}
	return s
}

// pick returns the slot for a bucket in [0, buckets).
func (a *appRoute) pick(bucket int) *slotRoute {
	for _, r := range a.ranges {
		if bucket < r.end {
			return r.slot
		}
	}
	return a.prod
}

// lookup finds the slot named in a routing override ("self" = production).
func (a *appRoute) lookup(name string) *slotRoute {
	if name == modelslot.Self || name == modelslot.Production {
		return a.prod
	}
	return a.slots[name]
}

// appFor picks the app of a request: the only app, else the
// X-Modelslot-App header, else a first path segment naming an app
// (/chat/v1/...), else the app named "default".
func (s *snapshot) appFor(r *http.Request) (*appRoute, string) {
	if s.only != nil {
		return s.only, r.URL.Path
	}
	if name := r.Header.Get("X-Modelslot-App"); name != "" {
		return s.apps[name], r.URL.Path
	}
	p := r.URL.Path
	if len(p) > 1 {
		seg := p[1:]
		if i := strings.IndexByte(seg, '/'); i > 0 {
			if a := s.apps[seg[:i]]; a != nil {
				return a, seg[i:]
			}
		}
	}
	return s.apps["default"], p
}

// fnv1a hashes a sticky key to a bucket; the same key always lands in the
// same bucket, so raising a slot's share only moves users from production
// into it and lowering it moves exactly those users back.
func fnv1a(s string) int {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return int(h % buckets)
}

// canonical is a slot name as the app's state spells it ("self" is
// production).
func (a *appRoute) canonical(name string) string {
	if name == modelslot.Self {
		return modelslot.Production
	}
	return name
}

// notReadyError answers a request for a slot whose deployment is not
// served yet.
type notReadyError struct{ app, slot, why string }

func (e notReadyError) Error() string {
	return "slot " + e.slot + " of app " + e.app + " is not ready yet (" + e.why + "): try again shortly"
}
