// Keys & money: every key sees its balance, holds and spend over time; an admin also
// creates, credits, limits and revokes keys.

import { api, query } from "./api.js";
import { h, replace, redraw, table, field, badge, link, num, short, time, clock, usdc } from "./dom.js";
import { barChart, lineChart } from "./charts.js";

const RANGES = [[24, "last 24 hours"], [24 * 7, "last 7 days"], [24 * 30, "last 30 days"]];
let hours = 24;

const limitText = (v, unit) => (v === null || v === undefined ? "none" : `${v} ${unit}`);

// A chart of micro-USDC amounts, in USDC, or in micro-USDC while they are all under a cent
// (an axis of 0.000025 steps reads badly and does not fit).
function moneyChart(draw, options, micros, data) {
  const small = micros.every((v) => Math.abs(v) < 10000);
  const [scale, unit, digits] = small ? [1, "micro-USDC", 0] : [1e6, "USDC", 6];
  return draw({ ...options, title: `${options.title} (${unit})`, format: (v) => num(v, digits), tick: (v) => num(v, small ? 0 : 2), ...data(micros, scale) });
}

// One key's money: now, over time, and what is held for jobs still running.
function moneyPanel(ctx, keyId, title) {
  const section = h("section", { class: "card", "aria-labelledby": `money-${keyId || "own"}` });
  const range = h("select", {}, RANGES.map(([v, label]) => h("option", { value: String(v), selected: v === hours }, label)));
  const body = h("div", {}, h("p", { class: "dim" }, "Loading…"));
  section.append(h("div", { class: "row" }, h("h2", { id: `money-${keyId || "own"}` }, title), field("Period", range)), body);
  async function load() {
    try {
      const q = query({ key_id: keyId, hours });
      const [hist, bal] = await Promise.all([api(`/api/v1/balance/history${q}`), api(`/api/v1/balance${query({ key_id: keyId })}`)]);
      const per = hist.period_s === 3600 ? "hour" : "day";
      redraw(body,
        h("dl", { class: "stats" },
          [["Available", hist.available_usdc], ["Held for running jobs", hist.held_usdc], ["Spent, last 24 h", hist.spent_24h_usdc], ["Spent, all time", hist.spent_usdc]]
            .map(([k, v]) => h("div", { class: "stat" }, h("dt", {}, k), h("dd", {}, v, " ", h("small", {}, "USDC"))))),
        h("p", { class: "dim" }, `Limits: ${limitText(bal.rate_limit, "requests/min")}; ${limitText(bal.spend_limit, "USDC per 24 h")}. Minimum balance to start a job: ${bal.min_balance_usdc} USDC.`),
        h("div", { class: "charts" },
          moneyChart(barChart, { id: `spend-${keyId || "own"}`, title: `Spend per ${per}`, period: hist.period_s }, hist.spend.map((p) => p.charged),
            (values, scale) => ({ bars: hist.spend.map((p, i) => ({ t: p.t, value: values[i] / scale })) })),
          moneyChart(lineChart, { id: `balance-${keyId || "own"}`, title: "Available balance" }, hist.balance.map((p) => p.balance),
            (values, scale) => ({ times: hist.balance.map((p) => p.t + hist.period_s), series: [{ name: "balance", values: values.map((v) => v / scale) }] }))),
        table({
          caption: `Open holds (${hist.holds.length})`, rows: hist.holds, empty: "Nothing is held: no job of this key is running.",
          columns: [
            { label: "Job", cell: (x) => link(`#/jobs/${encodeURIComponent(x.job_id)}`, short(x.job_id, 20), { class: "mono" }) },
            { label: "Held (USDC)", num: true, cell: (x) => usdc(x.amount) },
            { label: "Since", cell: (x) => clock(x.created_at) },
          ],
        }));
    } catch (exc) {
      replace(body, h("p", {}, exc.message));
    }
  }
  range.addEventListener("change", () => { hours = Number(range.value); load(); });
  load();
  return { el: section, load };
}

function createForm(ctx, onCreated) {
  const name = h("input", { type: "text", maxlength: "200", size: "16" });
  const role = h("select", {}, h("option", { value: "client" }, "client"), h("option", { value: "admin" }, "admin"));
  const rate = h("input", { type: "number", min: "1", step: "1", size: "6" });
  const spend = h("input", { type: "text", inputmode: "decimal", size: "8", placeholder: "5.00" });
  const shown = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "row", "aria-label": "Create a key" },
    field("Name", name), field("Role", role), field("Rate limit", rate, "requests per minute"), field("Spend limit", spend, "USDC per 24 h"),
    h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), role: role.value };
    if (rate.value) body.rate_limit = parseInt(rate.value, 10);
    if (spend.value.trim()) body.spend_limit = spend.value.trim();
    try {
      const k = await api("/api/v1/keys", { method: "POST", body });
      const value = h("code", { id: "new-key" }, k.key);
      replace(shown, h("div", { class: "newkey" }, "New key for ", h("strong", {}, k.name || k.id), " (shown once, copy it now): ", value, " ",
        h("button", { type: "button", class: "secondary", onclick: () => copy(k.key, value) }, "Copy")));
      form.reset();
      onCreated(k.id);
    } catch (exc) {
      ctx.alert(exc.message);
    }
  });
  return h("section", { class: "card" }, h("h2", {}, "Create a key"), form, shown);
}

