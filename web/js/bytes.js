// Byte-string helpers: encodings exactly as docs/protocol.md "Conventions" defines them.

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes of a string. */
export function utf8(text) { return encoder.encode(text); }

/** The string of UTF-8 bytes, or null when they are not valid UTF-8. */
export function fromUTF8(bytes) {
  try { return strictDecoder.decode(bytes); } catch { return null; }
}

/** Concatenation of byte strings. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) { out.set(part, offset); offset += part.length; }
  return out;
}

/** Big-endian u16 / u32 / u64 (the last from a Number below 2^53). */
export function u16(n) { return new Uint8Array([(n >>> 8) & 0xff, n & 0xff]); }
export function u32(n) { return new Uint8Array([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]); }
export function readU32(bytes, offset) {
  return ((bytes[offset] << 24) >>> 0) + (bytes[offset + 1] << 16) + (bytes[offset + 2] << 8) + bytes[offset + 3];
}
export function readU64(bytes, offset) {
  return readU32(bytes, offset) * 2 ** 32 + readU32(bytes, offset + 4);
}

/** `u32(len(x)) ‖ x`. */
export function frame(bytes) { return concat(u32(bytes.length), bytes); }

export function hex(bytes) { return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join(''); }
export function fromHex(text) {
  if (text.length % 2 !== 0 || /[^0-9a-fA-F]/.test(text)) throw new TypeError('not hex');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const urlAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const stdAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function encode(bytes, alphabet, padded) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let c = 0; c < chars; c++) out += alphabet[(n >>> (18 - 6 * c)) & 63];
  }
  if (padded) while (out.length % 4) out += '=';
  return out;
}

/** base64url without padding (RFC 4648 §5). */
export function base64url(bytes) { return encode(bytes, urlAlphabet, false); }
/** base64 with padding (RFC 4648 §4). */
export function base64(bytes) { return encode(bytes, stdAlphabet, true); }

/** Strict base64url decoding: no padding, no whitespace, no other alphabet, zero trailing bits; null on any fault. */
export function fromBase64url(text) {
  if (typeof text !== 'string' || text.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let bits = 0, value = 0, o = 0;
  for (const ch of text) {
    const v = urlAlphabet.indexOf(ch);
    if (v < 0) return null;
    value = (value << 6) | v; bits += 6;
    if (bits >= 8) { bits -= 8; out[o++] = (value >>> bits) & 0xff; }
  }
  if (bits > 0 && (value & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

/** Strict padded base64 decoding (for audit proofs and checkpoints); null on any fault. */
export function fromBase64(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0) return null;
  const stripped = text.replace(/={1,2}$/, '');
  if (stripped.includes('=')) return null;
  const translated = stripped.replace(/[+/]/g, c => (c === '+' ? '-' : '_'));
  if (/[-_]/.test(stripped)) return null;
  return fromBase64url(translated);
}

/** Constant-time equality of two byte strings of the same length. */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Overwrites secret bytes held in JavaScript memory. */
export function wipe(bytes) { if (bytes) bytes.fill(0); }
