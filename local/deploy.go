package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/host"
)

// Warm-up defaults: models load slowly, so the timeout is long.
const (
	DefaultWarmupPath    = "/health"
	DefaultWarmupTimeout = 5 * time.Minute
	DefaultWarmupRetries = 3
)

// normalize validates a deployment and fills its defaults and revision.
func normalize(d *modelslot.Deployment) error {
	d.URL = strings.TrimSpace(d.URL)
	d.Command = strings.TrimSpace(d.Command)
	switch {
	case d.URL == "" && d.Command == "":
		return modelslot.Errorf(modelslot.EINVALID, "deploy: give the model server's address with --url, or a command to run with --cmd")
	case d.URL != "" && d.Command != "":
		return modelslot.Errorf(modelslot.EINVALID, "deploy: give either --url or --cmd, not both")
	case d.Command != "" && !strings.Contains(d.Command, "{port}"):
		return modelslot.Errorf(modelslot.EINVALID, "deploy: the command must contain {port}, where the daemon puts the port it chose (e.g. --cmd 'modelslot sim --listen 127.0.0.1:{port}')")
	}
	if d.URL != "" && !strings.HasPrefix(d.URL, "http://") && !strings.HasPrefix(d.URL, "https://") {
		return modelslot.Errorf(modelslot.EINVALID, "deploy: --url %q is not valid: give an http:// or https:// address such as http://127.0.0.1:8000", d.URL)
	}
	if d.Warmup.Path == "" {
		d.Warmup.Path = DefaultWarmupPath
	}
	if !strings.HasPrefix(d.Warmup.Path, "/") {
		return modelslot.Errorf(modelslot.EINVALID, "deploy: --warmup-path %q must start with /", d.Warmup.Path)
	}
	for _, st := range d.Warmup.Statuses {
		if st < 100 || st > 599 {
			return modelslot.Errorf(modelslot.EINVALID, "deploy: --warmup-status %d is not an HTTP status", st)
		}
	}
	if d.Warmup.Timeout == 0 {
		d.Warmup.Timeout = modelslot.Duration(DefaultWarmupTimeout)
	}
	if d.Warmup.Retries == 0 {
		d.Warmup.Retries = DefaultWarmupRetries
	}
	switch d.SystemPromptMode {
	case "", "prepend", "replace":
	default:
		return modelslot.Errorf(modelslot.EINVALID, "deploy: systemPromptMode %q is not valid: use prepend or replace", d.SystemPromptMode)
	}
	for k := range d.Settings {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return modelslot.Errorf(modelslot.EINVALID, "deploy: setting name %q is not valid: use letters, digits and _", k)
		}
	}
	for _, h := range d.SecretHeaders {
		if _, ok := d.Headers[h]; !ok {
			return modelslot.Errorf(modelslot.EINVALID, "deploy: secret header %q has no value: set it with --secret-header %s=VALUE", h, h)
		}
	}
	for _, q := range d.SecretQuery {
		if _, ok := d.Query[q]; !ok {
			return modelslot.Errorf(modelslot.EINVALID, "deploy: secret query parameter %q has no value: set it with --secret-query %s=VALUE", q, q)
		}
	}
	d.Revision = d.ComputeRevision()
	return nil
}

// envOf is the environment of a managed process: the deployment's
// settings, then the slot's sticky settings on top.
func envOf(d *modelslot.Deployment, sticky map[string]string) map[string]string {
	env := make(map[string]string, len(d.Settings)+len(sticky))
	maps.Copy(env, d.Settings)
	maps.Copy(env, sticky)
	return env
}

func envKey(env map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(h, "%s=%s\x00", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// startRuntime starts what serves a deployment and waits until it is
// healthy. On failure nothing is left running.
func (e *Engine) startRuntime(ctx context.Context, app, slot string, d *modelslot.Deployment, sticky map[string]string) (*runtime, error) {
	rt := &runtime{revision: d.Revision}
	url := d.URL
	if d.Command != "" {
		if e.host == nil {
			return nil, modelslot.Errorf(modelslot.EINVALID, "this daemon cannot run processes: deploy with --url")
		}
		env := envOf(d, sticky)
		rt.envKey = envKey(env)
		p, err := e.host.Start(ctx, host.Spec{
			ID:      fmt.Sprintf("%s-%s-%s-%d", app, slot, d.Revision, time.Now().UnixNano()),
			Command: d.Command,
			Env:     env,
		})
		if err != nil {
			return nil, modelslot.Wrapf(err, modelslot.EINVALID, "start %q: %v", d.Command, err)
		}
		rt.proc = p
		url = p.URL()
	}
	b, err := e.gw.NewBackend(url, backendView(d))
	if err != nil {
		e.stopProc(rt)
		return nil, err
	}
	rt.backend = b
	if err := e.waitHealthy(ctx, rt, d); err != nil {
		e.stopProc(rt)
		return nil, err
	}
	return rt, nil
}

// backendView is the deployment as its gateway backend sees it. When the
// gateway rewrites answers (the model name), the backend must answer
// uncompressed, whatever encoding the client accepts: the rewrite works on
// the bytes as they pass.
func backendView(d *modelslot.Deployment) *modelslot.Deployment {
	if !d.HasRewrites() {
		return d
	}
	c := *d
	c.Headers = maps.Clone(d.Headers)
	if c.Headers == nil {
		c.Headers = map[string]string{}
	}
	c.Headers["Accept-Encoding"] = "identity"
	return &c
}

func (e *Engine) stopProc(rt *runtime) {
	if rt.proc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	rt.proc.Stop(ctx)
}

// waitHealthy waits until the deployment answers its warm-up path with an
// allowed status.
func (e *Engine) waitHealthy(ctx context.Context, rt *runtime, d *modelslot.Deployment) error {
	err := host.WaitHealthy(ctx, e.clientFor(d), rt.backend.URL(), d.Warmup.Path, d.Warmup.Statuses, d.Warmup.Timeout.D(), rt.proc)
	if err != nil {
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "deployment %s did not become healthy: %v", d.Label(), err)
	}
	return nil
}

// clientFor returns the client that health-checks d: it sends the
// deployment's headers and query parameters too, so that a hosted provider
// that wants its key answers the warm-up as it answers traffic.
func (e *Engine) clientFor(d *modelslot.Deployment) *http.Client {
	if len(d.Headers) == 0 && len(d.Query) == 0 {
		return e.client
	}
	return &http.Client{Transport: withDeployment{base: e.client.Transport, d: d}}
}

type withDeployment struct {
	base http.RoundTripper
	d    *modelslot.Deployment
}

func (t withDeployment) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.d.Headers {
		r.Header.Set(k, v)
	}
	if len(t.d.Query) > 0 {
		q := r.URL.Query()
		for k, v := range t.d.Query {
			q.Set(k, v)
		}
		r.URL.RawQuery = q.Encode()
	}
	return t.base.RoundTrip(r)
}

