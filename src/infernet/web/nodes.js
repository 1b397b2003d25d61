// Nodes: the fleet table, and one node's page with its hardware, speed and recent jobs.

import { api } from "./api.js";
import { h, redraw, replace, table, facts, badge, link, num, short, duration, time, gb, usdc } from "./dom.js";
import { jobColumns } from "./jobs.js";

const REFRESH_MS = 4000; // the list is a query: not on every 2 s tick

export function gpus(hw) {
  const cards = (hw && hw.gpus) || [];
  if (!cards.length) return hw && hw.cpu ? `CPU: ${hw.cpu}` : "CPU";
  return cards.map((g) => `${g.name} (${gb(g.vram_mb)})`).join(", ");
}

// An offline node offers nothing; what it offered last is shown dimmed.
const models = (n) => (n.models.length ? n.models.join(", ") : n.last_models.length ? h("span", { class: "dim" }, `last: ${n.last_models.join(", ")}`) : "–");

export const vram = (hw) => ((hw && hw.gpus) || []).reduce((a, g) => a + (g.vram_mb || 0), 0);

function load(n) {
  return h("span", { class: "load" },
    h("meter", { min: "0", max: String(n.capacity), value: String(n.active), "aria-label": `${n.active} of ${n.capacity} slots busy` }),
    `${n.active}/${n.capacity}`);
}

export function speed(n) {
  const m = n.measured.tokens_per_s, e = n.expected_tps;
  return h("span", {}, m ? `${num(m, 1)} tok/s ` : "", badge(n.speed), h("span", { class: "dim" }, ` expected ${num(e.low)}–${num(e.high)}`));
}

function nodeTable(list, admin) {
  const columns = [
    { label: "Node", cell: (n) => [link(`#/nodes/${n.id}`, n.name || short(n.id)), h("br"), h("span", { class: "dim mono" }, short(n.id))] },
    { label: "Status", cell: (n) => badge(n.status) },
    { label: "Tier", cell: (n) => n.tier },
    { label: "GPUs", cell: (n) => gpus(n.hardware) },
    { label: "VRAM", num: true, cell: (n) => gb(vram(n.hardware)) },
    { label: "Models", cell: models },
    { label: "Backend", cell: (n) => n.backend },
    { label: "Load", cell: load },
    { label: "Speed vs tier", cell: speed },
    { label: "Reputation", num: true, cell: (n) => num(n.reputation, 2) },
    { label: "Uptime", num: true, cell: (n) => duration(n.uptime_s) },
  ];
  if (admin) columns.push({ label: "Earned (USDC)", num: true, cell: (n) => usdc(n.earnings.earned) });
  return table({ caption: `Nodes (${list.filter((n) => n.status === "online").length} online of ${list.length})`, columns, rows: list, empty: "No node has connected yet.", id: "nodes-table" });
}

function mountList(root, ctx) {
  const region = h("div");
  root.append(h("h1", {}, "Nodes"), h("p", { class: "dim" }, "Speed is measured here from each node's jobs and compared with its tier's range (docs/hardware.md)."), region);
  let last = 0, alive = true;
  async function refresh() {
    last = Date.now();
    try {
      const { data } = await api("/api/v1/nodes");
      if (alive) redraw(region, h("section", { class: "card" }, nodeTable(data, ctx.admin)));
    } catch (exc) {
      ctx.alert(exc.message);
    }
  }
  refresh();
  return { snapshot() { if (Date.now() - last >= REFRESH_MS) refresh(); }, unmount() { alive = false; } };
}

function mountNode(root, ctx, id) {
  const heading = h("h1", {}, `Node ${short(id)}`);
  const body = h("div", {}, h("p", { class: "dim" }, "Loading…"));
  root.append(h("p", {}, link("#/nodes", "← All nodes")), heading, body);
  let alive = true, last = 0;
  async function refresh() {
    last = Date.now();
    let n;
    try {
      n = await api(`/api/v1/nodes/${encodeURIComponent(id)}`);
    } catch (exc) {
      replace(body, h("p", {}, exc.message));
      return;
    }
    if (!alive) return;
    heading.textContent = `Node ${n.name || short(n.id)}`;
    const hw = n.hardware || {};
    const cards = hw.gpus || [];
    redraw(body,
      h("div", { class: "grid2" },
        h("section", { class: "card" }, h("h2", {}, "State"), facts([
          ["Id", h("code", {}, n.id)],
          ["Status", badge(n.status)],
          ["Tier", n.tier],
          ["Backend", n.backend],
          ["Models", models(n)],
          ["Load", load(n)],
          ["Uptime", n.status === "online" ? `${duration(n.uptime_s)} (since ${time(n.connected_at)})` : "offline"],
          ["First seen", time(n.first_seen)],
          ["Last seen", time(n.last_seen)],
          ["Price", `${usdc(n.price.input)} in / ${usdc(n.price.output)} out, USDC per million tokens`],
        ])),
        h("section", { class: "card" }, h("h2", {}, "Measured"), facts([
          ["Tokens/s", speed(n)],
          ["Time to first token", n.measured.ttft_ms ? `${num(n.measured.ttft_ms)} ms` : "–"],
          ["Reputation", `${num(n.reputation, 3)} of 1`],
          n.earnings && ["Earned", `${n.earnings.earned_usdc} USDC (${n.earnings.receipts} receipts)`],
          n.earnings && ["Unpaid", `${n.earnings.unpaid_usdc} USDC`],
          n.earnings && ["Paid out", `${n.earnings.paid_usdc} USDC`],
        ]))),
      h("section", { class: "card" }, h("h2", {}, "Hardware"),
        table({
          caption: "GPUs", rows: cards, empty: "No GPU: this node runs on the CPU.",
          columns: [
            { label: "GPU", cell: (g) => g.name },
            { label: "Vendor", cell: (g) => g.vendor },
            { label: "VRAM", num: true, cell: (g) => gb(g.vram_mb) },
            { label: "Driver", cell: (g) => g.driver || "–" },
            { label: "Tier (alone)", cell: (g) => g.tier || "–" },
          ],
        }),
        facts([["CPU", hw.cpu ? `${hw.cpu}${hw.cpu_count ? ` (${hw.cpu_count} threads)` : ""}` : "–"], ["RAM", gb(hw.ram_mb)], ["OS", hw.os || "–"]])),
      h("section", { class: "card" },
        table({ caption: ctx.admin ? "Recent jobs on this node" : "Your recent jobs on this node", rows: n.recent_jobs, columns: jobColumns(false), empty: "No job yet." })),
    );
  }
  refresh();
  return { snapshot() { if (Date.now() - last >= REFRESH_MS) refresh(); }, unmount() { alive = false; } };
}

export function mount(root, ctx, arg) {
  return arg ? mountNode(root, ctx, arg) : mountList(root, ctx);
}
