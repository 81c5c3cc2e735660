// The modelslot dashboard: a single page over the admin API. It polls every
// two seconds, keeps working through daemon restarts (a banner says what is
// wrong and it retries), and asks before every change.
import { lineChart, STYLES } from './chart.js';

const POLL_MS = 2000;
const SAMPLE_PLAN = `# A short canary: 20% for a bake, 50% for a bake, then swap.
name: dashboard-canary
interval: 5s
onInconclusive: pause
analysis:
  minSamples: 50
steps:
  - traffic: 20
  - bake: {duration: 1m, max: 3m}
  - traffic: 50
  - bake: {duration: 1m, max: 3m}
  - swap
`;

// ---------- small DOM helpers (text only: never innerHTML) ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const pct = (v) => `${+Number(v).toFixed(2)}%`;
// Dates and times are ISO 8601 in the browser's time zone, with the zone:
// 2026-12-04 17:07:53 UTC+01:00 (UTC when the offset is zero).
const two = (n) => String(n).padStart(2, '0');
function zone(d) {
  const off = -d.getTimezoneOffset();
  if (off === 0) return 'UTC';
  const a = Math.abs(off);
  return `UTC${off < 0 ? '−' : '+'}${two(Math.floor(a / 60))}:${two(a % 60)}`;
}
export function isoTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 1970) return '—';
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${zone(d)}`;
}
const clock = isoTime;
const when = isoTime;
const words = (s) => String(s || '').replaceAll('_', ' ');
const ms = (v) => (v >= 1000 ? `${+(v / 1000).toFixed(2)} s` : `${+v.toFixed(v < 10 ? 1 : 0)} ms`);
const num = (v, d = 2) => `${+Number(v).toFixed(d)}`;
const compactFmt = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 2 });
const compact = (v) => compactFmt.format(v);

function depLabel(d) {
  if (!d) return 'no deployment';
  return d.version ? `${d.version} (revision ${d.revision})` : `revision ${d.revision}`;
}

// ---------- API ----------

class NetError extends Error {}

async function api(method, path, body) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    opts.headers['X-Modelslot-CSRF'] = '1';
    opts.headers['X-Modelslot-Actor'] = 'dashboard';
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new NetError(`cannot reach the daemon (${e.message})`);
  }
  if (res.status === 401) {
    location.assign('/ui/login');
    throw new Error('your session has ended: sign in again');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(data?.error?.message || `the daemon answered ${res.status} ${res.statusText}`);
    err.status = res.status;
    if (res.status >= 500) throw Object.assign(new NetError(err.message), { status: res.status });
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;

// ---------- confirmation dialog ----------

function confirmAction(title, text, okLabel) {
  const dlg = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel || 'Confirm';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    $('confirm-cancel').focus();
  });
}

// act asks, calls the API and reports in out (an element with role=status).
async function act(out, { title, text, ok, method, path, body, done }) {
  // The form may be rebuilt by the next poll: results are kept by id and
  // written to whichever element has it then.
  const say = (msg, cls) => {
    state.results[out.id] = { msg, cls };
    const el = $(out.id) || out;
    el.textContent = msg;
    el.className = `result ${cls}`;
  };
  if (!(await confirmAction(title, text, ok))) {
    say('Cancelled: nothing was changed.', '');
    return;
  }
  say('Working…', '');
  try {
    const res = await api(method, path, body);
    say(done(res), 'ok');
    refresh();
  } catch (e) {
    say(`Refused: ${e.message}`, 'error');
  }
}

// result returns the status line of a form, with its last message.
function result(id) {
  const r = state.results[id];
  return h('p', { class: `result ${r?.cls || ''}`, role: 'status', id }, r?.msg || '');
}

// ---------- state and polling ----------

const state = {
  route: null,
  apps: [],
  statuses: {},
  app: null, // app page: { name, status, active, history, series, events, lastEvent }
  rendered: {},
  results: {},
};

function parseRoute() {
  const m = location.hash.match(/^#\/apps\/([^/]+)/);
  return m ? { page: 'app', app: decodeURIComponent(m[1]) } : { page: 'overview' };
}

let timer = null;
let inflight = null;

async function refresh() {
  if (inflight) return inflight;
  clearTimeout(timer);
  inflight = (async () => {
    try {
      await load();
      setBanner(null);
      $('live').textContent = `Live · updated ${clock(Date.now())}`;
    } catch (e) {
      if (e instanceof NetError) {
        setBanner(`The dashboard cannot reach the modelslot daemon: ${e.message}. It retries every ${POLL_MS / 1000} seconds; what you see may be out of date.`);
        $('live').textContent = 'Offline · retrying';
      } else {
        setBanner(e.message);
      }
    } finally {
      inflight = null;
      timer = setTimeout(refresh, POLL_MS);
    }
  })();
  return inflight;
}

function setBanner(msg) {
  const b = $('banner');
  b.hidden = !msg;
  if (msg) $('banner-text').textContent = msg;
}

async function load() {
  const route = parseRoute();
  const { apps } = await api('GET', '/api/v1/apps');
  // The API lists names; older daemons listed objects.
  state.apps = apps.map((a) => (typeof a === 'string' ? a : a.name));
  renderNav(route);
  if (route.page === 'overview') {
    const sts = await Promise.all(state.apps.map((a) => api('GET', `/api/v1/apps/${enc(a)}`)));
    sts.forEach((s) => (state.statuses[s.app] = s));
    renderOverview();
    return;
  }
  const name = route.app;
  if (!state.app || state.app.name !== name) {
    state.app = { name, lastEvent: 0, events: [] };
    state.results = {};
  }
  const a = state.app;
  const [status, active, history, series] = await Promise.all([
    api('GET', `/api/v1/apps/${enc(name)}`),
    api('GET', `/api/v1/apps/${enc(name)}/rollouts/active`).catch((e) => {
      if (e.status === 404) return null;
      throw e;
    }),
    api('GET', `/api/v1/apps/${enc(name)}/rollouts?limit=20`),
    api('GET', `/ui/api/apps/${enc(name)}/series?minutes=15`),
  ]);
  // Events come in pages after the last one seen; keep the newest few.
  for (let i = 0; i < 20; i++) {
    const { events } = await api('GET', `/api/v1/apps/${enc(name)}/events?after=${a.lastEvent}&limit=500`);
    if (!events.length) break;
    a.lastEvent = events[events.length - 1].id;
    a.events = a.events.concat(events).slice(-15);
    if (events.length < 500) break;
  }
  if (state.app !== a) return; // the route changed meanwhile
  Object.assign(a, { status, active, history: history.rollouts, series });
  renderApp();
}

// renderOnce replaces a section's content only when its data changed, so
// that polling does not steal focus or reset what a user is typing.
function renderOnce(el, key, data, fn) {
  const sig = JSON.stringify(data);
  if (state.rendered[key] === sig && el.childNodes.length) return;
  state.rendered[key] = sig;
  const had = el.contains(document.activeElement) && document.activeElement.id;
  el.replaceChildren(...[fn()].flat(Infinity).filter((c) => c != null && c !== false));
  if (had && $(had)) $(had).focus();
}

// ---------- shared views ----------

function splitBar(st) {
  const parts = st.slots.filter((s) => s.percent > 0);
  const bar = h('div', { class: 'split', role: 'img', 'aria-label': 'Traffic split: ' + parts.map((p) => `${p.slot.name} ${pct(p.percent)}`).join(', ') });
  parts.forEach((p) => {
    const i = st.slots.indexOf(p);
    // Wide segments carry the name, middling ones the share; the text line
    // below names every slot whatever its width.
    const label = p.percent >= 35 ? `${p.slot.name} ${pct(p.percent)}` : p.percent >= 8 ? pct(p.percent) : '';
    const seg = h('div', { class: `seg s${i % STYLES.length}`, title: `${p.slot.name} ${pct(p.percent)}` }, h('span', { class: 'seg-label' }, label));
    seg.style.flexBasis = `${p.percent}%`;
    bar.append(seg);
  });
  const legend = h('p', { class: 'split-text' }, 'Traffic: ',
    st.slots.map((s, i) => h('span', { class: 'split-item' }, h('span', { class: `swatch s${i % STYLES.length}`, 'aria-hidden': 'true' }), `${s.slot.name} ${pct(s.percent)}`)));
  return h('div', { class: 'split-wrap' }, bar, legend);
}

function health(s) {
  if (!s.slot.deployment) return h('span', { class: 'health none' }, '○ empty');
  return s.healthy ? h('span', { class: 'health ok' }, '✓ healthy') : h('span', { class: 'health bad' }, `✗ unhealthy${s.health ? ': ' + s.health : ''}`);
}

function slotsTable(st) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'slots' },
    h('caption', { class: 'sr-only' }, `Slots of ${st.app}`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Slot'), h('th', { scope: 'col' }, 'Deployment'), h('th', { scope: 'col' }, 'Health'), h('th', { scope: 'col' }, 'Traffic'), h('th', { scope: 'col' }, 'In flight'))),
    h('tbody', {}, st.slots.map((s) => h('tr', {},
      h('th', { scope: 'row' }, s.slot.name, s.slot.preparedForSwap ? h('span', { class: 'tag' }, `swap preview with ${s.slot.preparedForSwap}`) : null),
      h('td', { 'data-label': 'Deployment' }, depLabel(s.slot.deployment)),
      h('td', { 'data-label': 'Health' }, health(s)),
      h('td', { class: 'num', 'data-label': 'Traffic' }, pct(s.percent)),
      h('td', { class: 'num', 'data-label': 'In flight' }, String(s.inFlight)))))));
}

function facts(st) {
  const sw = st.lastSwap;
  return h('ul', { class: 'facts' },
    h('li', {}, h('strong', {}, 'Mirroring: '), st.mirror ? `${pct(st.mirror.percent)} of production's requests copied to ${st.mirror.slot}` : 'off'),
    h('li', {}, h('strong', {}, 'Last swap: '), sw ? `${sw.action} ${sw.source} → ${sw.target}, ${words(sw.status)}${sw.phase && sw.status !== 'completed' ? ` (phase ${sw.phase})` : ''}, ${when(sw.finishedAt || sw.startedAt)}${sw.actor ? ` by ${sw.actor}` : ''}${sw.error ? ` — ${sw.error}` : ''}` : 'none yet'),
    h('li', {}, h('strong', {}, 'Rollout: '), st.rollout ? `${st.rollout.id} of ${st.rollout.slot}: ${words(st.rollout.state)}, step ${st.rollout.step}` : 'none running'),
    h('li', {}, h('strong', {}, 'Routing generation: '), String(st.routing.generation)));
}

