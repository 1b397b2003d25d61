// Overview: the fleet and the last hour, from the live feed alone (no extra requests).

import { h, replace, redraw, num, ms, pct, short, duration, badge, link, table } from "./dom.js";
import { lineChart } from "./charts.js";

const TIER_ORDER = [">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu"];

const mix = (counts) => Object.entries(counts || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(", ") || "none";

function stats(snap, last) {
  const f = snap.fleet;
  const item = (label, value, note) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value, note ? [" ", h("small", {}, note)] : null));
  const words = (label, value) => h("div", { class: "stat stat-words" }, h("dt", {}, label), h("dd", {}, value));
  return h("dl", { class: "stats", "aria-label": "Now" },
    item("Nodes online", num(f.online), `${f.busy}/${f.slots} slots busy`),
    words("By tier", mix(f.by_tier)),
    words("By vendor", mix(f.by_vendor)),
    item("Jobs per minute", num(last?.jobs_per_min, 1)),
    item("Output tokens/s", num(last?.tokens_per_s, 1)),
    item("Time to first token", ms(last?.ttft_ms)),
    item("Queue depth", num(snap.queue), snap.scope === "key" ? `${snap.queued_mine} yours` : null),
    item("Failure rate", pct(last?.failure_rate)),
  );
}

function charts(points) {
  const times = points.map((p) => p.t);
  const tiers = [...new Set(points.flatMap((p) => Object.keys(p.tiers || {})))].sort((a, b) => TIER_ORDER.indexOf(a) - TIER_ORDER.indexOf(b));
  const onlineSeries = [
    { name: "all", values: points.map((p) => (p.tiers ? Object.values(p.tiers).reduce((a, b) => a + b, 0) : null)) },
    ...tiers.map((t) => ({ name: t, values: points.map((p) => (p.tiers ? p.tiers[t] || 0 : null)) })),
  ];
  const vendors = [...new Set(points.flatMap((p) => Object.keys(p.vendors || {})))].sort();
  const one = (key) => [{ name: key, values: points.map((p) => p[key]) }];
  return h("div", { class: "charts" },
    lineChart({ id: "chart-nodes", title: "Nodes online by tier", times, series: onlineSeries, format: (v) => num(v) }),
    lineChart({ id: "chart-vendors", title: "Nodes online by vendor", times, series: vendors.map((v) => ({ name: v, values: points.map((p) => (p.vendors ? p.vendors[v] || 0 : null)) })), format: (v) => num(v) }),
    lineChart({ id: "chart-jobs", title: "Jobs per minute", times, series: one("jobs_per_min"), format: (v) => num(v, 1) }),
    lineChart({ id: "chart-tps", title: "Output tokens per second", times, series: one("tokens_per_s"), format: (v) => num(v, 1) }),
    lineChart({ id: "chart-ttft", title: "Time to first token", times, series: one("ttft_ms"), format: ms }),
    lineChart({ id: "chart-queue", title: "Queue depth", times, series: one("queue"), format: (v) => num(v) }),
    lineChart({ id: "chart-failures", title: "Failure rate", times, series: one("failure_rate"), format: pct }),
  );
}

function liveJobs(snap) {
  return table({
    caption: `Jobs running now (${snap.live_total})`,
    empty: "No job is running.",
    rows: snap.live,
    columns: [
      { label: "Job", cell: (j) => link(`#/jobs/${encodeURIComponent(j.id)}`, short(j.id, 18)) },
      { label: "Status", cell: (j) => badge(j.status) },
      { label: "Model", cell: (j) => j.model },
      { label: "Node", cell: (j) => (j.node_id ? link(`#/nodes/${j.node_id}`, short(j.node_id)) : "–") },
      { label: "Age", num: true, cell: (j) => duration(snap.t - j.created_at) },
    ],
  });
}

export function mount(root, ctx) {
  const scope = h("p", { class: "dim" });
  const now = h("div");
  const graphs = h("div");
  const live = h("section", { class: "card" });
  root.append(h("h1", {}, "Overview"), scope, now, graphs, live);

  function draw() {
    const snap = ctx.snapshot, points = ctx.series();
    scope.textContent = snap.scope === "network"
      ? "The whole network, over the last hour. Job figures are per minute, ending at each point."
      : "Your jobs over the last hour, with the network's fleet and queue.";
    replace(now, stats(snap, points[points.length - 1]));
    replace(graphs, charts(points));
    redraw(live, liveJobs(snap));
  }
  draw();
  return { snapshot: draw };
}
