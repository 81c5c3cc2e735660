// Small SVG line charts: one per metric, one line per slot. Each slot has
// its own colour and its own dash pattern, and the legend names it in text,
// so the chart reads without colour.

const SVG = 'http://www.w3.org/2000/svg';
export const STYLES = [
  { color: '#1d4ed8', dash: '' },
  { color: '#c2410c', dash: '7 4' },
  { color: '#15803d', dash: '2 3' },
  { color: '#7e22ce', dash: '9 3 2 3' },
  { color: '#374151', dash: '1 5' },
];

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// scaleMax is the top of the y axis. With clip, one point far above the
// rest (a single slow request in a latency chart) does not flatten every
// line to the floor: the axis stops at 1.5 times the 90th percentile of
// the values, and the points above it are drawn at the top with a marker.
export function scaleMax(values, clip) {
  const v = values.filter((x) => x != null && x > 0).sort((a, b) => a - b);
  const max = v.length ? v[v.length - 1] : 0;
  if (clip && v.length >= 5) {
    const p90 = v[Math.floor(0.9 * (v.length - 1))];
    const cap = niceMax(1.5 * p90);
    if (p90 > 0 && max > 3 * p90 && cap < max) return { max: cap, clipped: true, highest: max };
  }
  return { max: niceMax(max), clipped: false, highest: max };
}

// lineChart draws lines over times (Unix ms). lines: [{label, values (null
// for gaps), style}]. fmt formats a value for axes and the legend. clip:
// see scaleMax.
export function lineChart({ id, title, times, lines, fmt, clip = false }) {
  const W = 320, H = 150, L = 44, R = 8, T = 8, B = 22;
  const fig = document.createElement('figure');
  fig.className = 'chart';
  fig.id = id;
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap);

  const scale = scaleMax(lines.flatMap((l) => l.values), clip);
  const max = scale.max;
  const n = times.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - Math.min(v, max) / max);

  const latest = lines.map((l) => {
    for (let i = l.values.length - 1; i >= 0; i--) if (l.values[i] != null) return l.values[i];
    return null;
  });
  const summary = lines.map((l, i) => `${l.label}: ${latest[i] == null ? 'no requests' : fmt(latest[i])}`).join('; ');
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}, latest values. ${summary}` });
  s.classList.add('plot');
  // Grid and y axis: 0, half, max.
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    s.append(svg('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid' }));
    const t = svg('text', { x: L - 4, y: yy + 3, 'text-anchor': 'end', class: 'tick' });
    t.textContent = fmt(max * f);
    s.append(t);
  }
  // x axis: minutes before now.
  if (n > 1) {
    const span = (times[n - 1] - times[0]) / 60000;
    const every = span > 20 ? 10 : 5;
    for (let m = 0; m <= span + 0.01; m += every) {
      const i = Math.round(((span - m) / span) * (n - 1));
      const t = svg('text', { x: x(i), y: H - 6, 'text-anchor': m === 0 ? 'end' : 'middle', class: 'tick' });
      t.textContent = m === 0 ? 'now' : `−${m}m`;
      s.append(t);
    }
  }
  lines.forEach((l) => {
    let pts = [];
    const flush = () => {
      if (pts.length === 1) {
        s.append(svg('circle', { cx: pts[0][0], cy: pts[0][1], r: 2.2, fill: l.style.color }));
      } else if (pts.length > 1) {
        const p = svg('polyline', { points: pts.map((q) => q.join(',')).join(' '), fill: 'none', stroke: l.style.color, 'stroke-width': 2, 'stroke-linejoin': 'round' });
        if (l.style.dash) p.setAttribute('stroke-dasharray', l.style.dash);
        s.append(p);
      }
      pts = [];
    };
    l.values.forEach((v, i) => {
      if (v == null) flush();
      else pts.push([x(i).toFixed(1), y(v).toFixed(1)]);
    });
    flush();
    // Off-scale points: a triangle at the top, its value in a tooltip.
    l.values.forEach((v, i) => {
      if (v == null || v <= max) return;
      const cx = x(i), tri = svg('polygon', { points: `${(cx - 4).toFixed(1)},${T + 6} ${(cx + 4).toFixed(1)},${T + 6} ${cx.toFixed(1)},${T - 1}`, class: 'clipped' });
      const tip = svg('title');
      tip.textContent = `${l.label}: ${fmt(v)} (off the scale)`;
      tri.append(tip);
      s.append(tri);
    });
  });
  fig.append(s);
  if (scale.clipped) {
    const note = document.createElement('p');
    note.className = 'clip-note';
    note.textContent = `▲ off the scale: points above ${fmt(max)} (highest ${fmt(scale.highest)}) are drawn at the top.`;
    fig.append(note);
  }

  const legend = document.createElement('ul');
  legend.className = 'legend';
  lines.forEach((l, i) => {
    const li = document.createElement('li');
    const key = svg('svg', { viewBox: '0 0 24 8', width: 24, height: 8, 'aria-hidden': 'true' });
    const ln = svg('line', { x1: 0, x2: 24, y1: 4, y2: 4, stroke: l.style.color, 'stroke-width': 2.5 });
    if (l.style.dash) ln.setAttribute('stroke-dasharray', l.style.dash);
    key.append(ln);
    const txt = document.createElement('span');
    txt.textContent = `${l.label}: ${latest[i] == null ? '—' : fmt(latest[i])}`;
    li.append(key, txt);
    legend.append(li);
  });
  fig.append(legend);
  return fig;
}
