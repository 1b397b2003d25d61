// The chat playground: streams POST /v1/chat/completions from the network, as any OpenAI
// client would, and shows what it cost: time to first token (measured here, so it includes
// the network), tokens, speed, the price from the serving node's rates and the usage, and
// then the charge as the signed receipt states it.

import { api, events, request } from "./api.js";
import { h, replace, field, link, num, ms, usdc } from "./dom.js";

const RATE_PER = 1000000n; // rates are micro-USDC per million tokens

// Kept while the tab lives: the conversation and the settings survive a page switch.
const chat = { messages: [], settings: { model: "", system: "", temperature: "0.7", top_p: "1", max_tokens: "256", seed: "", stop: "" } };

export function priceOf(usage, rates) {
  const gross = BigInt(usage.prompt_tokens) * BigInt(rates.input) + BigInt(usage.completion_tokens) * BigInt(rates.output);
  return (gross + RATE_PER - 1n) / RATE_PER; // rounded up to the micro-unit, as receipts do
}

function numberInput(value, { min, max, step }) {
  return h("input", { type: "number", value, min, max, step, inputmode: "decimal", size: "6" });
}

export function mount(root, ctx) {
  const st = chat.settings;
  const model = h("select", { required: true });
  const system = h("textarea", { rows: "3", placeholder: "You are a helpful assistant." }, st.system);
  const temperature = numberInput(st.temperature, { min: "0", max: "2", step: "0.1" });
  const topP = numberInput(st.top_p, { min: "0", max: "1", step: "0.05" });
  const maxTokens = numberInput(st.max_tokens, { min: "1", max: "32768", step: "1" });
  const seed = numberInput(st.seed, { min: "0", step: "1" });
  const stop = h("input", { type: "text", value: st.stop, maxlength: "100", size: "12" });
  const message = h("textarea", { rows: "3", required: true, placeholder: "Ask something…" });
  const send = h("button", { type: "submit" }, "Send");
  const cancel = h("button", { type: "button", class: "danger", disabled: true }, "Stop");
  const clear = h("button", { type: "button", class: "secondary" }, "New conversation");
  const log = h("div", { class: "chat-log", id: "chat-log" });
  const figures = h("dl", { class: "facts", id: "chat-stats", role: "status", "aria-live": "polite" });
  let running = null;

  const settings = h("form", { class: "stack card", "aria-label": "Settings", onsubmit: (e) => e.preventDefault() },
    h("h2", {}, "Settings"),
    field("Model", model),
    field("System prompt", system),
    h("div", { class: "row" },
      field("Temperature", temperature), field("Top p", topP), field("Max tokens", maxTokens)),
    h("div", { class: "row" }, field("Seed", seed, "optional: repeatable output"), field("Stop", stop, "optional stop string")));
  const composer = h("form", { class: "stack", "aria-label": "Send a message" },
    field("Message", message, "Enter sends; Shift+Enter for a new line"),
    h("div", { class: "actions" }, send, cancel, clear));
  root.append(
    h("h1", {}, "Playground"),
    h("p", { class: "dim" }, "Chat with the network. Each answer is a real job: it is billed to this key and receipted."),
    h("div", { class: "playground" }, settings,
      h("div", {},
        h("section", { class: "card", "aria-label": "Conversation" }, log, composer),
        h("section", { class: "card" }, h("h2", {}, "Last answer"), figures))));

  function remember() {
    Object.assign(st, { model: model.value, system: system.value, temperature: temperature.value, top_p: topP.value, max_tokens: maxTokens.value, seed: seed.value, stop: stop.value });
  }
  for (const el of [model, system, temperature, topP, maxTokens, seed, stop]) el.addEventListener("change", remember);

  function bubble(role, text) {
    const body = h("span", { class: "text" }, text);
    log.append(h("div", { class: `msg msg-${role}` }, h("span", { class: "who" }, role === "user" ? "You" : "Assistant"), body));
    return body;
  }
  function drawLog() {
    replace(log);
    for (const m of chat.messages) bubble(m.role, m.content);
  }
  function show(pairs) {
    replace(figures, pairs.map(([k, v, id]) => [h("dt", {}, k), h("dd", { id }, v)]));
  }

  api("/v1/models").then(({ data }) => {
    const chats = data.filter((m) => m.kind !== "embedding");
    replace(model, chats.map((m) => h("option", { value: m.id, selected: m.id === st.model }, `${m.id} (${m.nodes} node${m.nodes === 1 ? "" : "s"})`)));
    if (!chats.length) replace(model, h("option", { value: "" }, "no model online"));
    remember();
  }).catch((exc) => ctx.alert(exc.message));

  function body(prompt) {
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push(...chat.messages, { role: "user", content: prompt });
    const out = { model: model.value, messages, stream: true, stream_options: { include_usage: true } };
    const nums = { temperature: [temperature, parseFloat], top_p: [topP, parseFloat], max_tokens: [maxTokens, (v) => parseInt(v, 10)], seed: [seed, (v) => parseInt(v, 10)] };
    for (const [k, [el, parse]] of Object.entries(nums)) if (el.value !== "" && Number.isFinite(parse(el.value))) out[k] = parse(el.value);
    if (stop.value) out.stop = [stop.value];
    return out;
  }

  async function settle(jobId, usage) {
    // The serving node's rates and the usage give the price at once; the receipt is what was
    // actually charged (the job's end is stored before GET /api/v1/jobs/{id} answers).
    const job = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
    const node = (await api("/api/v1/nodes")).data.find((n) => n.id === job.node_id);
    const pairs = [];
    if (node && usage) pairs.push(["Price", `${usdc(priceOf(usage, node.price))} USDC at ${usdc(node.price.input)} / ${usdc(node.price.output)} per million tokens in / out`, "chat-price"]);
    try {
      const receipt = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}/receipt`);
      pairs.push(["Charged", `${usdc(receipt.settlement.price)} USDC (signed receipt)`, "chat-charged"]);
    } catch {
      pairs.push(["Charged", "no receipt", "chat-charged"]);
    }
    pairs.push(["Job", link(`#/jobs/${encodeURIComponent(jobId)}`, jobId), "chat-job"]);
    return pairs;
  }

  async function run(prompt) {
    remember();
    const started = performance.now();
    const abort = new AbortController();
    running = abort;
    send.disabled = true;
    cancel.disabled = false;
    bubble("user", prompt);
    const out = bubble("assistant", "");
    out.setAttribute("aria-live", "polite");
    out.setAttribute("aria-busy", "true");
    out.id = "chat-answer";
    show([["Status", "waiting for a node…", "chat-state"]]);
    let first = null, usage = null, jobId = null, text = "";
    try {
      const r = await request("/v1/chat/completions", { method: "POST", body: body(prompt), signal: abort.signal, accept: "text/event-stream" });
      for await (const ev of events(r)) {
        if (ev.data === "[DONE]") break;
        const chunk = JSON.parse(ev.data);
        if (chunk.error) throw new Error(chunk.error.message);
        jobId = chunk.id || jobId;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content;
        if (delta) {
          if (first === null) {
            first = performance.now();
            show([["Status", "streaming…", "chat-state"], ["Time to first token", ms(first - started), "chat-ttft"]]);
          }
          text += delta;
          out.textContent = text;
        }
        if (chunk.usage) usage = chunk.usage;
      }
      chat.messages.push({ role: "user", content: prompt }, { role: "assistant", content: text });
      const end = performance.now();
      const rate = usage && first !== null && end > first ? (usage.completion_tokens - 1) / ((end - first) / 1000) : null;
      const pairs = [
        ["Time to first token", ms(first === null ? null : first - started), "chat-ttft"],
        ["Tokens", usage ? `${num(usage.prompt_tokens)} in, ${num(usage.completion_tokens)} out` : "–", "chat-tokens"],
        ["Speed", rate !== null && rate > 0 ? `${num(rate, 1)} tokens/s` : "–", "chat-speed"],
      ];
      show(pairs);
      if (jobId) show([...pairs, ...(await settle(jobId, usage))]);
    } catch (exc) {
      if (abort.signal.aborted) {
        chat.messages.push({ role: "user", content: prompt }, { role: "assistant", content: text });
        show([["Status", "stopped; the tokens delivered are billed", "chat-state"]]);
      } else {
        out.textContent = text;
        show([["Error", exc.message, "chat-error"]]);
        ctx.alert(exc.message);
      }
    } finally {
      out.setAttribute("aria-busy", "false");
      running = null;
      send.disabled = false;
      cancel.disabled = true;
    }
  }

  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = message.value.trim();
    if (!prompt || running || !model.value) return;
    message.value = "";
    run(prompt);
  });
  message.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  cancel.addEventListener("click", () => running && running.abort());
  clear.addEventListener("click", () => {
    running?.abort();
    chat.messages = [];
    drawLog();
    replace(figures);
    message.focus();
  });
  drawLog();
  return { unmount() { running?.abort(); } };
}
