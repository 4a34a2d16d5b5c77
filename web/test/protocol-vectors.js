// The web companion's protocol code against docs/protocol.md's test vectors, in the browser.
// Writes {"passed": n, "failed": [...]} into #result.
import { loadSodium } from '../js/primitives.js';
import * as primitives from '../js/primitives.js';
import { hex, fromHex, utf8, concat, base64url } from '../js/bytes.js';
import { paddedLength, pad, unpad } from '../js/padding.js';
import { parseOffer, transcriptHash, shortAuthenticationString, formatSAS, offerURIFromLink } from '../js/offer.js';
import { makeRequest, sessionKeys } from '../js/pairing.js';
import * as ratchet from '../js/ratchet.js';
import { parseEnvelope } from '../js/envelope.js';
import { RelayClient } from '../js/relay.js';

const range = (start, count) => Uint8Array.from({ length: count }, (_, i) => (start + i) & 0xff);
const results = { passed: 0, failed: [] };
async function check(name, body) {
  try {
    const outcome = await body();
    if (outcome === true) results.passed++; else results.failed.push({ name, detail: String(outcome) });
  } catch (error) { results.failed.push({ name, detail: `threw ${error.message}` }); }
}
const same = (actual, expected) => (actual === expected ? true : `got ${actual}, expected ${expected}`);
const refused = async (body, expected) => {
  try { await body(); return 'accepted'; } catch (error) { return same(error.message, expected); }
};

const vectorURI = 'errand://pair?v=1&r=https://relay.example.com&s=UFFSU1RVVldYWVpbXF1eXw&k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg&x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ&t=QEFCQ0RFRkdISUpLTE1OTw&e=1767225600&a=relay.example.com%2Be1f35565%2BAekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k&n=studio-mac';
const auditKey = 'relay.example.com+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const firstMessage = '01303132333435363738393a3b3c3d3e3f010101010101010101010101010101010101010101010101b66c5c516aef562d0e4a6b1651c30afbd63442cd3a465516dd808355eec089b1bf762f715d72323dafe52dc607d186c3459c4216a6e2aefb2549eff29407e0b03c8bac8e7a51b9e1377067455024b9fc4da5d774344086ad62c707a61c08e2e661551b8a6b0ecfb36fc4f8fcb0b0477a1e80b3f5b7ed28cfe37de4365127e54b6a4c025f4e72c6fc59a4f2a19395da7e3471ee5207737dd88f2bc9035175c71cdc7a5e6457d361ae78fde21fc07e1cd838e86c3a2cb95ee4228654e41d17b8518e877460f19e6f9e0fc934eced87af1a0243e4ece50aed580e1d4144dfabbf2a76f5628e18726b23755a9d382481b9475ff8f625572813e331cbaa4f0ad27ffc8f0b519ff810c7d3fd0be01ce5f56ed59d7cb38f6311be27c8b8795757407c70ef7131ae75ba810b1bd77cda49f8bbc552f8b9f2286414da47bc7f0452e4b4420037f523e22d5999';
const beforeExpiry = 1767225600 - 120;

