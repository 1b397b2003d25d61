// Charts as inline SVG, drawn from plain arrays: no library, no build step.
//
// Each chart is a <figure> whose caption says the figure in words (the newest value and the
// peak), and whose SVG carries the same as its accessible name, so a screen reader gets the
// numbers without the picture. Series differ by colour and by dash, not by colour alone.

import { h, s, clock, day } from "./dom.js";

// The drawing's own size is about what it shows at in the grid, so its text stays readable.
const W = 380, H = 160, LEFT = 48, RIGHT = 8, TOP = 10, BOTTOM = 22;
export const COLORS = ["#1f4fd1", "#b3261e", "#0b7a3e", "#8a4b00", "#6b3fa0", "#00707a"];
const DASHES = [null, "6 3", "2 3", "8 3 2 3", "4 4", "1 2"];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// The axes for values from minY (0, or below it when a balance went negative) to maxY.
function frame(minY, maxY, t0, t1, format) {
  const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - (v - minY) / (maxY - minY));
  const levels = minY < 0 ? [minY, 0, maxY] : [0, maxY / 2, maxY];
  const labels = levels.map(format);
  const grid = levels.map((v, i) => [
    s("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }),
    // a middle label that rounds to an end's (0, 1, 1) would only mislead
    i === 1 && minY >= 0 && (labels[1] === labels[0] || labels[1] === labels[2]) ? null : s("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, labels[i]),
  ]);
  const when = t1 - t0 > 20 * 3600 ? day : clock;
  const ticks = [
    s("text", { x: LEFT, y: H - 6, class: "tick" }, when(t0)),
    s("text", { x: W - RIGHT, y: H - 6, "text-anchor": "end", class: "tick" }, when(t1)),
  ];
  return { y, parts: [grid, ticks] };
}

function summary(values, format) {
  const known = values.filter((v) => v !== null && v !== undefined);
  if (!known.length) return "no data yet";
  const last = [...values].reverse().find((v) => v !== null && v !== undefined);
  return `now ${format(last)}, peak ${format(Math.max(...known))}`;
}

// Lines over time. series: [{name, values}] with one value (or null: no data) per entry
// of `times` (unix seconds, oldest first).
// `format` writes a value in words; `tick`, on the axis (default: the same).
export function lineChart({ title, times, series, format = String, tick = format, id }) {
  const t0 = times[0], t1 = times[times.length - 1];
  const all = series.flatMap((se) => se.values).filter((v) => v !== null && v !== undefined);
  const maxY = niceMax(Math.max(0, ...all));
  const low = Math.min(0, ...all);
  const { y, parts } = frame(low < 0 ? -niceMax(-low) : 0, maxY, t0, t1, tick);
  const x = (t) => LEFT + ((W - LEFT - RIGHT) * (t - t0)) / Math.max(1, t1 - t0);
  const known = (v) => v !== null && v !== undefined;
  const lines = series.map((se, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "";
    const dots = [];
    se.values.forEach((v, k) => {
      if (!known(v)) return;
      const joined = k > 0 && known(se.values[k - 1]);
      d += `${joined ? "L" : "M"}${x(times[k]).toFixed(1)},${y(v).toFixed(1)}`;
      if (!joined && !known(se.values[k + 1])) dots.push(s("circle", { cx: x(times[k]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color }));
    });
    return [s("path", { d: d || "M0,0", class: "line", stroke: color, "stroke-dasharray": DASHES[i % DASHES.length] }), dots];
  });
  const said = series.length ? summary(series[0].values, format) : "no data yet";
  const legend = series.length > 1 ? series.map((se) => `${se.name}: ${summary(se.values, format)}`) : null;
  const name = legend ? `${title}: ${legend.join("; ")}` : `${title}: ${said}`;
  return figure(id, title, legend ? `${series[0].name} ${said}` : said, [parts, lines], legend, name);
}

// Bars over periods: bars [{t, value}], `period` seconds wide each.
export function barChart({ title, bars, period, format = String, tick = format, id }) {
  const t0 = bars.length ? bars[0].t : 0, t1 = bars.length ? bars[bars.length - 1].t + period : 1;
  const maxY = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const { y, parts } = frame(0, maxY, t0, t1, tick);
  const step = (W - LEFT - RIGHT) / Math.max(1, bars.length);
  const rects = bars.map((b, i) => s("rect", {
    x: (LEFT + i * step + step * 0.1).toFixed(1), width: (step * 0.8).toFixed(1),
    y: y(b.value).toFixed(1), height: Math.max(0, y(0) - y(b.value)).toFixed(1), class: "bar",
  }));
  const said = summary(bars.map((b) => b.value), format);
  return figure(id, title, said, [parts, rects], null, `${title}: ${said}`);
}

function figure(id, title, said, drawing, legend, name) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name, class: "chart", focusable: "false" }, s("title", {}, name), drawing);
  const keyList = legend && h("ul", { class: "legend", "aria-hidden": "true" }, legend.map((text, i) => h("li", {},
    h("span", { class: `swatch swatch-${i % COLORS.length}` }), text)));
  return h("figure", { class: "chart-card", id },
    h("figcaption", {}, h("span", { class: "chart-title" }, title), h("span", { class: "chart-value" }, said)),
    svg, keyList);
}
