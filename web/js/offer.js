// Pairing offers (docs/protocol.md "Pairing offer URI", "Pairing transcript and SAS"): reading
// the canonical `errand://pair?…` form and the web link form `https://…/app/#v=1&…`, checked in
// the same order and with the same messages as the command line.
import { base64url, fromBase64url, frame, concat, utf8, fromUTF8 } from './bytes.js';
import { sha256, hkdf } from './primitives.js';

export const uriPrefix = 'errand://pair?';
const defaultHint = "ask for a new pairing code: run 'errand host pair' on the computer";

/** Why a pairing code cannot be used: `code` is notAnOffer, malformed, unsupportedVersion or expired. */
export class OfferError extends Error {
  constructor(code, message, hint = defaultHint) { super(message); this.code = code; this.hint = hint; }
}

/** The device-name rule: 1–64 UTF-8 bytes, no Cc, Cf, Zl, Zp or Cs characters. */
export function isAcceptableName(name) {
  return typeof name === 'string' && name.length > 0 && utf8(name).length <= 64
    && !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(name) && fromUTF8(utf8(name)) === name;
}

/** The canonical offer URI of a web link (`…#v=1&…`), or the text itself when it is not a link. */
export function offerURIFromLink(text) {
  const trimmed = text.trim();
  if (/^https?:\/\//i.test(trimmed)) {
    const hash = trimmed.indexOf('#');
    if (hash >= 0) return uriPrefix + trimmed.slice(hash + 1);
  }
  return trimmed;
}

function percentDecode(text) {
  const bytes = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25) {
      const h = text.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) return null;
      bytes.push(parseInt(h, 16)); i += 2;
    } else if (c < 0x80) bytes.push(c);
    else bytes.push(...utf8(text[i] + ((c >= 0xd800 && c < 0xdc00) ? text[++i] ?? '' : '')));
  }
  return fromUTF8(Uint8Array.from(bytes));
}

