// Known-answer tests of web/js/sodium.js in the browser. Writes
// {"passed":N,"failed":[{"name":…,"detail":…}]} into <pre id="result"> and a summary into
// document.title; window.sodiumVectors is a promise of the same object (for test drivers).
// Run by Tests/Browser/vectors.py in headless Chromium.

import * as sodium from '../js/sodium.js';

const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const utf8 = (text) => new TextEncoder().encode(text);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
};
const flipped = (bytes, index) => { const copy = bytes.slice(); copy[index] ^= 0x01; return copy; };

// --- vectors (published values) ----------------------------------------------------------

// draft-irtf-cfrg-xchacha-03 §A.3.1 (AEAD_XChaCha20_Poly1305)
const xchacha = {
  plaintext: utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."),
  ad: fromHex('50515253c0c1c2c3c4c5c6c7'),
  key: fromHex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
  nonce: fromHex('404142434445464748494a4b4c4d4e4f5051525354555657'),
  ciphertext: fromHex(
    'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb' +
    '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452' +
    '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
    '21f9664c97637da9768812f615c68b13b52e'),
  tag: fromHex('c0875924c1c7987947deafd8780acf49'),
};

// RFC 8032 §7.1 TEST 1 (empty message)
const ed25519 = {
  seed: fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'),
  publicKey: fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'),
  signature: fromHex(
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' +
    '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'),
};

// RFC 7748 §6.1
const x25519 = {
  alicePrivate: fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
  alicePublic: fromHex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'),
  bobPrivate: fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
  bobPublic: fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'),
  shared: fromHex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'),
};

// --- harness ------------------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