async function run() {
  await loadSodium();

  await check('padding table', () => {
    const table = [[0, 256], [255, 256], [256, 272], [300, 304], [1000, 1024], [1023, 1024], [1024, 1088], [10000, 10240], [65000, 65536]];
    for (const [l, p] of table) if (paddedLength(l) !== p) return `P(${l}) = ${paddedLength(l)}, expected ${p}`;
    const padded = pad(utf8('ls'));
    if (padded.length !== 256 || hex(unpad(padded)) !== hex(utf8('ls'))) return 'round trip';
    const wrongBlock = concat(utf8('ls'), Uint8Array.of(0x80), new Uint8Array(300 - 3));
    return unpad(wrongBlock) === null ? true : 'a padding of the wrong size was accepted';
  });

  const offer = parseOffer(vectorURI, beforeExpiry);
  await check('offer canonical URI', () => same(offer.uri, vectorURI));
  await check('offer link form', () => same(parseOffer('https://relay.example.com/app/#' + vectorURI.slice('errand://pair?'.length), beforeExpiry).uri, vectorURI));
  await check('offer unknown parameter dropped', () => same(parseOffer(vectorURI + '&zz=1', beforeExpiry).uri, vectorURI));
  await check('offer expired', () => refused(() => parseOffer(vectorURI, 1767225600 + 180), 'pairing offer expired 3 minutes ago'));
  await check('offer altered key', () => refused(() => parseOffer(vectorURI.replace('k=A6EHv', 'k=A6EH'), beforeExpiry),
    'the pairing code carries a host key of the wrong size (Ed25519 public key must be 32 bytes, got 31)'));
  await check('offer too far ahead', () => refused(() => parseOffer(vectorURI, 1767225600 - 3600),
    'pairing offer claims to stay valid for 1 hour; offers last at most 10 minutes'));
  await check('offer repeated parameter', () => refused(() => parseOffer(vectorURI + '&v=1', beforeExpiry), "the pairing code repeats the 'v' parameter"));
  await check('not an offer', () => refused(() => parseOffer('https://example.com/', beforeExpiry), 'this is not an Errand pairing code (it should start with errand://pair?)'));
  await check('offer bidi name', () => refused(() => parseOffer(vectorURI.replace('n=studio-mac', 'n=studio%E2%80%AEmac'), beforeExpiry),
    'the host name in the pairing code must be 1 to 64 bytes of printable text'));
  await check('link without fragment', () => same(offerURIFromLink('https://relay.example.com/app/'), 'https://relay.example.com/app/'));

  const signing = await primitives.newSigningIdentity(range(0x60, 32));
  const agreement = await primitives.newAgreementIdentity(range(0x80, 32));
  await check('companion keys', () => same(hex(signing.publicKey) + hex(agreement.publicKey),
    '174553b456dddfc6908ecab1c101fe6ab21e2baa0617795b7d43a63482993fd5' + '493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d'));
  const th = await transcriptHash(offer.uri, signing.publicKey, agreement.publicKey);
  await check('transcript hash', () => same(hex(th), '48d05c5d272c2d8542778025b107f44273bc207dfc2448cb600943a81c9b06e9'));
  await check('SAS', async () => same(formatSAS(await shortAuthenticationString(offer.secret, th)), '654 700'));

  const keys = { signing, agreement, ephemeral: primitives.x25519KeyPair(range(0xa0, 32)), hostSendToken: range(0xe0, 32) };
  const request = await makeRequest(offer, keys, 'phone');
  await check('pairing body', () => same(hex(request.body), '01174553b456dddfc6908ecab1c101fe6ab21e2baa0617795b7d43a63482993fd5493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23ce0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000570686f6e65'));
  await check('pairing request opens with the host key', () => {
    const hostPublic = primitives.x25519KeyPair(range(0x20, 32));
    const plain = unpad(primitives.openSealedBox(request.envelope.ciphertext, hostPublic.publicKey, hostPublic.secretKey));
    const proof = plain.slice(request.body.length, request.body.length + 32);
    return same(hex(proof), '6c67c948cb8161977768ac314be0e2da84464973b1fdf91d3efb0f6fcb08d850');
  });
  await check('binding', async () => same(hex(await primitives.sha256(concat(signing.publicKey, agreement.publicKey, keys.ephemeral.publicKey))),
    'b64821a1028b96deb65306a7e458f5482c547ccf94d4076d98f4f32ffc88812d'));
  const hostRatchet = primitives.x25519KeyPair(range(0xc0, 32)).publicKey;
  const session = await sessionKeys(offer, keys, th, hostRatchet);
  await check('session keys', () => same([session.root, session.headerKey, session.nextHeaderKey, session.confirmationKey].map(hex).join(' '),
    ['108077a09a9dd7ff4fd58c3d4fd0b54f4e636c1df867e77e7f515597ba3eb16d', 'dc0c1ab21c0cac89e08b1512d657eb88a3c6a5efed35623ae196fe026a216d45',
      '3961c0cee16f6bab88c16169c5ff0ac3382098c7128f78a4e511b1b5a8b7f395', '3693bb63699e74341a3ef9bf2dd06d457154fcf4744939717acbe790366a9a6c'].join(' ')));

  const state = await ratchet.initiator({ root: session.root, headerKey: session.headerKey, nextHeaderKey: session.nextHeaderKey,
    responderRatchetKey: hostRatchet, ratchetSecret: range(0x10, 32) });
  const sealed = await ratchet.sealPayload(state, th, utf8('hello'), { envelopeId: range(0x30, 16), headerNonce: new Uint8Array(24).fill(1) });
  await check('first session message', () => same(hex(sealed.envelope.bytes), firstMessage));
  await check('session state serialisation round trip', () => {
    const bytes = ratchet.serialize(sealed.state);
    return same(hex(ratchet.serialize(ratchet.deserialize(bytes))), hex(bytes));
  });
  await check('the sender cannot open its own message', async () => {
    try { await ratchet.openPayload(sealed.state, th, parseEnvelope(fromHex(firstMessage))); return 'opened'; } catch (error) { return same(error.code, 'undecryptable'); }
  });

  // A responder built from the same keys (as the host does), to check receiving, tampering and replay.
  const responder = {
    dhSecret: range(0xc0, 32), dhPublic: hostRatchet, remote: null, root: session.root, sendingChain: null, receivingChain: null,
    sendingHeaderKey: null, receivingHeaderKey: null, nextSendingHeaderKey: session.nextHeaderKey, nextReceivingHeaderKey: session.headerKey,
    sent: 0, received: 0, previous: 0, skipped: [],
  };
  const envelope = parseEnvelope(fromHex(firstMessage));
  const opened = await ratchet.openPayload(responder, th, envelope);
  await check('responder opens the first message', () => same(new TextDecoder().decode(opened.payload), 'hello'));
  await check('replay refused, state kept', async () => {
    const before = hex(ratchet.serialize(opened.state));
    try { await ratchet.openPayload(opened.state, th, envelope); return 'a replay was accepted'; } catch (error) {
      return error.code === 'duplicate' && hex(ratchet.serialize(opened.state)) === before ? true : `code ${error.code}`;
    }
  });
  await check('tampered body refused, state kept', async () => {
    const bytes = fromHex(firstMessage); bytes[bytes.length - 1] ^= 1;
    const before = hex(ratchet.serialize(responder));
    try { await ratchet.openPayload(responder, th, parseEnvelope(bytes)); return 'a tampered message was accepted'; } catch (error) {
      return error.code === 'undecryptable' && hex(ratchet.serialize(responder)) === before ? true : `code ${error.code}`;
    }
  });
  await check('moved to another envelope id refused', async () => {
    const bytes = fromHex(firstMessage); bytes[1] ^= 1;
    try { await ratchet.openPayload(responder, th, parseEnvelope(bytes)); return 'accepted'; } catch (error) { return same(error.code, 'undecryptable'); }
  });
  await check('answer and out-of-order delivery', async () => {
    let host = opened.state, phone = sealed.state;
    const replies = [];
    for (const text of ['one', 'two', 'three']) {
      const r = await ratchet.sealPayload(host, th, utf8(text)); host = r.state; replies.push(r.envelope);
    }
    const order = [2, 0, 1];
    const got = [];
    for (const i of order) { const r = await ratchet.openPayload(phone, th, replies[i]); phone = r.state; got.push(new TextDecoder().decode(r.payload)); }
    return same(got.join(','), 'three,one,two');
  });
  await check('too large a payload', async () => {
    try { await ratchet.sealPayload(sealed.state, th, new Uint8Array(ratchet.maximumPayloadLength + 1)); return 'accepted'; } catch (error) { return same(error.code, 'tooLarge'); }
  });
  await check('largest payload fits', async () => same((await ratchet.sealPayload(sealed.state, th, new Uint8Array(63487))).envelope.bytes.length, 63601));

  await check('signed request', async () => {
    const signer = await primitives.newSigningIdentity(range(0x00, 32));
    const text = ['errand-relay-request-v2', auditKey, 'POST', '/v1/mailboxes/example/send-tokens', '1767225600',
      base64url(range(0x70, 16)), hex(await primitives.sha256(utf8('{"hash":"abc"}')))].join('\n');
    return same(base64url(await primitives.sign(signer, utf8(text))), 'mtEWTIb82POu84ieaMkzmNqJpEqk9vIi9MxASDrXTgfBJmB4rV9P57OhsQFF-VHIJs6-rg0zaBOIecymjFO0BA');
  });
  await check('relay client names the pinned key', async () => same(await new RelayClient('https://relay.example.com', auditKey).relayKey(), auditKey));
}

window.protocolVectors = run().catch(error => results.failed.push({ name: 'run', detail: error.stack })).then(() => {
  document.getElementById('result').textContent = JSON.stringify(results);
  document.title = results.failed.length ? 'failed' : 'passed';
  return results;
});
