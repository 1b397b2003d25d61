// Jobs: the list with filters (the network's for an admin, a client's own otherwise), and a
// job's page with its events and its receipt, verified here in the browser.

import { api, query, request } from "./api.js";
import { h, append, redraw, replace, table, field, facts, badge, link, num, short, time, duration, usdc } from "./dom.js";
import { verifyText } from "./receipt.js";

const STATUSES = ["queued", "assigned", "running", "completed", "failed", "cancelled"];
const PAGE = 50;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const INTERNAL_KEY = "key_internal"; // canaries and reference runs: the control plane's own jobs

// Kept while the tab lives, so coming back to the list finds the same filters.
const filters = { scope: "network", status: "", model: "", node: "" };

const took = (j) => (j.finished_at ? duration(j.finished_at - j.created_at) : "–");
const tokens = (j) => (j.usage ? `${num(j.usage.prompt_tokens)} / ${num(j.usage.completion_tokens)}` : "–");

export function jobColumns(showNode = true, showKey = false) {
  return [
    { label: "Job", cell: (j) => link(`#/jobs/${encodeURIComponent(j.id)}`, short(j.id, 20), { class: "mono" }) },
    { label: "Status", cell: (j) => badge(j.status) },
    { label: "Model", cell: (j) => j.model },
    showNode && { label: "Node", cell: (j) => (j.node_id ? link(`#/nodes/${j.node_id}`, short(j.node_id), { class: "mono" }) : "–") },
    showKey && { label: "Key", cell: (j) => (j.key_id === INTERNAL_KEY ? h("span", { class: "dim" }, "control plane (a check)") : h("span", { class: "mono" }, j.key_id)) },
    { label: "Tokens in / out", num: true, cell: tokens },
    { label: "Created", cell: (j) => time(j.created_at) },
    { label: "Took", num: true, cell: took },
    { label: "Error", cell: (j) => (j.error ? h("span", { class: "err" }, j.error.message) : "") },
  ].filter(Boolean);
}

function filterForm(ctx, onApply, models) {
  const status = h("select", {}, h("option", { value: "" }, "any"), STATUSES.map((st) => h("option", { value: st, selected: filters.status === st }, st)));
  const model = h("input", { type: "text", value: filters.model, list: "model-names", maxlength: "200", size: "22" });
  const node = h("input", { type: "text", value: filters.node, maxlength: "64", size: "22", pattern: "[0-9a-f]{64}", class: "mono" });
  const scope = ctx.admin && h("select", {}, h("option", { value: "network", selected: filters.scope === "network" }, "the network"), h("option", { value: "mine", selected: filters.scope === "mine" }, "this key only"));
  const form = h("form", { class: "row card", "aria-label": "Filter jobs" },
    scope && field("Jobs of", scope),
    field("Status", status),
    field("Model", model),
    field("Node id", node, "64 hex characters"),
    h("datalist", { id: "model-names" }, models.map((m) => h("option", { value: m }))),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Apply"),
      h("button", { type: "button", class: "secondary", onclick: () => { Object.assign(filters, { status: "", model: "", node: "" }); status.value = model.value = node.value = ""; onApply(); } }, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    Object.assign(filters, { status: status.value, model: model.value.trim(), node: node.value.trim(), scope: scope ? scope.value : filters.scope });
    onApply();
  });
  return form;
}

