package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelslot/modelslot/internal/pgtest"
)

// ReplicasFig is the cost of running replicas on PostgreSQL.
type ReplicasFig struct {
	// RPS per target: the SQLite daemon and each of two replicas, closed
	// loop, in interleaved rounds.
	SQLiteRPS  spread `json:"sqliteRps"`
	ReplicaRPS spread `json:"replicaRps"`
	// Ratio is the median of each round's replica/SQLite rate.
	Ratio spread `json:"ratio"`
	// Propagation: from an admin change through one replica's API
	// returning to the other replica's routing showing it.
	Changes        int     `json:"changes"`
	PropagationP50 float64 `json:"propagationMsP50"`
	PropagationP99 float64 `json:"propagationMsP99"`
	PropagationMax float64 `json:"propagationMsMax"`
	Skipped        string  `json:"skipped,omitempty"`
}

// replicasScenario starts a throwaway PostgreSQL and two `modelslot serve`
// replicas on it beside the SQLite daemon, measures saturation throughput
// of each in interleaved rounds, then times admin changes made through
// replica A until replica B routes by them.
func replicasScenario(ctx context.Context, e *env, p params) (*ReplicasFig, error) {
	fig := &ReplicasFig{}
	bin, err := pgtest.BinDir()
	if err != nil {
		fig.Skipped = err.Error()
		return fig, nil
	}
	c, err := pgtest.Start(bin)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	dsn := c.URL("postgres")
	var reps []*target
	var admins []string
	for i, name := range []string{"replica-a", "replica-b"} {
		listen, _ := freePort()
		admin, _ := freePort()
		data := filepath.Join(e.opts.Dir, name+"-data")
		cfg := serveConfig(data, listen, admin, e.sims)
		if i > 0 {
			cfg = cfg[:strings.Index(cfg, "apps:")] // the first declares the app
		}
		cfg += "store: " + dsn + "\nreplica: " + name + "\n"
		path := filepath.Join(e.opts.Dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		pr, err := startProc(e.opts.Dir, name, nil, e.pinned("0", []string{e.bin, "serve", "--config", path, "--log-level", "warn"})...)
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		t := &target{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", listen), proc: pr}
		if err := waitHTTP(ctx, t.URL()+"/v1/chat/completions", pr); err != nil {
			return nil, err
		}
		reps = append(reps, t)
		admins = append(admins, fmt.Sprintf("http://127.0.0.1:%d", admin))
	}
	base := e.target("modelslot")
	var sq, rep, ratios []float64
	for round := range p.Rounds {
		order := []*target{base, reps[0], reps[1]}
		if round%2 == 1 {
			order = []*target{reps[1], reps[0], base}
		}
		rates := map[string]float64{}
		for _, t := range order {
			r := runLoad(ctx, t.Addr, p.SatConns, 0, p.Duration)
			rates[t.Name] = r.rps()
		}
		sq = append(sq, rates["modelslot"])
		for _, t := range reps {
			rep = append(rep, rates[t.Name])
			ratios = append(ratios, rates[t.Name]/rates["modelslot"])
		}
	}
	fig.SQLiteRPS, fig.ReplicaRPS, fig.Ratio = spreadOf(sq), spreadOf(rep), spreadOf(ratios)

	tokens := make([]string, 2)
	for i, t := range reps {
		b, err := os.ReadFile(filepath.Join(e.opts.Dir, t.Name+"-data", "admin.token"))
		if err != nil {
			return nil, err
		}
		tokens[i] = strings.TrimSpace(string(b))
	}
	var ms []float64
	for i := range 100 {
		pct := 10 + i%2
		start := time.Now()
		if err := adminDo(ctx, admins[0], tokens[0], http.MethodPut, "/api/v1/apps/default/traffic", fmt.Sprintf(`{"rules":[{"slot":"staging","percent":%d}]}`, pct), nil); err != nil {
			return nil, err
		}
		for {
			var st struct {
				Routing struct {
					Rules []struct {
						Percent float64 `json:"percent"`
					} `json:"rules"`
				} `json:"routing"`
			}
			if err := adminDo(ctx, admins[1], tokens[1], http.MethodGet, "/api/v1/apps/default", "", &st); err == nil && len(st.Routing.Rules) == 1 && st.Routing.Rules[0].Percent == float64(pct) {
				break
			}
			if time.Since(start) > 10*time.Second {
				return nil, fmt.Errorf("replica-b did not follow change %d within 10s", i+1)
			}
			time.Sleep(time.Millisecond)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	fig.Changes = len(ms)
	h := newHist()
	for _, v := range ms {
		h.RecordValue(int64(v * 1000))
	}
	fig.PropagationP50, fig.PropagationP99, fig.PropagationMax = pct(h, 50)/1000, pct(h, 99)/1000, float64(h.Max())/1000
	return fig, nil
}

func adminDo(ctx context.Context, base, token, method, path, body string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