function percentEncode(value) {
  let out = '';
  for (const b of utf8(value)) {
    const ch = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~:/@]/.test(ch) ? ch : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function decimal(text) {
  if (!/^(0|[1-9][0-9]{0,17})$/.test(text)) return null;
  return Number(text);
}

function validateRelayURL(text) {
  let url;
  try { url = new URL(text); } catch { url = null; }
  if (utf8(text).length > 512 || !url || !['http:', 'https:'].includes(url.protocol) || !url.hostname
      || url.username || url.password || text.includes('?') || text.includes('#')) {
    throw new OfferError('malformed', 'the relay address in the pairing code is not an http(s) URL');
  }
}

function validateAuditKey(key) {
  const first = key.indexOf('+'), second = first < 0 ? -1 : key.indexOf('+', first + 1);
  const ok = utf8(key).length <= 512 && first > 0 && second === first + 9
    && /^[0-9a-fA-F]{8}$/.test(key.slice(first + 1, second)) && key.length > second + 1
    && /^[\x21-\x7e]+$/.test(key);
  if (!ok) throw new OfferError('malformed', 'the relay audit key in the pairing code is not a verifier key (name+hash+key)');
}

function describe(seconds) {
  const whole = Math.round(seconds);
  const unit = (v, n) => `${v} ${n}${v === 1 ? '' : 's'}`;
  if (whole < 60) return unit(Math.max(whole, 1), 'second');
  if (whole < 3600) return unit(Math.floor(whole / 60), 'minute');
  if (whole < 86400) return unit(Math.floor(whole / 3600), 'hour');
  return unit(Math.floor(whole / 86400), 'day');
}

/**
 * Reads an offer (canonical URI or web link) and checks it against the clock `now` (Unix seconds).
 * Returns {uri (canonical), relayURL, slot, hostSigningKey, hostAgreementKey, secret, expiresAt, auditKey, hostName}.
 * Throws OfferError; messages never contain the secret.
 */
export function parseOffer(input, now = Date.now() / 1000) {
  const text = offerURIFromLink(input);
  if (!text.startsWith(uriPrefix)) {
    throw new OfferError('notAnOffer', `this is not an Errand pairing code (it should start with ${uriPrefix})`,
      "scan the QR code that 'errand host pair' shows on the computer");
  }
  if (utf8(text).length > 4096) throw new OfferError('malformed', 'the pairing code is too long to be an Errand offer');
  const fields = new Map();
  for (const pair of text.slice(uriPrefix.length).split('&')) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new OfferError('malformed', 'the pairing code has a parameter without a name or value');
    const name = pair.slice(0, equals);
    const shown = name.length <= 8 && /^[a-z]+$/.test(name) ? `the '${name}' parameter` : 'a parameter';
    const value = percentDecode(pair.slice(equals + 1));
    if (value === null) throw new OfferError('malformed', `in the pairing code, ${shown} is not properly percent-encoded`);
    if (fields.has(name)) throw new OfferError('malformed', `the pairing code repeats ${shown}`);
    fields.set(name, value);
  }
  if (!fields.has('v')) throw new OfferError('malformed', 'the pairing code has no format version (v)');
  const version = decimal(fields.get('v'));
  if (version === null) throw new OfferError('malformed', "the pairing code's format version is not a number");
  if (version !== 1) {
    throw new OfferError('unsupportedVersion', `the pairing code uses offer format ${version}; this Errand understands format 1`,
      'update Errand on this device (or on the computer, if it is the older one)');
  }
  const required = (name, what) => {
    const value = fields.get(name);
    if (!value) throw new OfferError('malformed', `the pairing code is missing the ${what} (${name})`);
    return value;
  };
  const key = (name, what) => {
    const bytes = fromBase64url(required(name, what));
    if (!bytes) throw new OfferError('malformed', `the pairing code's ${what} (${name}) is not base64url`);
    return bytes;
  };
  const relayURL = required('r', 'relay address');
  const slot = key('s', 'pairing slot id');
  if (slot.length !== 16) throw new OfferError('malformed', `the pairing slot id must be 16 bytes, got ${slot.length}`);
  const hostSigningKey = key('k', 'host signing key');
  const hostAgreementKey = key('x', 'host key-agreement key');
  for (const [bytes, what] of [[hostSigningKey, 'Ed25519 public key'], [hostAgreementKey, 'X25519 public key']]) {
    if (bytes.length !== 32) {
      throw new OfferError('malformed', `the pairing code carries a host key of the wrong size (${what} must be 32 bytes, got ${bytes.length})`);
    }
  }
  const secretText = required('t', 'one-time secret');
  const secret = fromBase64url(secretText);
  if (!secret) throw new OfferError('malformed', "the pairing code's one-time secret (t) is not base64url");
  const expiry = decimal(required('e', 'expiry time'));
  if (expiry === null || expiry <= 0 || expiry >= 32503680000) {
    throw new OfferError('malformed', "the pairing code's expiry time (e) is not a Unix time in seconds");
  }
  validateRelayURL(relayURL);
  if (secret.length < 16 || secret.length > 64) {
    throw new OfferError('malformed', `the one-time secret must be 16 to 64 bytes, got ${secret.length}`);
  }
  const auditKey = fields.get('a');
  if (auditKey !== undefined) validateAuditKey(auditKey);
  const hostName = fields.get('n');
  if (hostName !== undefined && !isAcceptableName(hostName)) {
    throw new OfferError('malformed', 'the host name in the pairing code must be 1 to 64 bytes of printable text');
  }
  const remaining = expiry - now;
  if (remaining <= 0) {
    throw new OfferError('expired', `pairing offer expired ${describe(-remaining)} ago`, "run 'errand host pair' again on the computer");
  }
  if (remaining > 660) {
    throw new OfferError('malformed', `pairing offer claims to stay valid for ${describe(remaining)}; offers last at most 10 minutes`,
      'check that the clocks of this device and the computer are right');
  }
  const offer = { relayURL, slot, hostSigningKey, hostAgreementKey, secret, expiresAt: expiry, auditKey, hostName };
  offer.uri = canonicalURI(offer);
  return offer;
}

/** The canonical URI: known parameters in the order v r s k x t e a n. */
export function canonicalURI(offer) {
  const parameters = [['v', '1'], ['r', offer.relayURL], ['s', base64url(offer.slot)], ['k', base64url(offer.hostSigningKey)],
    ['x', base64url(offer.hostAgreementKey)], ['t', base64url(offer.secret)], ['e', String(offer.expiresAt)]];
  if (offer.auditKey !== undefined) parameters.push(['a', offer.auditKey]);
  if (offer.hostName !== undefined) parameters.push(['n', offer.hostName]);
  return uriPrefix + parameters.map(([n, v]) => `${n}=${percentEncode(v)}`).join('&');
}

/** SHA-256 of the pairing transcript over the canonical URI and the companion's two public keys. */
export async function transcriptHash(uri, companionSigningKey, companionAgreementKey) {
  return sha256(concat(frame(utf8('errand pairing transcript v1')), frame(utf8(uri)),
    frame(companionSigningKey), frame(companionAgreementKey)));
}

/** The six SAS digits ("654700"), keyed with the offer's secret. */
export async function shortAuthenticationString(secret, th) {
  const okm = await hkdf(secret, th, utf8('errand/v1/sas'), 8);
  let value = 0n;
  for (const b of okm) value = (value << 8n) | BigInt(b);
  return String(value % 1000000n).padStart(6, '0');
}

/** "654 700". */
export const formatSAS = digits => `${digits.slice(0, 3)} ${digits.slice(3)}`;

/** The fingerprint of an Ed25519 public key: "3f2a 9c01 77de 0b54". */
export async function fingerprint(publicKey) {
  const digest = await sha256(publicKey);
  return Array.from(digest.slice(0, 8), b => b.toString(16).padStart(2, '0')).join('').match(/.{4}/g).join(' ');
}