function mountList(root, ctx) {
  const region = h("section", { class: "card" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older jobs");
  const formSlot = h("div");
  root.append(h("h1", {}, "Jobs"), h("p", { class: "dim" }, ctx.admin ? "Every key's jobs on the network, newest first." : "Your jobs, newest first."), formSlot, region, more);
  let rows = [], seen = null, alive = true;

  const params = (before) => query({
    all: ctx.admin && filters.scope === "network" ? 1 : null, status: filters.status, model: filters.model, node: filters.node, limit: PAGE, before,
  });
  function draw() {
    const what = [filters.status, filters.model && `model ${filters.model}`, filters.node && `node ${short(filters.node)}`].filter(Boolean).join(", ");
    redraw(region, table({ caption: `Jobs${what ? ` (${what})` : ""}`, rows, columns: jobColumns(true, ctx.admin && filters.scope === "network"), empty: "No job matches.", id: "jobs-table" }));
  }
  async function load(before) {
    try {
      const page = await api(`/api/v1/jobs${params(before)}`);
      if (!alive) return;
      rows = before ? [...rows, ...page.data] : page.data;
      more.hidden = !page.has_more;
      draw();
    } catch (exc) {
      ctx.alert(exc.message);
    }
  }
  more.addEventListener("click", () => rows.length && load(rows[rows.length - 1].created_at));
  api("/v1/models").then((m) => replace(formSlot, filterForm(ctx, () => load(), m.data.map((x) => x.id)))).catch(() => replace(formSlot, filterForm(ctx, () => load(), [])));
  load();
  return {
    snapshot(snap) {
      const now = `${snap.ended}:${snap.live.map((j) => j.id + j.status).join()}`;
      if (now !== seen && seen !== null && rows.length <= PAGE) load();
      seen = now;
    },
    unmount() { alive = false; },
  };
}

// Token text quoted, so its spaces and newlines show.
const eventText = (ev) => JSON.stringify(ev.type === "token" ? ev.data.text : ev.data);

async function receiptSection(job) {
  const section = h("section", { class: "card", id: "receipt", "aria-labelledby": "receipt-h" }, h("h2", { id: "receipt-h" }, "Receipt"));
  if (job.status !== "completed") return append(section, [h("p", { class: "dim" }, "Only served work is receipted; this job has no receipt.")]);
  let text;
  try {
    text = await (await request(`/api/v1/jobs/${encodeURIComponent(job.id)}/receipt`)).text();
  } catch (exc) {
    return append(section, [h("p", {}, exc.message)]);
  }
  const platform = await fetch("/api/v1/platform").then((r) => r.json()).catch(() => ({}));
  const result = await verifyText(text, { platformPubkey: platform.pubkey, nodePubkey: job.node_id });
  const ok = result.problems.length === 0;
  const r = result.doc && result.doc.receipt, st = result.doc && result.doc.settlement;
  const file = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const money = (v) => (typeof v === "bigint" ? `${usdc(v)} USDC` : String(v)); // a spoiled file may hold anything
  return append(section, [
    h("p", { class: `verdict ${ok ? "ok" : "bad"}`, id: "receipt-verdict", role: "status" }, ok ? "Verified in this browser" : "Not valid"),
    h("ul", { class: "checks", "aria-label": "Checks" }, result.checks.map((c) => h("li", { class: c.ok ? "" : "fail" }, c.label, c.ok ? "" : `: ${c.detail}`))),
    r && h("h3", {}, "The node's claim"),
    r && facts([
      ["Client", h("code", {}, String(r.client))],
      ["Model", String(r.model)],
      ["Tokens claimed", `${r.input_tokens} in, ${r.output_tokens} out`],
      ["Rates", `${usdc(typeof r.input_rate === "bigint" ? r.input_rate : 0n)} in / ${usdc(typeof r.output_rate === "bigint" ? r.output_rate : 0n)} out, USDC per million tokens`],
      ["Completed", time(Number(r.completed_at))],
      ["Chain", String(r.chain)],
    ]),
    st && typeof st === "object" && h("h3", {}, "The platform's settlement"),
    st && typeof st === "object" && facts([
      ["Tokens billed", `${st.input_tokens} in, ${st.output_tokens} out (${st.delivered_tokens} delivered; metered: ${st.metered})`],
      ["Charged", `${money(st.price)} (node ${money(st.value)}, platform fee ${money(st.fee)})`],
      ["Settled", time(Number(st.settled_at))],
    ]),
    h("p", {}, h("a", { href: file, download: `${job.id}.receipt.json` }, "Download the receipt file"),
      h("span", { class: "dim" }, " — check it offline with "), h("code", {}, "infernet receipt verify")),
    h("details", {}, h("summary", {}, "Receipt JSON"), h("pre", { class: "output" }, text))]);
}

function mountJob(root, ctx, id) {
  const body = h("div", {}, h("p", { class: "dim" }, "Loading…"));
  root.append(h("p", {}, link("#/jobs", "← All jobs")), h("h1", {}, "Job ", h("span", { class: "mono" }, id)), body);
  let alive = true, seen = null, status = null;
  async function refresh() {
    let job, events;
    try {
      [job, events] = await Promise.all([api(`/api/v1/jobs/${encodeURIComponent(id)}`), api(`/api/v1/jobs/${encodeURIComponent(id)}/events`)]);
    } catch (exc) {
      replace(body, h("p", {}, exc.message));
      return;
    }
    if (!alive || `${job.status}:${events.data.length}` === seen) return;
    seen = `${job.status}:${events.data.length}`;
    status = job.status;
    const receipt = await receiptSection(job);
    if (!alive) return;
    redraw(body,
      h("div", { class: "grid2" }, h("section", { class: "card" }, h("h2", {}, "Summary"), facts([
        ["Status", badge(job.status)],
        ["Model", job.model],
        ["Kind", job.kind],
        ["Key", h("code", {}, job.key_id)],
        ["Node", job.node_id ? link(`#/nodes/${job.node_id}`, job.node_id, { class: "mono" }) : "–"],
        ["Created", time(job.created_at)],
        ["Finished", time(job.finished_at)],
        ["Took", took(job)],
        ["Attempts", num(job.attempts)],
        ["Tokens in / out", tokens(job)],
        job.error && ["Error", h("span", { class: "err", id: "job-error" }, job.error.message)],
      ])), receipt),
      job.result && h("section", { class: "card" }, h("h2", {}, "Output"), h("pre", { class: "output" }, job.result.text || "")),
      h("details", { class: "card", open: events.data.length <= 40 }, h("summary", {}, `Events (${events.data.length}${events.has_more ? "+" : ""})`), table({
        caption: "Events as stored: token batches, then done or error", rows: events.data, id: "events-table",
        columns: [
          { label: "#", num: true, cell: (e) => e.seq },
          { label: "Type", cell: (e) => e.type },
          { label: "Data", cell: (e) => h("span", { class: "mono" }, eventText(e)) },
        ],
      })));
  }
  refresh();
  return { snapshot() { if (!TERMINAL.has(status)) refresh(); }, unmount() { alive = false; } };
}

export function mount(root, ctx, arg) {
  return arg ? mountJob(root, ctx, arg) : mountList(root, ctx);
}
