// Compute Payment Receipts, verified in the browser by the rules of
// `infernet.protocol.receipts.verify`. A receipt file has two signed parts: the node's claim
// (`receipt`, what it served) and the platform's settlement (what it metered and charged for
// that claim, naming it by digest). Each part's fields and arithmetic are checked, then its
// signature over SHA-256 of its canonical JSON (keys sorted by code point, no whitespace,
// non-ASCII as is, integers only). The problems it reports are worded as Python's are.
//
// Numbers are parsed exactly (integers as BigInt), because JSON.parse would round an amount
// above 2^53 and then a good receipt would fail, or worse, a changed one be read as another.
//
// A further signed part is one more entry in PARTS: where its body is, how it is checked,
// which keys must match, who signs it; `verify` walks them in order.

import { sha256, toHex, verifySchnorr } from "./schnorr.js";

export const RECEIPT_TYPE = "infernet.receipt.v1";
export const TERMS = ["type", "job_id", "node_pubkey", "platform_pubkey", "client", "model", "input_rate", "output_rate", "fee_bps", "chain", "unit"];
export const FIELDS = [...TERMS, "input_tokens", "output_tokens", "completed_at", "price", "fee", "value"];
export const SETTLEMENT_TYPE = "infernet.settlement.v1";
export const SETTLEMENT_FIELDS = ["type", "job_id", "claim", "input_tokens", "output_tokens", "delivered_tokens", "metered", "price", "fee", "value", "settled_at"];
export const METERED = ["claimed", "counted", "bounded"];
const PER_TOKENS = 1000000n;
const BPS = 10000n;

// -- exact JSON ---------------------------------------------------------------------------

