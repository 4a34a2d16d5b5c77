// libsodium for the browser companion: a small wrapper around web/vendor/sodium.mjs and
// sodium.wasm (Debian's libsodium 1.0.18 built by scripts/build-web-sodium).
//
// Call `await loadSodium()` once; every other function is synchronous afterwards. All byte
// strings are Uint8Array. Results are copied out of wasm memory, and every temporary buffer in
// wasm memory (keys, plaintexts, states) is zeroed before it is freed.
//
// The module is built without WASM_BIGINT: each 64-bit length argument of libsodium
// (unsigned long long) is passed as two numbers, low and high 32 bits.

import createSodiumModule from '../vendor/sodium.mjs';

const AEAD_KEYBYTES = 32;
const AEAD_NPUBBYTES = 24;
const AEAD_ABYTES = 16;
const BOX_PUBLICKEYBYTES = 32;
const BOX_SECRETKEYBYTES = 32;
const BOX_SEALBYTES = 48; // ephemeral public key + MAC
const SCALARMULT_BYTES = 32;
const SIGN_SEEDBYTES = 32;
const SIGN_PUBLICKEYBYTES = 32;
const SIGN_SECRETKEYBYTES = 64;
const SIGN_BYTES = 64;
const GENERICHASH_BYTES_MIN = 16;
const GENERICHASH_BYTES_MAX = 64;
const GENERICHASH_KEYBYTES_MIN = 16;
const GENERICHASH_KEYBYTES_MAX = 64;
const SHA256_BYTES = 32;
const HMACSHA256_BYTES = 32;
const MAX_LENGTH = 0x7fffffff; // wasm32 memory cannot hold more

let loading = null;
let sodium = null;

/**
 * Loads and initialises libsodium. Idempotent: every call returns the same promise (a failed
 * load is forgotten, so a later call tries again). Resolves to undefined.
 */
export function loadSodium() {
  if (loading === null) {
    loading = (async () => {
      const wasmURL = new URL('../vendor/sodium.wasm', import.meta.url).href;
      const module = await createSodiumModule({
        locateFile: (path, prefix) => (path.endsWith('.wasm') ? wasmURL : prefix + path),
      });
      if (module._sodium_init() < 0) throw new Error('sodium_init failed');
      sodium = module;
    })();
    loading.catch(() => {
      loading = null;
    });
  }
  return loading;
}

// --- helpers -------------------------------------------------------------------------------

function ready() {
  if (sodium === null) throw new Error('sodium.js: await loadSodium() first');
  return sodium;
}

function checkBytes(value, name, length) {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (length !== undefined && value.length !== length) {
    throw new TypeError(`${name} must be ${length} bytes, not ${value.length}`);
  }
  if (value.length > MAX_LENGTH) throw new RangeError(`${name} is too long`);
  return value;
}

