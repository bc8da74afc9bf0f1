// Charts drawn as inline SVG by our own code: a confidence gauge,
// horizontal bars and daily columns. Colours come from CSS classes.

import { h } from "./core.js";

const s = (tag, attrs, ...c) => h("svg:" + tag, attrs, ...c);

export function severityClass(score) {
  if (score >= 75) return "sev-high";
  if (score >= 40) return "sev-medium";
  if (score > 0) return "sev-low";
  return "sev-none";
}

/** A half-circle gauge for a 0–100 confidence score. */
export function gauge(score, label = "Confidence") {
  const r = 80, cx = 100, cy = 95;
  const v = Math.max(0, Math.min(100, Number(score) || 0));
  const a = Math.PI * (1 - v / 100);
  const x = cx + r * Math.cos(a), y = cy - r * Math.sin(a);
  const arc = (x2, y2, cls) => s("path", { d: `M ${cx - r} ${cy} A ${r} ${r} 0 0 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`, class: cls, fill: "none", "stroke-width": 16, "stroke-linecap": "round" });
  return s("svg", { viewBox: "0 0 200 120", class: "gauge", role: "img", "aria-label": `${label}: ${v} out of 100` },
    arc(cx + r, cy, "gauge-track"),
    v > 0 ? arc(x, y, "gauge-value " + severityClass(v)) : null,
    s("text", { x: cx, y: cy - 10, "text-anchor": "middle", class: "gauge-num" }, String(v)),
    s("text", { x: cx, y: cy + 18, "text-anchor": "middle", class: "gauge-label" }, label));
}

/** Horizontal bars: items = [{label, value}]. */
export function bars(items, { title = "", unit = "" } = {}) {
  if (!items.length) return h("p", { class: "muted" }, "No data.");
  const max = Math.max(1, ...items.map((i) => i.value));
  const row = 26, lw = 110, w = 400;
  const svg = s("svg", { viewBox: `0 0 ${w} ${items.length * row + 4}`, class: "chart bars", role: "img", "aria-label": title || "bar chart" },
    items.map((it, i) => {
      const bw = Math.max(2, ((w - lw - 60) * it.value) / max);
      return s("g", { transform: `translate(0 ${i * row + 2})` },
        s("text", { x: lw - 6, y: 16, "text-anchor": "end", class: "chart-label" }, String(it.label).slice(0, 16)),
        s("rect", { x: lw, y: 3, width: bw.toFixed(1), height: row - 8, rx: 3, class: "chart-bar" }),
        s("text", { x: lw + bw + 6, y: 16, class: "chart-value" }, `${it.value}${unit}`));
    }));
  return h("figure", { class: "chart-fig" }, svg, title ? h("figcaption", {}, title) : null);
}

/** Columns per day: points = [{label, value}]. */
export function columns(points, { title = "", unit = "" } = {}) {
  if (!points.length) return h("p", { class: "muted" }, "No data.");
  const max = Math.max(1, ...points.map((p) => p.value));
  const w = 600, ht = 160, pad = 24;
  const cw = (w - pad) / points.length;
  const svg = s("svg", { viewBox: `0 0 ${w} ${ht + 22}`, class: "chart columns", role: "img", "aria-label": title || "column chart" },
    s("line", { x1: pad, y1: ht, x2: w, y2: ht, class: "chart-axis" }),
    s("text", { x: 0, y: 12, class: "chart-value" }, `${max}${unit}`),
    points.map((p, i) => {
      const bh = (ht - 10) * p.value / max;
      return s("g", {},
        s("rect", { x: (pad + i * cw + cw * 0.15).toFixed(1), y: (ht - bh).toFixed(1), width: (cw * 0.7).toFixed(1), height: bh.toFixed(1), class: "chart-bar" },
          s("title", {}, `${p.label}: ${p.value}${unit}`)),
        (points.length <= 14 || i % Math.ceil(points.length / 10) === 0)
          ? s("text", { x: (pad + i * cw + cw / 2).toFixed(1), y: ht + 16, "text-anchor": "middle", class: "chart-label small" }, String(p.label).slice(5))
          : null);
    }));
  return h("figure", { class: "chart-fig" }, svg, title ? h("figcaption", {}, title) : null);
}

/** A quota bar: used of limit. */
export function meter(label, used, limit) {
  const pct = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  const fill = h("span", { class: "meter-fill " + (pct >= 90 ? "sev-high" : pct >= 60 ? "sev-medium" : "sev-ok") });
  fill.style.width = pct + "%";
  return h("div", { class: "meter-row" },
    h("span", { class: "meter-label" }, label),
    h("span", { class: "meter", role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used }, fill),
    h("span", { class: "meter-num" }, `${used} / ${limit}`));
}
