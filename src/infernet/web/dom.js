// Building the page: elements from data (never HTML from strings, so nothing a node or a
// client sends can become markup), tables, and how numbers and times are written.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Redraw a live region unless the keyboard is inside it (a redraw would drop the focus); it
// catches up on the next snapshot after the focus leaves.
export function redraw(el, ...children) {
  if (el.contains(document.activeElement) && document.activeElement !== el) return;
  replace(el, ...children);
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// A data table: columns are {label, cell(row) -> node or text, num (right-aligned)}.
export function table({ caption, columns, rows, empty = "Nothing yet.", id }) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))))
    : [h("tr", {}, h("td", { colspan: String(columns.length), class: "dim" }, empty))];
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", { id }, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

// A labelled form control: the label is a real <label for>, so every input has a name.
let uid = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

// A definition list of [label, value] pairs; a falsy pair is left out.
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

export function link(href, text, props = {}) {
  return h("a", { href, ...props }, text);
}

// -- formats ------------------------------------------------------------------------------

export const short = (id, n = 12) => (id && id.length > n + 1 ? id.slice(0, n) + "…" : id || "");

export function num(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${num(v / 1000, 2)} s` : `${num(v, 0)} ms`);
export const pct = (v) => (v === null || v === undefined ? "–" : `${num(v * 100, 1)} %`);

// micro-USDC (an integer) as USDC, exact
export function usdc(micro) {
  if (micro === null || micro === undefined) return "–";
  const n = BigInt(micro);
  const neg = n < 0n, a = neg ? -n : n;
  return `${neg ? "-" : ""}${a / 1000000n}.${String(a % 1000000n).padStart(6, "0")}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export const time = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");
export const clock = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
export const day = (ts) => (ts ? new Date(ts * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "");
export const gb = (mib) => (mib ? `${num(mib / 1024, mib % 1024 ? 1 : 0)} GB` : "–");