// ---------- overview ----------

function renderNav(route) {
  const nav = $('app-nav');
  renderOnce(nav, 'nav', [state.apps, route], () =>
    h('ul', {}, state.apps.map((a) => h('li', {}, h('a', { href: `#/apps/${enc(a)}`, 'aria-current': route.app === a ? 'page' : null }, a)))));
}

function renderOverview() {
  const main = $('main');
  const data = state.apps.map((a) => state.statuses[a]).filter(Boolean);
  renderOnce(main, 'main', ['overview', data], () => [
    h('h1', {}, 'Apps'),
    data.length === 0 ? h('p', {}, 'No apps yet: create one with the CLI (modelslot app create) or the config file.') : null,
    data.map((st) => h('section', { class: 'card', 'aria-labelledby': `app-${st.app}` },
      h('h2', { id: `app-${st.app}` }, h('a', { href: `#/apps/${enc(st.app)}` }, st.app), ' ', h('span', { class: 'muted' }, '— open charts, rollout and actions')),
      splitBar(st), slotsTable(st), facts(st))),
  ]);
}

// ---------- app page ----------

function renderApp() {
  const a = state.app;
  const main = $('main');
  if (!main.querySelector(`[data-app="${CSS.escape(a.name)}"]`)) {
    state.rendered = {};
    main.replaceChildren(
      h('div', { 'data-app': a.name },
        h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'All apps'), ' / ', a.name),
        h('h1', {}, `App ${a.name}`),
        h('section', { 'aria-labelledby': 'h-slots' }, h('h2', { id: 'h-slots' }, 'Slots and traffic'), h('div', { id: 'sec-slots' })),
        h('section', { 'aria-labelledby': 'h-charts' }, h('h2', { id: 'h-charts' }, 'Last 15 minutes, per slot (10-second buckets)'), h('div', { id: 'sec-charts', class: 'charts' })),
        h('section', { 'aria-labelledby': 'h-rollout' }, h('h2', { id: 'h-rollout' }, 'Rollout'), h('div', { id: 'sec-rollout' })),
        h('section', { 'aria-labelledby': 'h-actions' }, h('h2', { id: 'h-actions' }, 'Actions'), h('div', { id: 'sec-actions', class: 'actions' })),
        h('section', { 'aria-labelledby': 'h-history' }, h('h2', { id: 'h-history' }, 'Past rollouts'), h('div', { id: 'sec-history' })),
        h('section', { 'aria-labelledby': 'h-events' }, h('h2', { id: 'h-events' }, 'Recent activity'), h('div', { id: 'sec-events' })),
      ));
  }
  const st = a.status;
  renderOnce($('sec-slots'), 'slots', st, () => [splitBar(st), slotsTable(st), facts(st)]);
  renderOnce($('sec-charts'), 'charts', a.series, () => charts(a.series));
  renderOnce($('sec-rollout'), 'rollout', a.active, () => rolloutView(a.active));
  // Forms are rebuilt only when the slots or the rollout's state change.
  const shape = [st.slots.map((s) => [s.slot.name, s.slot.deployment?.revision, s.percent]), a.active?.state || null];
  renderOnce($('sec-actions'), 'actions', shape, () => actions(st, a.active));
  renderOnce($('sec-history'), 'history', a.history.map((r) => [r.id, r.state, r.updatedAt]), () => historyView(a.history));
  renderOnce($('sec-events'), 'events', a.events.map((e) => e.id), () => eventsView(a.events));
}

