// The protocol's primitives (docs/protocol.md "Primitives"): WebCrypto where the browser has
// the primitive (SHA-256, HMAC, HKDF, X25519 and Ed25519 for long-term keys), libsodium compiled
// to WebAssembly for the rest (XChaCha20-Poly1305, sealed boxes, X25519 with raw ratchet keys).
import * as sodium from './sodium.js';
import { concat, fromHex } from './bytes.js';

const subtle = globalThis.crypto.subtle;
const zeroSalt = new Uint8Array(32);

export { loadSodium } from './sodium.js';

export const randomBytes = n => sodium.randomBytes(n);

/** SHA-256 (32 bytes). */
export async function sha256(bytes) { return new Uint8Array(await subtle.digest('SHA-256', bytes)); }

/** HMAC-SHA256 (32 bytes) with a key of any length. */
export async function hmacSha256(key, message) {
  if (key.length === 0) return sodium.hmacSha256(key, message);
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, message));
}

/** HKDF-SHA256 (RFC 5869); an empty salt means 32 zero bytes. */
export async function hkdf(ikm, salt, info, length) {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: salt.length ? salt : zeroSalt, info }, k, length * 8);
  return new Uint8Array(bits);
}

/** XChaCha20-Poly1305-IETF: ciphertext ‖ tag, and its opening (null when it does not authenticate). */
export const aeadSeal = (message, ad, nonce, key) => sodium.aeadEncrypt(message, ad, nonce, key);
export const aeadOpen = (sealed, ad, nonce, key) => sodium.aeadDecrypt(sealed, ad, nonce, key);

/** libsodium sealed boxes. */
export const sealBox = (message, publicKey) => sodium.sealBox(message, publicKey);
export const openSealedBox = (sealed, publicKey, secretKey) => sodium.openSealedBox(sealed, publicKey, secretKey);

/** A raw X25519 key pair (ratchet and one-use keys, which live in the serialised session state). */
export function x25519KeyPair(secret = sodium.randomBytes(32)) {
  return { secretKey: secret, publicKey: sodium.x25519Base(secret) };
}
/** X25519 with a raw secret; throws on an all-zero result. */
export const x25519 = (secret, publicKey) => sodium.x25519(secret, publicKey);

// PKCS #8 prefixes of a raw 32-byte Ed25519 seed / X25519 secret (RFC 8410).
const ed25519Prefix = fromHex('302e020100300506032b657004220420');
const x25519Prefix = fromHex('302e020100300506032b656e04220420');

let webCryptoCurves;
/** Whether this browser's WebCrypto has Ed25519 and X25519 (Chromium 113+, Firefox 129+, Safari 17+). */
export async function hasWebCryptoCurves() {
  webCryptoCurves ??= (async () => {
    try {
      await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
      await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
      return true;
    } catch { return false; }
  })();
  return webCryptoCurves;
}

/**
 * A long-term Ed25519 identity. With WebCrypto it is a non-extractable CryptoKey (stored as is
 * in IndexedDB); otherwise the raw seed, which the store keeps encrypted at rest.
 */
export async function newSigningIdentity(seed) {
  if (!seed && await hasWebCryptoCurves()) {
    const pair = await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    const publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
    return { kind: 'webcrypto', privateKey: pair.privateKey, publicKey };
  }
  if (seed && await hasWebCryptoCurves()) {
    // Known seeds (test vectors) as non-extractable keys too, so the same code path is tested.
    const privateKey = await subtle.importKey('pkcs8', concat(ed25519Prefix, seed), { name: 'Ed25519' }, false, ['sign']);
    return { kind: 'webcrypto', privateKey, publicKey: sodium.ed25519KeyPairFromSeed(seed).publicKey };
  }
  const s = seed ?? sodium.randomBytes(32);
  return { kind: 'raw', seed: s, publicKey: sodium.ed25519KeyPairFromSeed(s).publicKey };
}

/** Ed25519 signature (64 bytes) by an identity from `newSigningIdentity`. */
export async function sign(identity, message) {
  if (identity.kind === 'webcrypto') return new Uint8Array(await subtle.sign('Ed25519', identity.privateKey, message));
  const { secretKey } = sodium.ed25519KeyPairFromSeed(identity.seed);
  try { return sodium.ed25519Sign(message, secretKey); } finally { secretKey.fill(0); }
}

/** Whether `signature` is a valid Ed25519 signature of `message` by `publicKey` (libsodium's rules). */
export function verify(signature, message, publicKey) {
  return signature.length === 64 && publicKey.length === 32 && sodium.ed25519Verify(signature, message, publicKey);
}

/** A long-term X25519 identity: a non-extractable WebCrypto key where possible, else a raw secret. */
export async function newAgreementIdentity(secret) {
  if (await hasWebCryptoCurves()) {
    if (secret) {
      const privateKey = await subtle.importKey('pkcs8', concat(x25519Prefix, secret), { name: 'X25519' }, false, ['deriveBits']);
      return { kind: 'webcrypto', privateKey, publicKey: sodium.x25519Base(secret) };
    }
    const pair = await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
    return { kind: 'webcrypto', privateKey: pair.privateKey, publicKey: new Uint8Array(await subtle.exportKey('raw', pair.publicKey)) };
  }
  const s = secret ?? sodium.randomBytes(32);
  return { kind: 'raw', secret: s, publicKey: sodium.x25519Base(s) };
}

/** X25519 between a long-term identity and a peer's public key; throws on an all-zero result. */
export async function agree(identity, peerPublicKey) {
  if (identity.kind === 'raw') return sodium.x25519(identity.secret, peerPublicKey);
  const publicKey = await subtle.importKey('raw', peerPublicKey, { name: 'X25519' }, true, []);
  const shared = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: publicKey }, identity.privateKey, 256));
  if (shared.every(b => b === 0)) throw new Error('x25519: all-zero result');
  return shared;
}
