// Talking to the control plane: the API key, JSON calls, server-sent events read from a
// fetch body, and the one live feed the pages share.
//
// The key lives in sessionStorage: it survives a reload but not the tab, and it is sent
// only in the Authorization header. EventSource cannot set headers (the key would have to
// ride the URL, into logs), so the feed is read with fetch and a stream reader instead.

const STORE = "infernet-key";

export const session = {
  get key() { return sessionStorage.getItem(STORE) || ""; },
  set(key) { sessionStorage.setItem(STORE, key.trim()); },
  clear() { sessionStorage.removeItem(STORE); },
};

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = error && error.code;
    this.param = error && error.param;
  }
}

export async function request(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Authorization: `Bearer ${session.key}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    throw new ApiError(r.status, data.error);
  }
  return r;
}

export async function api(path, options) {
  return (await request(path, options)).json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// The events of a text/event-stream response, as {event, data, id}; `data` is the raw text.
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ev = { event: "message", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (ev.data.length) yield { event: ev.event, data: ev.data.join("\n"), id: ev.id };
          ev = { event: "message", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") ev.data.push(val);
        else if (name === "event") ev.event = val;
        else if (name === "id") ev.id = val;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// The dashboard's live feed (GET /api/v1/events): calls `onSnapshot` with every snapshot,
// `onState` with "live", "reconnecting" or "signed-out"; reconnects with backoff.
export function liveFeed({ onSnapshot, onState }) {
  const abort = new AbortController();
  let delay = 1000;
  (async () => {
    while (!abort.signal.aborted) {
      try {
        const r = await request("/api/v1/events", { signal: abort.signal, accept: "text/event-stream" });
        for await (const ev of events(r)) {
          if (ev.event === "error") throw new ApiError(401, JSON.parse(ev.data).error);
          if (ev.event !== "snapshot") continue;
          delay = 1000;
          onState("live");
          onSnapshot(JSON.parse(ev.data));
        }
      } catch (exc) {
        if (abort.signal.aborted) return;
        if (exc instanceof ApiError && (exc.status === 401 || exc.status === 403)) {
          onState("signed-out", exc);
          return;
        }
      }
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return { close: () => abort.abort() };
}
