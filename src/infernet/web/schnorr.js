// BIP-340 Schnorr signature verification on secp256k1, and SHA-256, with nothing but BigInt.
//
// Verification only: no secret ever touches this code, so constant time does not matter and
// clarity wins. It follows the BIP's `Verify(pk, m, sig)` step by step; the browser tests
// check it against Python-signed receipts and coincurve (libsecp256k1), valid and not.
//
// SHA-256 uses crypto.subtle where the page is a secure context (https, or localhost); a
// dashboard opened over plain http on a LAN address has no crypto.subtle, so a small
// implementation here stands in and gives the same bytes.

const P = 2n ** 256n - 2n ** 32n - 977n;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const G = [
  0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
  0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
  1n,
];
const INFINITY = [0n, 1n, 0n]; // Jacobian, Z = 0

const mod = (a, m = P) => ((a % m) + m) % m;

function pow(base, exp, m = P) {
  let result = 1n;
  base = mod(base, m);
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % m;
    base = (base * base) % m;
    exp >>= 1n;
  }
  return result;
}

function inverse(a, m = P) {
  // extended Euclid; a is never 0 here (callers check for the point at infinity)
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

// -- points in Jacobian coordinates (x = X/Z^2, y = Y/Z^3); y^2 = x^3 + 7 ---------------

function double([X, Y, Z]) {
  if (Z === 0n || Y === 0n) return INFINITY;
  const A = (X * X) % P, B = (Y * Y) % P, C = (B * B) % P;
  const D = mod(2n * ((X + B) ** 2n - A - C));
  const E = (3n * A) % P, F = (E * E) % P;
  const X3 = mod(F - 2n * D);
  return [X3, mod(E * (D - X3) - 8n * C), mod(2n * Y * Z)];
}

function add(p1, p2) {
  if (p1[2] === 0n) return p2;
  if (p2[2] === 0n) return p1;
  const [X1, Y1, Z1] = p1, [X2, Y2, Z2] = p2;
  const Z1Z1 = (Z1 * Z1) % P, Z2Z2 = (Z2 * Z2) % P;
  const U1 = (X1 * Z2Z2) % P, U2 = (X2 * Z1Z1) % P;
  const S1 = (Y1 * Z2 * Z2Z2) % P, S2 = (Y2 * Z1 * Z1Z1) % P;
  if (U1 === U2) return S1 === S2 ? double(p1) : INFINITY;
  const H = mod(U2 - U1), R = mod(S2 - S1);
  const HH = (H * H) % P, HHH = (H * HH) % P, V = (U1 * HH) % P;
  const X3 = mod(R * R - HHH - 2n * V);
  return [X3, mod(R * (V - X3) - S1 * HHH), (H * Z1 * Z2) % P];
}

function affine([X, Y, Z]) {
  if (Z === 0n) return null;
  const zi = inverse(Z), zi2 = (zi * zi) % P;
  return [(X * zi2) % P, (Y * zi2 * zi) % P];
}

// a*A + b*B in one pass over the bits (Shamir's trick)
function twoMul(a, A, b, B) {
  const AB = add(A, B);
  let R = INFINITY;
  for (let i = 255; i >= 0; i--) {
    R = double(R);
    const bitA = (a >> BigInt(i)) & 1n, bitB = (b >> BigInt(i)) & 1n;
    if (bitA && bitB) R = add(R, AB);
    else if (bitA) R = add(R, A);
    else if (bitB) R = add(R, B);
  }
  return R;
}

function liftX(x) {
  if (x >= P) return null;
  const c = mod(x * x * x + 7n);
  const y = pow(c, (P + 1n) / 4n);
  if ((y * y) % P !== c) return null;
  return [x, y & 1n ? P - y : y, 1n];
}

// -- bytes --------------------------------------------------------------------------------

const HEX_SPACE = new Set([" ", "\t", "\n", "\r", "\v", "\f"]);

// Hex to bytes as Python's bytes.fromhex reads it (either case, whitespace between pairs);
// null when it is not hex.
export function fromHex(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    if (HEX_SPACE.has(text[i])) { i++; continue; }
    const pair = text.slice(i, i + 2);
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) return null;
    out.push(parseInt(pair, 16));
    i += 2;
  }
  return Uint8Array.from(out);
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const toInt = (bytes) => (bytes.length ? BigInt("0x" + toHex(bytes)) : 0n);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// -- SHA-256 ------------------------------------------------------------------------------

const K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export function sha256Sync(data) {
  const H = Uint32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const length = data.length;
  const padded = new Uint8Array(Math.ceil((length + 9) / 64) * 64);
  padded.set(data);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length * 8) >>> 0);
  const W = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) W[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(W[i - 15], 7) ^ rotr(W[i - 15], 18) ^ (W[i - 15] >>> 3);
      const s1 = rotr(W[i - 2], 17) ^ rotr(W[i - 2], 19) ^ (W[i - 2] >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  H.forEach((word, i) => outView.setUint32(i * 4, word));
  return out;
}

export async function sha256(data) {
  if (globalThis.crypto && crypto.subtle) return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return sha256Sync(data);
}

async function taggedHash(tag, data) {
  const t = await sha256(new TextEncoder().encode(tag));
  return sha256(concat(t, t, data));
}

// -- BIP-340 ------------------------------------------------------------------------------

// True when `sigHex` is a valid BIP-340 signature of the 32-byte `message` by the x-only
// public key `pubkeyHex`; false for anything malformed. Never throws.
export async function verifySchnorr(pubkeyHex, message, sigHex) {
  const pk = fromHex(String(pubkeyHex)), sig = fromHex(String(sigHex));
  if (!pk || !sig || pk.length !== 32 || sig.length !== 64 || message.length !== 32) return false;
  const Pt = liftX(toInt(pk));
  if (!Pt) return false;
  const r = toInt(sig.subarray(0, 32)), s = toInt(sig.subarray(32));
  if (r >= P || s >= N) return false;
  const e = toInt(await taggedHash("BIP0340/challenge", concat(sig.subarray(0, 32), pk, message))) % N;
  const R = affine(twoMul(s, G, mod(N - e, N), Pt)); // s*G - e*P
  return R !== null && (R[1] & 1n) === 0n && R[0] === r;
}
