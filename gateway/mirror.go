package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/modelslot/modelslot"
)

// mirrorRule mirrors a share of production requests to a slot.
type mirrorRule struct {
	slot      *slotRoute
	threshold int // out of buckets
	n         atomic.Uint64
}

// take decides whether this request is mirrored; a counter spreads the
// mirrored share evenly instead of drawing at random.
func (m *mirrorRule) take() bool {
	n := m.n.Add(1)
	return int((n*uint64(m.threshold))%buckets) < m.threshold
}

// mirrorer sends mirrored requests in the background; the user's request
// never waits for it.
type mirrorer struct {
	g    *Gateway
	once sync.Once
}

func newMirrorer(g *Gateway) *mirrorer { return &mirrorer{g: g} }

func (m *mirrorer) submit(app *appRoute, r *http.Request, body []byte, prod modelslot.Sample, prodHead []byte) {
}

func (m *mirrorer) close() {}