// ping sends one warm-up request.
func (e *Engine) ping(ctx context.Context, baseURL string, d *modelslot.Deployment) error {
	w := d.Warmup
	path := w.Path
	if path == "" {
		path = DefaultWarmupPath
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.clientFor(d).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", path, errText(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !modelslot.StatusAllowed(w.Statuses, resp.StatusCode) {
		return fmt.Errorf("GET %s answered %d", path, resp.StatusCode)
	}
	return nil
}

func errText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// Deploy implements modelslot.Platform: the new deployment replaces the
// old one only after it is healthy.
func (e *Engine) Deploy(ctx context.Context, app, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error) {
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return nil, err
	}
	s := a.Slot(slot)
	if s == nil {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "app %s has no slot %q (slots: %s): create it with `modelslot slot create %s`", app, slot, strings.Join(a.SlotNames(), ", "), slot)
	}
	if s.PreparedForSwap != "" {
		return nil, errPrepared(s.Name, s.PreparedForSwap)
	}
	d := req.Deployment
	if req.Revision != "" {
		past, err := e.store.Deployment(ctx, app, req.Revision)
		if err != nil {
			return nil, err
		}
		d = *past
	}
	if e.cfg.Shared && strings.TrimSpace(d.Command) != "" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "deploy: this daemon is one of several replicas on a shared store, so it does not run model servers (--cmd): start the server yourself and deploy its address with --url, reachable from every replica (docs/HA.md)")
	}
	if err := normalize(&d); err != nil {
		return nil, err
	}
	if e.cfg.CheckDeployment != nil {
		if err := e.cfg.CheckDeployment(app, slot, &d); err != nil {
			return nil, err
		}
	}
	sticky := maps.Clone(s.StickySettings)
	if len(req.StickySettings) > 0 {
		if sticky == nil {
			sticky = map[string]string{}
		}
		maps.Copy(sticky, req.StickySettings)
	}
	e.mu.RLock()
	old := e.backends[key(app, s.Name)]
	e.mu.RUnlock()
	if s.Deployment != nil && s.Deployment.Revision == d.Revision && maps.Equal(sticky, s.StickySettings) && old != nil {
		// Identical content: nothing to do.
		out := *s
		out.Deployment = s.Deployment.Redacted()
		return &out, nil
	}
	e.emit(ctx, app, "deploy.started", req.Actor, "deploying %s to slot %s", d.Label(), s.Name)
	rt, err := e.startRuntime(ctx, app, s.Name, &d, sticky)
	if err != nil {
		e.emit(ctx, app, "deploy.failed", req.Actor, "deploying %s to slot %s failed; the slot keeps its previous deployment: %s", d.Label(), s.Name, modelslot.ErrorMessage(err))
		if s.Deployment != nil {
			return nil, fmt.Errorf("%w (slot %s keeps serving %s)", err, s.Name, s.Deployment.Label())
		}
		return nil, err
	}
	d.DeployedAt = time.Now().UTC()
	s.Deployment = &d
	s.StickySettings = sticky
	if err := e.store.AddDeployment(ctx, app, s.Name, &d); err != nil {
		e.stopProc(rt)
		return nil, err
	}
	if err := e.commit(ctx, a, nil, map[string]*runtime{key(app, s.Name): rt}); err != nil {
		e.stopProc(rt)
		return nil, err
	}
	e.cancelRestore(app, s.Name) // the new deployment replaces one not restored yet
	e.retire(old)
	e.emit(ctx, app, "deploy.completed", req.Actor, "slot %s now serves %s", s.Name, d.Label())
	out := *s
	out.Deployment = d.Redacted()
	return &out, nil
}