function copy(text, el) {
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).catch(() => {});
  }
  getSelection().selectAllChildren(el); // a plain-http page has no clipboard API: selected for Ctrl+C
}

// Credit, limits and revocation for one key, and its money.
function manage(ctx, k, reload, note) {
  const amount = h("input", { type: "text", inputmode: "decimal", size: "8", placeholder: "10.00", required: true });
  const rate = h("input", { type: "number", min: "1", step: "1", size: "6", value: k.rate_limit ?? "" });
  const spend = h("input", { type: "text", inputmode: "decimal", size: "8", value: k.spend_limit ?? "" });
  const status = h("p", { class: "dim", role: "status", id: "manage-status" }, note || "");
  const act = async (fn, done) => {
    try {
      await fn();
      const m = await reload(k.id, done);
      m?.focus();
    } catch (exc) {
      ctx.alert(exc.message);
    }
  };
  const credit = h("form", { class: "inline-form", "aria-label": "Credit" }, field("Credit (USDC)", amount), h("button", { type: "submit" }, "Credit"));
  credit.addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => api(`/api/v1/keys/${k.id}/credit`, { method: "POST", body: { amount: amount.value.trim() } }), `Credited ${amount.value.trim()} USDC.`);
  });
  const limits = h("form", { class: "inline-form", "aria-label": "Limits" },
    field("Rate limit", rate, "requests/min, empty: none"), field("Spend limit", spend, "USDC per 24 h, empty: none"), h("button", { type: "submit" }, "Save limits"));
  limits.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { rate_limit: rate.value ? parseInt(rate.value, 10) : null, spend_limit: spend.value.trim() || null };
    act(() => api(`/api/v1/keys/${k.id}`, { method: "PATCH", body }), "Limits saved.");
  });
  const revokeSlot = h("div", { class: "actions" });
  function askRevoke() {
    const confirmBtn = h("button", { type: "button", class: "danger", onclick: () => act(() => api(`/api/v1/keys/${k.id}`, { method: "DELETE" }), "Key revoked.") }, `Confirm: revoke ${k.name || k.id}`);
    replace(revokeSlot, confirmBtn, h("button", { type: "button", class: "secondary", onclick: () => replace(revokeSlot, revokeBtn) }, "Cancel"));
    confirmBtn.focus();
  }
  const revokeBtn = h("button", { type: "button", class: "danger", onclick: askRevoke }, "Revoke…");
  if (!k.revoked && k.id !== ctx.keyInfo.id) revokeSlot.append(revokeBtn);
  const heading = h("h2", { id: "manage-h", tabindex: "-1" }, `Key ${k.name || k.id}`);
  const panel = moneyPanel(ctx, k.id, "Money");
  return {
    el: h("div", {},
      h("section", { class: "card", "aria-labelledby": "manage-h" }, heading, h("p", {}, h("code", {}, k.id), " ", badge(k.role), " ", badge(k.revoked ? "revoked" : "ok")),
        k.revoked ? h("p", { class: "dim" }, "This key is revoked.") : [credit, limits, revokeSlot], status),
      panel.el),
    focus: () => heading.focus(),
  };
}

function keyTable(keys, onManage) {
  return table({
    caption: `API keys (${keys.length})`, rows: keys, id: "keys-table",
    columns: [
      { label: "Key", cell: (k) => [h("strong", {}, k.name || "–"), h("br"), h("span", { class: "mono dim" }, k.id)] },
      { label: "Role", cell: (k) => badge(k.role) },
      { label: "State", cell: (k) => badge(k.revoked ? "revoked" : "ok") },
      { label: "Balance", num: true, cell: (k) => k.balance },
      { label: "Held", num: true, cell: (k) => k.held },
      { label: "Spent", num: true, cell: (k) => k.spent },
      { label: "Rate limit", num: true, cell: (k) => limitText(k.rate_limit, "/min") },
      { label: "Spend limit", num: true, cell: (k) => limitText(k.spend_limit, "USDC") },
      { label: "Created", cell: (k) => time(k.created_at) },
      { label: "", cell: (k) => h("button", { type: "button", class: "secondary", onclick: () => onManage(k.id), "aria-label": `Manage ${k.name || k.id}` }, "Manage") },
    ],
  });
}

export function mount(root, ctx) {
  root.append(h("h1", {}, "Keys & money"));
  const own = moneyPanel(ctx, null, `Your key (${ctx.keyInfo.name || ctx.keyInfo.id})`);
  if (!ctx.admin) {
    root.append(own.el);
    return { snapshot() {} };
  }
  const list = h("section", { class: "card" });
  const detail = h("div");
  let selected = null;
  async function reload(select, note) {
    try {
      const { data } = await api("/api/v1/keys");
      redraw(list, keyTable(data, (id) => reload(id).then((m) => m && m.focus())));
      selected = select ?? selected;
      const k = data.find((x) => x.id === selected);
      if (!k) return null;
      const m = manage(ctx, k, reload, note);
      replace(detail, m.el);
      return m;
    } catch (exc) {
      ctx.alert(exc.message);
      return null;
    }
  }
  root.append(createForm(ctx, () => reload()), list, detail, own.el);
  reload();
  return { snapshot() {} };
}