const METRICS = [
  { key: 'rps', title: 'Requests per second', fmt: (v) => compact(v) },
  { key: 'errorRate', title: 'Error rate', fmt: (v) => `${+(v * 100).toFixed(1)}%` },
  { key: 'latencyP50Ms', title: 'Latency p50', fmt: ms, clip: true },
  { key: 'latencyP99Ms', title: 'Latency p99', fmt: ms, clip: true },
  { key: 'ttftP50Ms', title: 'Time to first token p50', fmt: ms, clip: true },
  { key: 'ttftP95Ms', title: 'Time to first token p95', fmt: ms, clip: true },
  { key: 'outputTokensPerSec', title: 'Output tokens per second', fmt: (v) => compact(v) },
];

function charts(series) {
  const slots = series.slots.filter((s) => s.revisions.length > 0 || s.revision);
  if (!slots.some((s) => s.revisions.length)) {
    return h('p', { class: 'muted' }, 'No requests in the last 15 minutes: the charts appear once traffic flows through the gateway.');
  }
  const label = (s) => `${s.slot}${s.version ? ' ' + s.version : ''}`;
  return METRICS.map((m) => lineChart({
    id: `chart-${m.key}`,
    title: m.title,
    times: series.times,
    fmt: m.fmt,
    clip: m.clip,
    lines: slots.map((s) => ({ label: label(s), values: s[m.key], style: STYLES[series.slots.indexOf(s) % STYLES.length] })),
  }));
}

