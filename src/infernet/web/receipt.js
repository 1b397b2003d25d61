// Compute Payment Receipts, verified in the browser by the rules of
// `infernet.protocol.receipts.verify`: the body's fields and arithmetic, then each signature
// over SHA-256 of the body's canonical JSON (keys sorted by code point, no whitespace,
// non-ASCII as is, integers only). The problems it reports are worded as Python's are.
//
// Numbers are parsed exactly (integers as BigInt), because JSON.parse would round an amount
// above 2^53 and then a good receipt would fail, or worse, a changed one be read as another.
//
// A receipt file may grow signed parts (a platform-signed settlement, say): add an entry to
// PARTS with where its body is, how its shape is checked, and who signs it; `verify` checks
// every part the file has.

import { sha256, verifySchnorr } from "./schnorr.js";

export const RECEIPT_TYPE = "infernet.receipt.v1";
export const TERMS = ["type", "job_id", "node_pubkey", "platform_pubkey", "client", "model", "input_rate", "output_rate", "fee_bps", "chain", "unit"];
export const FIELDS = [...TERMS, "input_tokens", "output_tokens", "completed_at", "price", "fee", "value"];
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

// -- the receipt body: shape and arithmetic -----------------------------------------------

const pyList = (xs) => "[" + xs.map((x) => `'${x}'`).join(", ") + "]";
const pyRepr = (v) => (typeof v === "string" ? `'${v}'` : typeof v === "bigint" || v instanceof JsonFloat ? String(v) : v === null ? "None" : v === true ? "True" : v === false ? "False" : JSON.stringify(v));

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

// Problems with a receipt body's shape and arithmetic (signatures aside), as check_body.
export function checkBody(body) {
  if (!isObject(body)) return ["the receipt is not a JSON object"];
  const problems = [];
  const keys = Object.keys(body);
  const missing = FIELDS.filter((f) => !keys.includes(f)).sort(byCodePoint);
  const extra = keys.filter((k) => !FIELDS.includes(k)).sort(byCodePoint);
  if (missing.length || extra.length) return [`wrong fields (missing ${pyList(missing)}, unexpected ${pyList(extra)})`];
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
    if (body[k] !== redo[k]) problems.push(`${k} is ${pyRepr(body[k])} but the tokens and rates give ${redo[k]}`);
  }
  return problems;
}

// -- signed parts -------------------------------------------------------------------------

export const PARTS = [
  {
    name: "receipt",
    label: "Receipt",
    body: (doc) => doc.receipt,
    check: checkBody,
    expect: [
      { option: "nodePubkey", field: "node_pubkey", label: "Node is the one that ran the job", problem: "the receipt names another node than the one expected" },
      { option: "platformPubkey", field: "platform_pubkey", label: "Platform key is this control plane's", problem: "the receipt names another platform key than the one trusted" },
    ],
    signers: [
      { label: "Node signature", pubkey: (body) => body.node_pubkey, signature: (doc) => doc.node_signature, problem: "the node signature does not match" },
      { label: "Platform countersignature", pubkey: (body) => body.platform_pubkey, signature: (doc) => doc.platform_signature, problem: "the platform countersignature does not match" },
    ],
  },
];

// Python's str(x or "") for what a JSON value can be: only a string, or a non-zero integer
// (its decimal digits), can ever read as hex there.
const str = (v) => (typeof v === "string" ? v : typeof v === "bigint" && v !== 0n ? v.toString() : "");

// Every reason a receipt file is not good (empty when it is), and the checks as a list for
// people: [{label, ok, detail}]. `options`: the keys you trust (platformPubkey, nodePubkey).
export async function verify(doc, options = {}) {
  if (!isObject(doc) || !isObject(doc.receipt)) {
    const problem = 'not a receipt file: expected {"receipt": {...}, "node_signature", "platform_signature"}';
    return { problems: [problem], checks: [{ label: "Receipt file", ok: false, detail: problem }] };
  }
  const problems = [], checks = [];
  for (const part of PARTS) {
    const body = part.body(doc);
    if (body === undefined && part.optional) continue;
    const found = part.check(body);
    problems.push(...found);
    checks.push({ label: `${part.label}: fields and arithmetic`, ok: !found.length, detail: found.join("; ") });
    if (found.length && found[0].startsWith("wrong fields")) return { problems, checks };
    let d;
    try {
      d = await digest(body);
    } catch (exc) {
      problems.push(exc.message);
      checks.push({ label: `${part.label}: canonical form`, ok: false, detail: exc.message });
      return { problems, checks };
    }
    for (const e of part.expect || []) {
      if (options[e.option] === undefined || options[e.option] === null) continue;
      const ok = body[e.field] === options[e.option];
      if (!ok) problems.push(e.problem);
      checks.push({ label: e.label, ok, detail: ok ? "" : e.problem });
    }
    for (const s of part.signers) {
      const ok = await verifySchnorr(str(s.pubkey(body)), d, str(s.signature(doc)));
      if (!ok) problems.push(s.problem);
      checks.push({ label: s.label, ok, detail: ok ? "" : s.problem });
    }
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