function checkLength(value, name, min, max) {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, not ${value}`);
  }
  return value;
}

// Runs fn with an allocator; everything allocated is zeroed and freed afterwards, also on throw.
// Always read sodium.HEAPU8 afresh: memory growth (inside malloc) replaces the view.
function withMemory(fn) {
  const m = ready();
  const blocks = [];
  const memory = {
    alloc(n) {
      const p = m._malloc(n > 0 ? n : 1);
      if (p === 0) throw new RangeError('sodium.js: out of wasm memory');
      blocks.push([p, n]);
      return p;
    },
    put(bytes) {
      const p = memory.alloc(bytes.length);
      m.HEAPU8.set(bytes, p);
      return p;
    },
    take(p, n) {
      return m.HEAPU8.slice(p, p + n);
    },
  };
  try {
    return fn(m, memory);
  } finally {
    for (const [p, n] of blocks) {
      m.HEAPU8.fill(0, p, p + n);
      m._free(p);
    }
  }
}

// --- random --------------------------------------------------------------------------------

/** `n` bytes from libsodium's randombytes_buf (crypto.getRandomValues underneath). */
export function randomBytes(n) {
  checkLength(n, 'randomBytes length', 0, MAX_LENGTH);
  return withMemory((m, memory) => {
    const p = memory.alloc(n);
    m._randombytes_buf(p, n);
    return memory.take(p, n);
  });
}

// --- XChaCha20-Poly1305-IETF ---------------------------------------------------------------

/**
 * XChaCha20-Poly1305-IETF encryption. `ad` (associated data) may be null for none.
 * Returns ciphertext ‖ 16-byte tag.
 */
export function aeadEncrypt(message, ad, nonce24, key32) {
  checkBytes(message, 'message');
  ad = ad == null ? new Uint8Array(0) : checkBytes(ad, 'associated data');
  checkBytes(nonce24, 'nonce', AEAD_NPUBBYTES);
  checkBytes(key32, 'key', AEAD_KEYBYTES);
  return withMemory((m, memory) => {
    const c = memory.alloc(message.length + AEAD_ABYTES);
    const mp = memory.put(message);
    const adp = memory.put(ad);
    const np = memory.put(nonce24);
    const kp = memory.put(key32);
    const rc = m._crypto_aead_xchacha20poly1305_ietf_encrypt(
      c, 0, mp, message.length, 0, adp, ad.length, 0, 0, np, kp);
    if (rc !== 0) throw new Error('aeadEncrypt failed');
    return memory.take(c, message.length + AEAD_ABYTES);
  });
}

/**
 * XChaCha20-Poly1305-IETF decryption of ciphertext ‖ tag. Returns the plaintext, or null when
 * authentication fails (also for a ciphertext shorter than the tag). Throws TypeError only for
 * arguments of the wrong type or size (nonce, key).
 */
export function aeadDecrypt(ciphertext, ad, nonce24, key32) {
  checkBytes(ciphertext, 'ciphertext');
  ad = ad == null ? new Uint8Array(0) : checkBytes(ad, 'associated data');
  checkBytes(nonce24, 'nonce', AEAD_NPUBBYTES);
  checkBytes(key32, 'key', AEAD_KEYBYTES);
  if (ciphertext.length < AEAD_ABYTES) return null;
  return withMemory((m, memory) => {
    const length = ciphertext.length - AEAD_ABYTES;
    const mp = memory.alloc(length);
    const cp = memory.put(ciphertext);
    const adp = memory.put(ad);
    const np = memory.put(nonce24);
    const kp = memory.put(key32);
    const rc = m._crypto_aead_xchacha20poly1305_ietf_decrypt(
      mp, 0, 0, cp, ciphertext.length, 0, adp, ad.length, 0, np, kp);
    return rc === 0 ? memory.take(mp, length) : null;
  });
}

// --- sealed boxes (X25519 + XSalsa20-Poly1305, anonymous sender) ---------------------------

/** crypto_box_seal: encrypts `message` for `recipientPublicKey32`; 48 bytes longer. */
export function sealBox(message, recipientPublicKey32) {
  checkBytes(message, 'message');
  checkBytes(recipientPublicKey32, 'recipient public key', BOX_PUBLICKEYBYTES);
  return withMemory((m, memory) => {
    const c = memory.alloc(message.length + BOX_SEALBYTES);
    const mp = memory.put(message);
    const pk = memory.put(recipientPublicKey32);
    const rc = m._crypto_box_seal(c, mp, message.length, 0, pk);
    if (rc !== 0) throw new Error('sealBox: invalid recipient public key');
    return memory.take(c, message.length + BOX_SEALBYTES);
  });
}

/** crypto_box_seal_open: the plaintext, or null when the box does not open with these keys. */
export function openSealedBox(ciphertext, publicKey32, secretKey32) {
  checkBytes(ciphertext, 'ciphertext');
  checkBytes(publicKey32, 'public key', BOX_PUBLICKEYBYTES);
  checkBytes(secretKey32, 'secret key', BOX_SECRETKEYBYTES);
  if (ciphertext.length < BOX_SEALBYTES) return null;
  return withMemory((m, memory) => {
    const length = ciphertext.length - BOX_SEALBYTES;
    const mp = memory.alloc(length);
    const cp = memory.put(ciphertext);
    const pk = memory.put(publicKey32);
    const sk = memory.put(secretKey32);
    const rc = m._crypto_box_seal_open(mp, cp, ciphertext.length, 0, pk, sk);
    return rc === 0 ? memory.take(mp, length) : null;
  });
}

// --- X25519 --------------------------------------------------------------------------------

/** X25519(secret, public) → 32-byte shared secret. Throws when the result is all zero. */
export function x25519(secret32, public32) {
  checkBytes(secret32, 'X25519 secret', SCALARMULT_BYTES);
  checkBytes(public32, 'X25519 public key', SCALARMULT_BYTES);
  return withMemory((m, memory) => {
    const q = memory.alloc(SCALARMULT_BYTES);
    const n = memory.put(secret32);
    const p = memory.put(public32);
    if (m._crypto_scalarmult(q, n, p) !== 0) throw new Error('x25519: all-zero result');
    return memory.take(q, SCALARMULT_BYTES);
  });
}

/** The X25519 public key of `secret32`. */
export function x25519Base(secret32) {
  checkBytes(secret32, 'X25519 secret', SCALARMULT_BYTES);
  return withMemory((m, memory) => {
    const q = memory.alloc(SCALARMULT_BYTES);
    const n = memory.put(secret32);
    if (m._crypto_scalarmult_base(q, n) !== 0) throw new Error('x25519Base: all-zero result');
    return memory.take(q, SCALARMULT_BYTES);
  });
}

// --- Ed25519 -------------------------------------------------------------------------------

/** Ed25519 key pair from a 32-byte seed: {publicKey (32), secretKey (64: seed ‖ publicKey)}. */
export function ed25519KeyPairFromSeed(seed32) {
  checkBytes(seed32, 'Ed25519 seed', SIGN_SEEDBYTES);
  return withMemory((m, memory) => {
    const pk = memory.alloc(SIGN_PUBLICKEYBYTES);
    const sk = memory.alloc(SIGN_SECRETKEYBYTES);
    const seed = memory.put(seed32);
    if (m._crypto_sign_seed_keypair(pk, sk, seed) !== 0) throw new Error('ed25519KeyPairFromSeed failed');
    return { publicKey: memory.take(pk, SIGN_PUBLICKEYBYTES), secretKey: memory.take(sk, SIGN_SECRETKEYBYTES) };
  });
}

/** Detached Ed25519 signature (64 bytes) of `message` with a 64-byte secret key. */
export function ed25519Sign(message, secretKey64) {
  checkBytes(message, 'message');
  checkBytes(secretKey64, 'Ed25519 secret key', SIGN_SECRETKEYBYTES);
  return withMemory((m, memory) => {
    const sig = memory.alloc(SIGN_BYTES);
    const mp = memory.put(message);
    const sk = memory.put(secretKey64);
    if (m._crypto_sign_detached(sig, 0, mp, message.length, 0, sk) !== 0) throw new Error('ed25519Sign failed');
    return memory.take(sig, SIGN_BYTES);
  });
}

/**
 * Verifies a detached Ed25519 signature. False for a bad signature, including one that is not
 * 64 bytes long; throws TypeError for a public key that is not 32 bytes.
 */
export function ed25519Verify(signature, message, publicKey) {
  checkBytes(signature, 'signature');
  checkBytes(message, 'message');
  checkBytes(publicKey, 'Ed25519 public key', SIGN_PUBLICKEYBYTES);
  if (signature.length !== SIGN_BYTES) return false;
  return withMemory((m, memory) => {
    const sig = memory.put(signature);
    const mp = memory.put(message);
    const pk = memory.put(publicKey);
    return m._crypto_sign_verify_detached(sig, mp, message.length, 0, pk) === 0;
  });
}

// --- hashes and MACs -----------------------------------------------------------------------

/** BLAKE2b (crypto_generichash): `outLength` 16…64 bytes; optional key of 16…64 bytes. */
export function blake2b(message, outLength, key) {
  checkBytes(message, 'message');
  checkLength(outLength, 'BLAKE2b output length', GENERICHASH_BYTES_MIN, GENERICHASH_BYTES_MAX);
  if (key != null) {
    checkBytes(key, 'BLAKE2b key');
    checkLength(key.length, 'BLAKE2b key length', GENERICHASH_KEYBYTES_MIN, GENERICHASH_KEYBYTES_MAX);
  }
  return withMemory((m, memory) => {
    const out = memory.alloc(outLength);
    const mp = memory.put(message);
    const kp = key == null ? 0 : memory.put(key);
    const rc = m._crypto_generichash(out, outLength, mp, message.length, 0, kp, key == null ? 0 : key.length);
    if (rc !== 0) throw new Error('blake2b failed');
    return memory.take(out, outLength);
  });
}

/** SHA-256 of `message` (32 bytes). */
export function sha256(message) {
  checkBytes(message, 'message');
  return withMemory((m, memory) => {
    const out = memory.alloc(SHA256_BYTES);
    const mp = memory.put(message);
    m._crypto_hash_sha256(out, mp, message.length, 0);
    return memory.take(out, SHA256_BYTES);
  });
}

/** HMAC-SHA-256 (RFC 2104) of `message` under a key of any length (32 bytes). */
export function hmacSha256(key, message) {
  checkBytes(key, 'HMAC key');
  checkBytes(message, 'message');
  return withMemory((m, memory) => {
    const state = memory.alloc(m._crypto_auth_hmacsha256_statebytes());
    const out = memory.alloc(HMACSHA256_BYTES);
    const kp = memory.put(key);
    const mp = memory.put(message);
    m._crypto_auth_hmacsha256_init(state, kp, key.length);
    m._crypto_auth_hmacsha256_update(state, mp, message.length, 0);
    m._crypto_auth_hmacsha256_final(state, out);
    return memory.take(out, HMACSHA256_BYTES);
  });
}

// --- padding -------------------------------------------------------------------------------

/**
 * ISO/IEC 7816-4 padding (sodium_pad): appends 0x80 and zeros up to the next multiple of
 * `blockSize`; always adds at least one byte.
 */
export function pad(bytes, blockSize) {
  checkBytes(bytes, 'bytes');
  checkLength(blockSize, 'block size', 1, MAX_LENGTH);
  const padded = (Math.floor(bytes.length / blockSize) + 1) * blockSize;
  checkLength(padded, 'padded length', 1, MAX_LENGTH);
  return withMemory((m, memory) => {
    const buf = memory.alloc(padded);
    m.HEAPU8.set(bytes, buf);
    const lengthp = memory.alloc(4);
    if (m._sodium_pad(lengthp, buf, bytes.length, blockSize, padded) !== 0) throw new Error('pad failed');
    const length = new DataView(m.HEAPU8.buffer).getUint32(lengthp, true);
    return memory.take(buf, length);
  });
}

/** Removes padding added by pad() (sodium_unpad, constant time); null when it is malformed. */
export function unpad(bytes, blockSize) {
  checkBytes(bytes, 'bytes');
  checkLength(blockSize, 'block size', 1, MAX_LENGTH);
  return withMemory((m, memory) => {
    const buf = memory.put(bytes);
    const lengthp = memory.alloc(4);
    if (m._sodium_unpad(lengthp, buf, bytes.length, blockSize) !== 0) return null;
    const length = new DataView(m.HEAPU8.buffer).getUint32(lengthp, true);
    return memory.take(buf, length);
  });
}