// ---------- rollout ----------

function describeStep(s) {
  const dur = (d) => (d && d !== '0s' ? d : null);
  if (s.traffic != null) return `Send ${pct(s.traffic)} of traffic to the candidate`;
  if (s.bake) return `Bake: hold the traffic at least ${s.bake.duration}${s.bake.minRequests ? ` and ${s.bake.minRequests} candidate requests` : ''} while the gates judge (deadline ${s.bake.max}${s.bake.onInconclusive ? `, then ${s.bake.onInconclusive} if inconclusive` : ''})`;
  if (s.watch) return `Watch production after the swap at least ${s.watch.duration} (deadline ${s.watch.max}); a fail swaps back`;
  if (s.pause) return dur(s.pause.duration) ? `Pause for ${s.pause.duration} (or until resumed)` : 'Pause until an operator resumes or promotes';
  if (s.swap) return `Swap the candidate into production${s.swap.baselineTraffic ? `, keeping ${pct(s.swap.baselineTraffic)} on the previous deployment` : ''}`;
  if (s.rampUp) {
    const r = s.rampUp;
    return `Ramp up by ${pct(r.changeStep)} every ${r.interval || `${r.changeIntervalInMinutes}m`}${r.min != null ? ` from ${pct(r.min)}` : ''}${r.max != null ? ` to ${pct(r.max)}` : ''}, each level judged`;
  }
  return 'Unknown step';
}

const ACTIVE = ['running', 'paused', 'rolling_back'];