// A JSON number with a fraction or exponent: kept as its text so canonical() can refuse it
// as Python's canonical() refuses a float.
export class JsonFloat {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

// JSON.parse, but integers become BigInt, other numbers JsonFloat, and objects have no
// prototype (a "__proto__" key is just a key). Duplicate keys: the last wins, as in Python.
export function parseExact(text) {
  let i = 0;
  const fail = (what) => { throw new SyntaxError(`${what} at position ${i}`); };
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
  function value() {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = Object.create(null);
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = string();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        obj[k] = value();
        ws();
        const sep = text[i++];
        if (sep === "}") return obj;
        if (sep !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") return arr;
        if (sep !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail("unexpected character");
    i += m[0].length;
    return m[2] || m[3] ? new JsonFloat(m[0]) : BigInt(m[0]);
  }
  function string() {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(i));
    if (!m) fail("bad string");
    i += m[0].length;
    return JSON.parse(m[0]);
  }
  const out = value();
  ws();
  if (i !== text.length) fail("trailing data");
  return out;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonFloat);

// -- canonical JSON -----------------------------------------------------------------------

function byCodePoint(a, b) {
  // Python sorts str by code point; JS's default sort compares UTF-16 units, which differs
  // for characters beyond U+FFFF.
  const x = Array.from(a), y = Array.from(b);
  for (let k = 0; k < Math.min(x.length, y.length); k++) {
    const d = x[k].codePointAt(0) - y[k].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

function quote(s) {
  if (/\p{Surrogate}/u.test(s)) throw new Error("'utf-8' codec can't encode a lone surrogate");
  return JSON.stringify(s); // the same escapes as Python's json with ensure_ascii=False
}

export function canonical(v) {
  if (v === null) return "null";
  if (v === true || v === false) return String(v);
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return quote(v);
  if (v instanceof JsonFloat || typeof v === "number") throw new Error("floats are not allowed in canonical JSON; use integer micro-units");
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (isObject(v)) return "{" + Object.keys(v).sort(byCodePoint).map((k) => quote(k) + ":" + canonical(v[k])).join(",") + "}";
  throw new Error(`${typeof v} is not allowed in canonical JSON`);
}

export async function digest(body) {
  return sha256(new TextEncoder().encode(canonical(body)));
}

// -- shape and arithmetic ----------------------------------------------------------------

// How Python writes a value: repr (`!r`) and str (an f-string's `{x}`).
const pyRepr = (v) => (typeof v === "string" ? `'${v}'` : pyStr(v));
const pyStr = (v) => (typeof v === "string" || typeof v === "bigint" || v instanceof JsonFloat ? String(v) : v === null || v === undefined ? "None" : v === true ? "True" : v === false ? "False" : JSON.stringify(v));
const pyList = (xs) => "[" + xs.map(pyRepr).join(", ") + "]";
const pyTuple = (xs) => "(" + xs.map(pyRepr).join(", ") + ")";
// A number as Python compares it (a bool is 0 or 1 there); NaN for what it could not compare.
const num = (v) => (typeof v === "bigint" ? v : typeof v === "boolean" ? BigInt(v) : v instanceof JsonFloat ? Number(v.text) : NaN);

function price(inputTokens, outputTokens, inputRate, outputRate) {
  for (const n of [inputTokens, outputTokens, inputRate, outputRate]) {
    if (typeof n !== "bigint" || n < 0n) throw new Error("token counts and rates are non-negative integers");
  }
  const gross = inputTokens * inputRate + outputTokens * outputRate;
  return (gross + PER_TOKENS - 1n) / PER_TOKENS; // ceil: gross is never negative here
}

function split(gross, feeBps) {
  if (typeof feeBps !== "bigint" || feeBps < 0n || feeBps > BPS) throw new Error("fee_bps must be within 0..10000");
  const fee = (gross * feeBps) / BPS;
  return [gross - fee, fee];
}

function fieldsDiffer(body, fields) {
  const keys = Object.keys(body);
  const missing = fields.filter((f) => !keys.includes(f)).sort(byCodePoint);
  const extra = keys.filter((k) => !fields.includes(k)).sort(byCodePoint);
  return missing.length || extra.length ? `wrong fields (missing ${pyList(missing)}, unexpected ${pyList(extra)})` : null;
}

// Problems with the node's claim: shape and arithmetic (signatures aside), as check_body.
export function checkBody(body) {
  if (!isObject(body)) return ["the receipt is not a JSON object"];
  const wrong = fieldsDiffer(body, FIELDS);
  if (wrong) return [wrong];
  const problems = [];
  if (body.type !== RECEIPT_TYPE) problems.push(`type is ${pyRepr(body.type)}, expected '${RECEIPT_TYPE}'`);
  let gross, value, fee;
  try {
    gross = price(body.input_tokens, body.output_tokens, body.input_rate, body.output_rate);
    [value, fee] = split(gross, body.fee_bps);
  } catch (exc) {
    return [...problems, `bad numbers: ${exc.message}`];
  }
  const redo = { price: gross, fee, value };
  for (const k of ["price", "fee", "value"]) {
    if (body[k] !== redo[k]) problems.push(`${k} is ${pyStr(body[k])} but the tokens and rates give ${redo[k]}`);
  }
  return problems;
}

// Problems with the platform's settlement of this claim (signatures aside), as
// check_settlement: it names the claim, bills no more than claimed, and adds up.
export async function checkSettlement(claim, body) {
  if (!isObject(body)) return ["the settlement is not a JSON object"];
  const wrong = fieldsDiffer(body, SETTLEMENT_FIELDS);
  if (wrong) return [`the settlement has ${wrong}`];
  const problems = [];
  if (body.type !== SETTLEMENT_TYPE) problems.push(`settlement type is ${pyRepr(body.type)}, expected '${SETTLEMENT_TYPE}'`);
  if (body.job_id !== claim.job_id) problems.push("the settlement is for another job than the claim");
  let gross, value, fee;
  try {
    if (body.claim !== toHex(await digest(claim))) problems.push("the settlement names another claim");
    gross = price(body.input_tokens, body.output_tokens, claim.input_rate, claim.output_rate);
    [value, fee] = split(gross, claim.fee_bps);
  } catch (exc) {
    return [...problems, `bad numbers in the settlement: ${exc.message}`];
  }
  if (!METERED.includes(body.metered)) problems.push(`metered is ${pyRepr(body.metered)}, expected one of ${pyTuple(METERED)}`);
  if (body.input_tokens > num(claim.input_tokens) || body.output_tokens > num(claim.output_tokens)) problems.push("the settlement bills more tokens than the node claimed");
  const delivered = num(body.delivered_tokens);
  if (!(delivered >= 0n && delivered <= body.output_tokens)) problems.push("delivered tokens are not within 0 and the billed output");
  const redo = { price: gross, fee, value };
  for (const k of ["price", "fee", "value"]) {
    if (body[k] !== redo[k]) problems.push(`settlement ${k} is ${pyStr(body[k])} but the billed tokens and rates give ${redo[k]}`);
  }
  return problems;
}

// -- signed parts -------------------------------------------------------------------------

// Python's str(x or "") for what a JSON value can be: only a string, or a non-zero integer
// (its decimal digits), can ever read as hex there.
const str = (v) => (typeof v === "string" ? v : typeof v === "bigint" && v !== 0n ? v.toString() : "");

// In order. `check(doc)` gives the part's problems; `stop(problems)`: the rest cannot be
// read, as Python returns early; a part whose body is not an object has nothing to sign.
export const PARTS = [
  {
    label: "Claim",
    body: (doc) => doc.receipt,
    check: async (doc) => checkBody(doc.receipt),
    stop: (problems) => problems.length > 0 && problems[0].startsWith("wrong fields"),
    expect: [
      { option: "nodePubkey", field: "node_pubkey", label: "Node is the one that ran the job", problem: "the receipt names another node than the one expected" },
      { option: "platformPubkey", field: "platform_pubkey", label: "Platform key is this control plane's", problem: "the receipt names another platform key than the one trusted" },
    ],
    signer: { label: "Node signature on the claim", pubkey: (doc) => doc.receipt.node_pubkey, signature: (doc) => doc.node_signature, problem: "the node signature does not match" },
  },
  {
    label: "Settlement",
    body: (doc) => doc.settlement,
    check: (doc) => checkSettlement(doc.receipt, doc.settlement),
    stop: () => false,
    expect: [],
    signer: { label: "Platform signature on the settlement", pubkey: (doc) => doc.receipt.platform_pubkey, signature: (doc) => doc.platform_signature, problem: "the platform signature on the settlement does not match" },
  },
];

// A receipt from before settlements: the platform countersigned the claim itself.
const LEGACY = {
  label: "Countersignature",
  body: (doc) => doc.receipt,
  check: async () => [],
  stop: () => false,
  expect: [],
  signer: { label: "Platform countersignature on the claim", pubkey: (doc) => doc.receipt.platform_pubkey, signature: (doc) => doc.platform_signature, problem: "the platform countersignature does not match" },
};

// Every reason a receipt file is not good (empty when it is), and the checks as a list for
// people: [{label, ok, detail}]. `options`: the keys you trust (platformPubkey, nodePubkey).
export async function verify(doc, options = {}) {
  if (!isObject(doc) || !isObject(doc.receipt)) {
    const problem = 'not a receipt file: expected {"receipt": {...}, "node_signature", "settlement": {...}, "platform_signature"}';
    return { problems: [problem], checks: [{ label: "Receipt file", ok: false, detail: problem }] };
  }
  const problems = [], checks = [];
  const note = (label, found) => {
    problems.push(...found);
    checks.push({ label, ok: !found.length, detail: found.join("; ") });
  };
  for (const part of "settlement" in doc ? PARTS : [PARTS[0], LEGACY]) {
    const found = await part.check(doc);
    note(`${part.label}: fields and arithmetic`, found);
    if (part.stop(found)) break;
    const body = part.body(doc);
    if (!isObject(body)) continue;
    let d;
    try {
      d = await digest(body);
    } catch (exc) {
      note(`${part.label}: canonical form`, [exc.message]);
      break;
    }
    for (const e of part.expect) {
      if (options[e.option] === undefined || options[e.option] === null) continue;
      note(e.label, body[e.field] === options[e.option] ? [] : [e.problem]);
    }
    const s = part.signer;
    note(s.label, (await verifySchnorr(str(s.pubkey(doc)), d, str(s.signature(doc)))) ? [] : [s.problem]);
  }
  return { problems, checks };
}

// A receipt file's text (as GET /api/v1/jobs/{id}/receipt returns it) checked in full.
export async function verifyText(text, options = {}) {
  let doc;
  try {
    doc = parseExact(text);
  } catch (exc) {
    return { problems: [`not JSON: ${exc.message}`], checks: [{ label: "Receipt file", ok: false, detail: exc.message }] };
  }
  return { doc, ...(await verify(doc, options)) };
}