function equal(actual, expected, what = 'value') {
  const a = actual instanceof Uint8Array ? toHex(actual) : JSON.stringify(actual);
  const e = expected instanceof Uint8Array ? toHex(expected) : JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: got ${a}, want ${e}`);
}

function throws(fn, type, message) {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof type)) throw new Error(`threw ${error}, want a ${type.name}`);
    if (message !== undefined && error.message !== message) throw new Error(`threw "${error.message}", want "${message}"`);
    return;
  }
  throw new Error(`did not throw, want a ${type.name}`);
}

// --- tests --------------------------------------------------------------------------------

test('loadSodium returns the same promise', () => {
  if (sodium.loadSodium() !== sodium.loadSodium()) throw new Error('two different promises');
});

test('XChaCha20-Poly1305 encrypt (draft-irtf-cfrg-xchacha-03 A.3.1)', () => {
  equal(sodium.aeadEncrypt(xchacha.plaintext, xchacha.ad, xchacha.nonce, xchacha.key),
    concat(xchacha.ciphertext, xchacha.tag), 'ciphertext‖tag');
});

test('XChaCha20-Poly1305 decrypt (draft-irtf-cfrg-xchacha-03 A.3.1)', () => {
  equal(sodium.aeadDecrypt(concat(xchacha.ciphertext, xchacha.tag), xchacha.ad, xchacha.nonce, xchacha.key),
    xchacha.plaintext, 'plaintext');
});

test('aeadDecrypt returns null when tampered', () => {
  const sealed = concat(xchacha.ciphertext, xchacha.tag);
  const { ad, nonce, key } = xchacha;
  equal(sodium.aeadDecrypt(flipped(sealed, 0), ad, nonce, key), null, 'flipped ciphertext byte');
  equal(sodium.aeadDecrypt(flipped(sealed, sealed.length - 1), ad, nonce, key), null, 'flipped tag byte');
  equal(sodium.aeadDecrypt(sealed, flipped(ad, 3), nonce, key), null, 'other associated data');
  equal(sodium.aeadDecrypt(sealed, ad, flipped(nonce, 23), key), null, 'other nonce');
  equal(sodium.aeadDecrypt(sealed, ad, nonce, flipped(key, 31)), null, 'other key');
  equal(sodium.aeadDecrypt(sealed.subarray(0, 15), ad, nonce, key), null, 'shorter than the tag');
});

test('aead round trip with empty message and no associated data', () => {
  const key = sodium.randomBytes(32);
  const nonce = sodium.randomBytes(24);
  const sealed = sodium.aeadEncrypt(new Uint8Array(0), null, nonce, key);
  equal(sealed.length, 16, 'length');
  equal(sodium.aeadDecrypt(sealed, null, nonce, key), new Uint8Array(0), 'plaintext');
});

test('aead rejects wrong key and nonce sizes with TypeError', () => {
  const { plaintext, ad, nonce, key } = xchacha;
  throws(() => sodium.aeadEncrypt(plaintext, ad, nonce, key.subarray(0, 31)), TypeError);
  throws(() => sodium.aeadEncrypt(plaintext, ad, nonce.subarray(0, 12), key), TypeError);
  throws(() => sodium.aeadDecrypt(plaintext, ad, nonce, new Uint8Array(33)), TypeError);
  throws(() => sodium.aeadDecrypt(plaintext, ad, new Uint8Array(12), key), TypeError);
  throws(() => sodium.aeadEncrypt('text', ad, nonce, key), TypeError);
});

test('Ed25519 key pair from seed (RFC 8032 test 1)', () => {
  const { publicKey, secretKey } = sodium.ed25519KeyPairFromSeed(ed25519.seed);
  equal(publicKey, ed25519.publicKey, 'public key');
  equal(secretKey, concat(ed25519.seed, ed25519.publicKey), 'secret key');
});

test('Ed25519 sign (RFC 8032 test 1)', () => {
  const { secretKey } = sodium.ed25519KeyPairFromSeed(ed25519.seed);
  equal(sodium.ed25519Sign(new Uint8Array(0), secretKey), ed25519.signature, 'signature');
});

test('Ed25519 verify (RFC 8032 test 1)', () => {
  const empty = new Uint8Array(0);
  equal(sodium.ed25519Verify(ed25519.signature, empty, ed25519.publicKey), true, 'valid signature');
  equal(sodium.ed25519Verify(flipped(ed25519.signature, 5), empty, ed25519.publicKey), false, 'flipped signature');
  equal(sodium.ed25519Verify(ed25519.signature, utf8('x'), ed25519.publicKey), false, 'other message');
  equal(sodium.ed25519Verify(ed25519.signature.subarray(0, 63), empty, ed25519.publicKey), false, 'short signature');
  throws(() => sodium.ed25519Verify(ed25519.signature, empty, new Uint8Array(31)), TypeError);
});

test('X25519 public keys (RFC 7748 6.1)', () => {
  equal(sodium.x25519Base(x25519.alicePrivate), x25519.alicePublic, "Alice's public key");
  equal(sodium.x25519Base(x25519.bobPrivate), x25519.bobPublic, "Bob's public key");
});

test('X25519 shared secret (RFC 7748 6.1)', () => {
  equal(sodium.x25519(x25519.alicePrivate, x25519.bobPublic), x25519.shared, 'Alice × Bob');
  equal(sodium.x25519(x25519.bobPrivate, x25519.alicePublic), x25519.shared, 'Bob × Alice');
});

test('X25519 with a low-order point throws', () => {
  throws(() => sodium.x25519(x25519.alicePrivate, new Uint8Array(32)), Error, 'x25519: all-zero result');
});

test('X25519: WebCrypto deriveBits equals x25519() (RFC 7748 6.1 keys)', async () => {
  const pkcs8 = concat(fromHex('302e020100300506032b656e04220420'), x25519.alicePrivate);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
  const publicKey = await crypto.subtle.importKey('raw', x25519.bobPublic, { name: 'X25519' }, true, []);
  const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: publicKey }, privateKey, 256));
  equal(bits, sodium.x25519(x25519.alicePrivate, x25519.bobPublic), 'WebCrypto vs x25519()');
  equal(bits, x25519.shared, 'WebCrypto vs RFC 7748');
});

test('HMAC-SHA-256 (RFC 4231 test case 2)', () => {
  equal(sodium.hmacSha256(utf8('Jefe'), utf8('what do ya want for nothing?')),
    fromHex('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'), 'MAC');
});

test('HMAC-SHA-256 with a key longer than a block (RFC 4231 test case 6)', () => {
  equal(sodium.hmacSha256(new Uint8Array(131).fill(0xaa), utf8('Test Using Larger Than Block-Size Key - Hash Key First')),
    fromHex('60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'), 'MAC');
});

test('SHA-256 of "abc" and of ""', () => {
  equal(sodium.sha256(utf8('abc')), fromHex('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'), 'abc');
  equal(sodium.sha256(new Uint8Array(0)), fromHex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'), 'empty');
});

test('BLAKE2b-512 of "abc" (RFC 7693 appendix A)', () => {
  equal(sodium.blake2b(utf8('abc'), 64), fromHex(
    'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1' +
    '7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923'), 'digest');
});

test('BLAKE2b-256 keyed (equals Python hashlib.blake2b)', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  equal(sodium.blake2b(utf8('abc'), 32, key),
    fromHex('d63a32d3e44738d7907f964316c241adaba0abfeabc32349677578a15a203f7f'), 'digest');
  throws(() => sodium.blake2b(utf8('abc'), 15), RangeError);
  throws(() => sodium.blake2b(utf8('abc'), 65), RangeError);
  throws(() => sodium.blake2b(utf8('abc'), 32, new Uint8Array(8)), RangeError);
});

test('sealed box round trip', () => {
  const secretKey = sodium.randomBytes(32);
  const publicKey = sodium.x25519Base(secretKey);
  const message = utf8('sealed for the host');
  const sealed = sodium.sealBox(message, publicKey);
  equal(sealed.length, message.length + 48, 'length');
  equal(sodium.openSealedBox(sealed, publicKey, secretKey), message, 'opened');
  equal(sodium.openSealedBox(sodium.sealBox(new Uint8Array(0), publicKey), publicKey, secretKey), new Uint8Array(0), 'empty message');
});

test('tampered sealed box returns null', () => {
  const secretKey = sodium.randomBytes(32);
  const publicKey = sodium.x25519Base(secretKey);
  const sealed = sodium.sealBox(utf8('sealed for the host'), publicKey);
  equal(sodium.openSealedBox(flipped(sealed, 40), publicKey, secretKey), null, 'flipped MAC byte');
  equal(sodium.openSealedBox(flipped(sealed, sealed.length - 1), publicKey, secretKey), null, 'flipped ciphertext byte');
  equal(sodium.openSealedBox(flipped(sealed, 0), publicKey, secretKey), null, 'flipped ephemeral key byte');
  const other = sodium.randomBytes(32);
  equal(sodium.openSealedBox(sealed, sodium.x25519Base(other), other), null, 'other recipient');
  equal(sodium.openSealedBox(sealed.subarray(0, 47), publicKey, secretKey), null, 'too short');
});

test('pad and unpad (ISO/IEC 7816-4)', () => {
  for (const [length, blockSize] of [[0, 16], [1, 16], [15, 16], [16, 16], [17, 16], [100, 256], [255, 256], [5, 1]]) {
    const message = Uint8Array.from({ length }, (_, i) => (i * 7 + 1) & 0xff);
    const padded = sodium.pad(message, blockSize);
    const want = (Math.floor(length / blockSize) + 1) * blockSize;
    equal(padded.length, want, `padded length of ${length} in blocks of ${blockSize}`);
    equal(padded.subarray(0, length), message, 'content kept');
    equal(padded[length], 0x80, 'marker');
    equal(padded.subarray(length + 1).every((b) => b === 0), true, 'zero fill');
    equal(sodium.unpad(padded, blockSize), message, `unpad of ${length} in blocks of ${blockSize}`);
  }
});

test('unpad returns null on bad padding', () => {
  equal(sodium.unpad(new Uint8Array(16), 16), null, 'no marker');
  equal(sodium.unpad(concat(new Uint8Array(15), Uint8Array.of(0x01)), 16), null, 'non-zero after content');
  equal(sodium.unpad(Uint8Array.of(0x80, 0, 0), 16), null, 'shorter than a block');
  throws(() => sodium.pad(new Uint8Array(3), 0), RangeError);
});

test('randomBytes', () => {
  const a = sodium.randomBytes(32);
  const b = sodium.randomBytes(32);
  equal(a.length, 32, 'length');
  equal(sodium.randomBytes(0).length, 0, 'empty');
  if (toHex(a) === toHex(b)) throw new Error('two 32-byte random strings are equal');
  throws(() => sodium.randomBytes(-1), RangeError);
});

test('wasm memory growth keeps results right', () => {
  const big = new Uint8Array(32 * 1024 * 1024).fill(0x61);
  const digest = sodium.sha256(big);
  equal(digest.length, 32, 'length');
  equal(sodium.sha256(utf8('abc')), fromHex('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'), 'after growth');
});

// --- run ----------------------------------------------------------------------------------

async function run() {
  const result = { passed: 0, failed: [] };
  try {
    await sodium.loadSodium();
  } catch (error) {
    result.failed.push({ name: 'loadSodium', detail: String(error) });
    return result;
  }
  for (const { name, fn } of tests) {
    try {
      await fn();
      result.passed += 1;
    } catch (error) {
      result.failed.push({ name, detail: String(error && error.message ? error.message : error) });
    }
  }
  return result;
}

window.sodiumVectors = run().then((result) => {
  document.getElementById('result').textContent = JSON.stringify(result);
  document.title = `sodium vectors: ${result.failed.length === 0 ? 'passed' : 'FAILED'} ` +
    `(${result.passed} passed, ${result.failed.length} failed)`;
  return result;
});