// stepStatus: steps before the rollout's step are done; its own step is
// current only while the rollout is active. A rollout that ended
// elsewhere than at the end stopped at that step (rolled back, aborted
// or failed there), and the steps after it never ran.
export function stepStatus(r, i) {
  if (i < r.step) return 'done';
  if (i > r.step) return r.state === 'succeeded' || ACTIVE.includes(r.state) ? 'pending' : 'skipped';
  if (ACTIVE.includes(r.state)) return r.state === 'rolling_back' ? 'stopped' : 'current';
  return r.state === 'succeeded' ? 'done' : 'stopped';
}

function timeline(r) {
  const stoppedMark = { rolled_back: '✗ rolled back here', rolling_back: '✗ rolling back', aborted: '✗ aborted here', failed: '✗ failed here' }[r.state] || '✗ stopped here';
  return h('ol', { class: 'timeline', 'aria-label': 'Plan steps' }, r.plan.steps.map((s, i) => {
    const status = stepStatus(r, i);
    const mark = { done: '✓ done', current: '▶ current', pending: '○ pending', skipped: '– not run', stopped: stoppedMark }[status];
    let detail = null;
    if (status === 'current' && r.current?.index === i) {
      const c = r.current;
      const ph = c.phase;
      detail = h('div', { class: 'step-detail' },
        `Started ${clock(c.startedAt)}.`,
        c.kind === 'rampUp' ? ` Level ${pct(c.percent)}.` : '',
        c.pauseUntil ? ` Paused until ${clock(c.pauseUntil)}.` : '',
        ph ? phaseProgress(ph) : null,
        ph?.verdict ? h('div', {}, h('strong', {}, `Latest look: ${ph.verdict}. `), ph.reason || '') : null,
        ph?.awaitingDecision ? h('div', { class: 'warn' }, 'Inconclusive at the deadline: waiting for an operator (promote accepts, resume collects more data, abort rolls back).') : null);
    }
    return h('li', { class: `step ${status}`, 'aria-current': status === 'current' ? 'step' : null },
      h('span', { class: 'step-mark' }, mark), h('span', { class: 'step-n' }, `Step ${i + 1}`), h('span', { class: 'step-text' }, describeStep(s)), detail);
  }));
}

// span writes seconds as 1h2m3s.
function span(sec) {
  sec = Math.max(0, Math.round(sec));
  const hh = Math.floor(sec / 3600), mm = Math.floor((sec % 3600) / 60), ss = sec % 60;
  return `${hh ? `${hh}h` : ''}${hh || mm ? `${mm}m` : ''}${ss}s`;
}

// phaseProgress shows a judged phase as the API gives it (docs/API.md):
// the warm-up, elapsed against the minimum and the deadline, the requests
// on each side, and per check its effect, interval and the requests still
// needed at the current rate.
function phaseProgress(ph) {
  const at = Date.parse(ph.lookedAt || ph.startedAt);
  const secsTo = (t) => (Date.parse(t) - at) / 1000;
  const w = ph.warmup;
  const warming = w && !w.endedAt;
  const head = warming
    ? `Warming up since ${clock(ph.startedAt)}: ${w.candidateRequests} of ${w.requests} candidate requests, until at least ${clock(w.until)}; these requests are shown, not judged (production ${w.baselineRequests}).`
    : `Judged for ${span(secsTo(ph.judgedFrom || ph.startedAt) * -1)} (needs ${ph.minDuration}${ph.minRequests ? ` and ${ph.minRequests} candidate requests` : ''}): ${ph.candidateRequests} candidate requests (${num(ph.candidateRate || 0, 1)}/s) and ${ph.baselineRequests} production requests over ${ph.looks} looks.${w ? ` Warm-up done at ${clock(w.endedAt)} (${w.candidateRequests} candidate requests not judged).` : ''}`;
  const checks = (ph.gates || []).flatMap((g) => (g.result?.checks || []).map((c) => ({ ...c, gate: g.kind })));
  return h('div', { class: 'progress' },
    h('p', {}, ` ${head} Deadline ${clock(ph.deadline)} (in ${span(secsTo(ph.deadline))})${ph.extended ? ', extended' : ''}.`),
    ph.notice ? h('p', { class: 'warn' }, ph.notice) : null,
    checks.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'evidence' },
      h('thead', {}, h('tr', {}, ['Check', 'Verdict', 'Requests (candidate / production)', 'Effect', 'Interval', 'Limit', 'Still needed'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, checks.map((c) => h('tr', {},
        h('th', { scope: 'row' }, c.metric),
        h('td', {}, c.verdict),
        h('td', { class: 'num' }, `${c.candidateN} / ${c.baselineN}`),
        h('td', { class: 'num' }, num(c.effect, 3)),
        h('td', { class: 'num' }, `${num(c.lower, 3)} to ${num(c.upper, 3)}`),
        h('td', { class: 'num' }, num(c.threshold, 3)),
        h('td', {}, c.verdict !== 'inconclusive' ? 'decided' : c.needed == null ? 'no estimate' :
          `~${c.needed} candidate requests${c.neededSeconds != null ? ` (~${span(c.neededSeconds)} at the current rate)` : ''}`)))))) : null);
}

