// The dashboard's shell: the key, the one live feed, the hash router and the pages.
//
// Routes: #/overview, #/nodes, #/nodes/<id>, #/jobs, #/jobs/<id>, #/playground, #/keys.
// `infernet up` links to /dashboard#key=<key>: the fragment never reaches a server, and the
// page takes the key out of the address bar at once.

import { liveFeed, session } from "./api.js";
import { h, replace } from "./dom.js";
import * as overview from "./overview.js";
import * as nodes from "./nodes.js";
import * as jobs from "./jobs.js";
import * as playground from "./playground.js";
import * as keys from "./keys.js";

const PAGES = { overview, nodes, jobs, playground, keys };
const SPAN_S = 3600;

const $ = (sel) => document.querySelector(sel);
const state = { snapshot: null, series: new Map(), feed: null, page: null, route: "" };

// What every page gets: the latest snapshot, the merged chart points, who we are.
const ctx = {
  get snapshot() { return state.snapshot; },
  get admin() { return state.snapshot?.key.role === "admin"; },
  get keyInfo() { return state.snapshot?.key; },
  series() { return [...state.series.values()].sort((a, b) => a.t - b.t); },
  alert,
};

function alert(message) {
  replace($("#alert"), message ? h("p", {}, message) : null);
}

function takeKeyFromFragment() {
  const m = /^#key=([^&]*)/.exec(location.hash);
  if (!m) return;
  session.set(decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search + "#/overview");
}

function parseRoute() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: PAGES[name] ? name : "overview", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

function mergeSnapshot(snap) {
  if (!state.snapshot) state.series.clear();
  for (const p of snap.series) state.series.set(p.t, p);
  for (const t of state.series.keys()) if (t < snap.t - SPAN_S) state.series.delete(t);
  state.snapshot = snap;
}

function showRoute(focus) {
  const { name, arg } = parseRoute();
  state.route = location.hash;
  state.page?.unmount?.();
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = replace($("#main"));
  alert("");
  state.page = PAGES[name].mount(root, ctx, arg) || {};
  const heading = root.querySelector("h1");
  document.title = `${heading ? heading.textContent : name} · infernet`;
  if (focus && heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

function setStatus(text, tone) {
  const el = $("#conn");
  el.textContent = text;
  el.dataset.tone = tone;
}

function signedIn() {
  $("#login").hidden = true;
  $("#account").hidden = false;
  setStatus("Connecting…", "wait");
  state.feed?.close();
  state.snapshot = null;
  let first = true;
  state.feed = liveFeed({
    onSnapshot(snap) {
      mergeSnapshot(snap);
      const k = snap.key;
      $("#who").textContent = `${k.name || k.id} · ${k.role === "admin" ? "admin, network view" : "client, your jobs"}`;
      if (first) {
        first = false;
        showRoute(false);
      } else {
        state.page?.snapshot?.(snap);
      }
    },
    onState(st, exc) {
      if (st === "live") setStatus("Live", "ok");
      else if (st === "reconnecting") setStatus("Reconnecting…", "wait");
      else {
        signOut();
        alert(`${exc ? exc.message : "The key was refused."} Paste the API key \`infernet up\` printed.`);
      }
    },
  });
}

function signOut() {
  state.feed?.close();
  state.feed = null;
  state.page?.unmount?.();
  state.page = null;
  state.snapshot = null;
  session.clear();
  $("#login").hidden = false;
  $("#account").hidden = true;
  $("#who").textContent = "";
  setStatus("Signed out", "off");
  replace($("#main"), h("h1", {}, "Sign in"), h("p", {}, "Paste an API key above. An admin key shows the whole network; a client key shows its own jobs and balance."));
  $("#key-input").focus();
}

function start() {
  takeKeyFromFragment();
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("#key-input").value.trim();
    if (!value) return;
    session.set(value);
    $("#key-input").value = "";
    alert("");
    signedIn();
  });
  $("#logout").addEventListener("click", signOut);
  $("#skip").addEventListener("click", (e) => {
    e.preventDefault();
    $("#main").focus();
  });
  addEventListener("hashchange", () => {
    if (/^#key=/.test(location.hash)) {
      takeKeyFromFragment();
      signedIn();
    } else if (state.snapshot && location.hash !== state.route) {
      showRoute(true);
    }
  });
  if (!location.hash || !location.hash.startsWith("#/")) history.replaceState(null, "", "#/overview");
  if (session.key) signedIn();
  else signOut();
}

start();