const EFFECT = {
  errors: 'error-rate ratio candidate / production',
  latency: 'probability the candidate is slower',
  ttft: 'probability the candidate has a slower first token',
  tokens_per_sec: 'ratio of tokens/s candidate / production',
  tail_latency: 'ratio of tail rates candidate / production',
  output_tokens: 'ratio of mean answer lengths candidate / production',
};

function evidence(gate) {
  const ev = gate.evidence;
  const checks = ev?.checks || [];
  return h('div', { class: 'gate' },
    h('p', {}, h('strong', {}, `Gate ${gate.kind || 'metrics'}: ${gate.verdict}. `), gate.reason),
    checks.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'evidence' },
      h('thead', {}, h('tr', {}, ['Metric', 'Verdict', 'Samples (candidate / production)', 'Effect', 'Interval', 'Threshold', 'In words'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, checks.map((c) => {
        const base = c.metric.split(':')[0];
        const what = c.metric.startsWith('slo:') ? 'observed quantile in seconds' : EFFECT[base] || 'effect';
        return h('tr', {},
          h('th', { scope: 'row' }, c.metric),
          h('td', {}, c.verdict),
          h('td', { class: 'num' }, `${c.candidateN} / ${c.baselineN}`),
          h('td', {}, `${num(c.effect, 3)} (${what})`),
          h('td', { class: 'num' }, `${num(c.lower, 3)} to ${num(c.upper, 3)}`),
          h('td', { class: 'num' }, num(c.threshold, 3)),
          h('td', {}, c.reason));
      })))) : null);
}

function verdictsView(verdicts) {
  if (!verdicts?.length) return h('p', { class: 'muted' }, 'No verdicts yet.');
  return h('ol', { class: 'verdicts', reversed: true }, [...verdicts].reverse().map((v) =>
    h('li', {}, h('details', {},
      h('summary', {}, h('strong', {}, `${clock(v.time)} · step ${v.step + 1} (${v.stepKind}, candidate at ${pct(v.percent)}): ${v.verdict} → ${v.decision}`), v.actor ? ` by ${v.actor}` : ''),
      h('p', {}, v.reason),
      h('p', { class: 'muted' }, `Data from ${clock(v.from)} to ${clock(v.to)}: ${v.candidateRequests} candidate requests, ${v.baselineRequests} baseline requests.`),
      (v.gates || []).map(evidence)))));
}

function rolloutSummary(r) {
  return [
    h('p', { class: 'rollout-state' }, h('strong', {}, `${r.id}: ${words(r.state)}`), ` — moving slot ${r.slot}${r.candidateRevision ? ` (revision ${r.candidateRevision})` : ''} into production, baseline ${r.baselineRevision || '—'}; candidate share ${pct(r.traffic)}${r.swapped ? '; swapped' : ''}. Started ${when(r.createdAt)}${r.actor ? ` by ${r.actor}` : ''}.`),
    r.reason ? h('p', {}, h('strong', {}, 'Reason: '), r.reason) : null,
    r.lastError ? h('p', { class: 'warn' }, `Last error (retrying): ${r.lastError}`) : null,
    ...(r.warnings || []).map((w) => h('p', { class: 'warn' }, w)),
  ];
}

function rolloutView(r) {
  if (!r) return h('p', {}, 'No rollout is running. Start one under Actions.');
  return [
    ...rolloutSummary(r),
    h('h3', {}, `Plan ${r.plan.name || ''}`),
    timeline(r),
    h('h3', {}, 'Verdicts, newest first'),
    verdictsView(r.verdicts),
  ];
}

function historyView(list) {
  const past = list.filter((r) => !['running', 'paused', 'rolling_back'].includes(r.state));
  if (!past.length) return h('p', { class: 'muted' }, 'No finished rollouts.');
  return h('ul', { class: 'history' }, past.map((r) =>
    h('li', {}, h('details', {},
      h('summary', {}, h('span', { class: `outcome ${r.state}` }, words(r.state)), ` ${r.id} · slot ${r.slot} · ${when(r.createdAt)} → ${when(r.finishedAt || r.updatedAt)}`),
      rolloutSummary(r), timeline(r), verdictsView(r.verdicts)))));
}

function eventsView(evs) {
  if (!evs.length) return h('p', { class: 'muted' }, 'No events yet.');
  return h('ul', { class: 'events' }, [...evs].reverse().map((e) =>
    h('li', {}, h('time', { datetime: e.time }, clock(e.time)), ' ', h('code', {}, e.type), ' ', e.message, e.actor ? h('span', { class: 'muted' }, ` (by ${e.actor})`) : '')));
}

// ---------- actions ----------

function actions(st, active) {
  const app = st.app;
  const base = `/api/v1/apps/${enc(app)}`;
  const others = st.slots.filter((s) => s.slot.name !== 'production');
  const busy = active && ['running', 'rolling_back'].includes(active.state);
  const out = [];

  if (active) {
    const res = result('ro-result');
    const reason = h('input', { id: 'ro-reason', type: 'text', placeholder: 'why (recorded with an abort)' });
    const cmd = (op, title, text, ok) => h('button', { type: 'button', class: `btn${op === 'abort' ? ' danger' : ''}`, id: `ro-${op}`, onclick: () => act(res, {
      title, text, ok, method: 'POST', path: `${base}/rollout/${op}`, body: op === 'abort' && reason.value ? { reason: reason.value } : undefined,
      done: (r) => `Rollout ${r.id} is now ${words(r.state)}.`,
    }) }, ok + '…');
    out.push(h('div', { class: 'box wide' }, h('fieldset', {}, h('legend', {}, `Rollout ${active.id} (${words(active.state)})`),
      h('div', { class: 'row' },
        active.state === 'running' ? cmd('pause', 'Pause the rollout?', `Rollout ${active.id} stops at its current step and traffic stays as it is until you resume it.`, 'Pause') : null,
        active.state === 'paused' ? cmd('resume', 'Resume the rollout?', `Rollout ${active.id} goes on from its current step.`, 'Resume') : null,
        active.state !== 'rolling_back' ? cmd('promote', 'Promote the candidate?', `Rollout ${active.id} skips the rest of its analysis and swaps slot ${active.slot} into production.`, 'Promote') : null,
        active.state !== 'rolling_back' ? cmd('abort', 'Abort and roll back?', `Rollout ${active.id} is aborted: its traffic goes back to production, and a swap already made is swapped back.`, 'Abort') : null),
      active.state !== 'rolling_back' ? h('div', { class: 'field' }, h('label', { for: 'ro-reason' }, 'Abort reason (optional)'), reason) : null,
      res)));
  }

  // Traffic.
  {
    const res = result('traffic-result');
    const inputs = others.map((s) => h('input', { type: 'number', id: `traffic-${s.slot.name}`, name: s.slot.name, min: 0, max: 100, step: 'any', value: String(s.percent), disabled: !s.slot.deployment, inputmode: 'decimal' }));
    const rest = h('p', { class: 'muted', id: 'traffic-rest' });
    const reset = h('input', { type: 'checkbox', id: 'traffic-reset' });
    const sum = () => inputs.reduce((t, i) => t + (parseFloat(i.value) || 0), 0);
    const show = () => (rest.textContent = `Production gets the rest: ${pct(Math.max(0, 100 - sum()))}.`);
    inputs.forEach((i) => i.addEventListener('input', show));
    show();
    const form = h('form', { class: 'box', id: 'traffic-form', onsubmit: (ev) => {
      ev.preventDefault();
      const rules = inputs.filter((i) => !i.disabled).map((i) => ({ slot: i.name, percent: parseFloat(i.value) || 0 }));
      const words = rules.map((r) => `${r.slot} ${pct(r.percent)}`).concat(`production ${pct(Math.max(0, 100 - sum()))}`).join(', ');
      act(res, { title: 'Change the traffic split?', text: `New split: ${words}.${reset.checked ? ' Users pinned to a slot by cookie are moved too.' : ' Users already pinned to a slot stay there.'}`, ok: 'Set traffic',
        method: 'PUT', path: `${base}/traffic`, body: { rules, resetPins: reset.checked },
        done: (v) => `Traffic is now ${v.split.map((r) => `${r.slot} ${pct(r.percent)}`).join(', ')}.` });
    } },
    h('fieldset', {}, h('legend', {}, 'Traffic split'),
      others.length ? others.map((s, i) => h('div', { class: 'field' }, h('label', { for: inputs[i].id }, `${s.slot.name} (%)`, s.slot.deployment ? '' : ' — no deployment'), inputs[i])) : h('p', {}, 'Only production exists: create a slot to split traffic.'),
      rest,
      h('div', { class: 'check' }, reset, h('label', { for: 'traffic-reset' }, 'Also move users pinned by cookie (reset pins)')),
      h('button', { type: 'submit', class: 'btn primary', id: 'traffic-submit', disabled: !others.length || busy }, 'Set traffic…'),
      busy ? h('p', { class: 'muted' }, 'A rollout owns the traffic now: pause or abort it first.') : null,
      res));
    out.push(form);
  }

  // Swap.
  {
    const res = result('swap-result');
    const sel = h('select', { id: 'swap-source' }, others.map((s) => h('option', { value: s.slot.name }, `${s.slot.name} — ${depLabel(s.slot.deployment)}`)));
    const btn = (action, label, title, text) => h('button', { type: 'button', class: 'btn', id: `swap-${action}`, disabled: !others.length || busy, onclick: () => act(res, {
      title, text: text(sel.value), ok: label, method: 'POST', path: `${base}/swap`, body: { source: sel.value, action },
      done: (r) => `Swap ${r.action} ${r.source} → ${r.target}: ${words(r.status)}.`,
    }) }, label + '…');
    out.push(h('div', { class: 'box' }, h('fieldset', {}, h('legend', {}, 'Swap with production'),
      h('div', { class: 'field' }, h('label', { for: 'swap-source' }, 'Source slot'), sel),
      h('div', { class: 'row' },
        btn('swap', 'Swap', 'Swap into production?', (s) => `Slot ${s}'s deployment is warmed up and swapped into production; production's goes to ${s}.`),
        btn('preview', 'Preview', 'Preview the swap?', (s) => `Production's sticky settings are applied to slot ${s} so you can check it before completing the swap.`),
        btn('reset', 'Reset preview', 'Cancel the swap preview?', (s) => `The pending preview involving slot ${s} is cancelled and its settings restored.`)),
      res)));
  }

  // Start a rollout.
  if (!active) {
    const res = result('rollout-result');
    const sel = h('select', { id: 'rollout-slot' }, others.filter((s) => s.slot.deployment).map((s) => h('option', { value: s.slot.name }, `${s.slot.name} — ${depLabel(s.slot.deployment)}`)));
    const plan = h('textarea', { id: 'rollout-plan', rows: 12, spellcheck: 'false' });
    plan.value = SAMPLE_PLAN;
    out.push(h('form', { class: 'box wide', id: 'rollout-form', onsubmit: (ev) => {
      ev.preventDefault();
      act(res, { title: 'Start a rollout?', text: `Slot ${sel.value} is rolled into production by this plan; the rollout owns the app's traffic and swaps until it ends.`, ok: 'Start rollout',
        method: 'POST', path: `${base}/rollouts`, body: { slot: sel.value, plan: plan.value }, done: (r) => `Rollout ${r.id} started.` });
    } }, h('fieldset', {}, h('legend', {}, 'Start a rollout'),
      h('div', { class: 'field' }, h('label', { for: 'rollout-slot' }, 'Candidate slot'), sel),
      h('div', { class: 'field' }, h('label', { for: 'rollout-plan' }, 'Plan (YAML, see docs/ROLLOUTS.md)'), plan),
      h('button', { type: 'submit', class: 'btn primary', id: 'rollout-submit', disabled: !sel.options.length }, 'Start rollout…'),
      res)));
  }
  return out;
}

// ---------- start ----------

$('banner-retry').addEventListener('click', () => refresh());
window.addEventListener('hashchange', () => {
  state.rendered = {};
  $('main').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  refresh().then(() => $('main').focus());
});
refresh();
