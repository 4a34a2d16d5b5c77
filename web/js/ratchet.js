// Sessions (docs/protocol.md "Sessions (Double Ratchet)", "Peer state"): the Double Ratchet with
// header encryption, the companion being the initiator. A state is a plain object; `encrypt` and
// `decrypt` return a new state and never change the one they were given, so a message that fails
// anywhere leaves the session exactly as it was.
import { concat, u32, readU32, utf8, equalBytes } from './bytes.js';
import { hkdf, hmacSha256, aeadSeal, aeadOpen, x25519, x25519KeyPair, randomBytes } from './primitives.js';
import { pad, unpad, paddedLength } from './padding.js';
import { newEnvelope } from './envelope.js';

export const maximumSkip = 1000;
export const maximumStoredSkippedKeys = 2000;
const headerLength = 40;
const encryptedHeaderLength = 80;
const rootInfo = utf8('errand/v1/ratchet-root');
const messageInfo = utf8('errand/v1/ratchet-message');
const zeros32 = new Uint8Array(32);

/** Why a session message was refused: `code` is malformed, duplicate, undecryptable, tooManySkipped, cannotSendYet or tooLarge. */
export class SessionError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

/** The largest payload one envelope carries (63,487 bytes, before padding). */
export const maximumPayloadLength = (() => {
  const budget = 65536 - 17 - encryptedHeaderLength - 16;
  let length = budget;
  while (paddedLength(length) > budget) length--;
  return length;
})();

async function rootStep(rootKey, secret, remote) {
  let shared;
  try { shared = x25519(secret, remote); } catch { throw new SessionError('undecryptable', "the peer's ratchet key is not usable"); }
  const out = await hkdf(shared, rootKey, rootInfo, 96);
  return [out.slice(0, 32), out.slice(32, 64), out.slice(64, 96)];
}

async function chainStep(chainKey) {
  return { messageKey: await hmacSha256(chainKey, Uint8Array.of(1)), next: await hmacSha256(chainKey, Uint8Array.of(2)) };
}

async function bodyKeyAndNonce(messageKey) {
  const out = await hkdf(messageKey, zeros32, messageInfo, 56);
  return [out.slice(0, 32), out.slice(32, 56)];
}

function openHeader(encrypted, key, ad) {
  const plain = aeadOpen(encrypted.slice(24), ad, encrypted.slice(0, 24), key);
  if (!plain || plain.length !== headerLength) return null;
  return { ratchetKey: plain.slice(0, 32), previous: readU32(plain, 32), number: readU32(plain, 36) };
}

function copy(state) {
  return { ...state, skipped: state.skipped.map(entry => ({ ...entry })) };
}

/** The initiator's first state: a new ratchet key and a DH step with the responder's key. */
export async function initiator({ root, headerKey, nextHeaderKey, responderRatchetKey, ratchetSecret }) {
  const pair = x25519KeyPair(ratchetSecret);
  const [rk, chain, nextSending] = await rootStep(root, pair.secretKey, responderRatchetKey);
  return {
    dhSecret: pair.secretKey, dhPublic: pair.publicKey, remote: responderRatchetKey, root: rk,
    sendingChain: chain, receivingChain: null, sendingHeaderKey: headerKey, receivingHeaderKey: null,
    nextSendingHeaderKey: nextSending, nextReceivingHeaderKey: nextHeaderKey,
    sent: 0, received: 0, previous: 0, skipped: [],
  };
}

/** Encrypts one padded message: returns {state, message}. */
export async function encrypt(state, plaintext, ad, headerNonce = randomBytes(24)) {
  if (!state.sendingChain || !state.sendingHeaderKey) {
    throw new SessionError('cannotSendYet', "this side of the session cannot send before the other side's first message arrives");
  }
  const next = copy(state);
  const { messageKey, next: nextChain } = await chainStep(state.sendingChain);
  const header = concat(state.dhPublic, u32(state.previous), u32(state.sent));
  const encryptedHeader = concat(headerNonce, aeadSeal(header, ad, headerNonce, state.sendingHeaderKey));
  const [bodyKey, bodyNonce] = await bodyKeyAndNonce(messageKey);
  const body = aeadSeal(plaintext, concat(ad, encryptedHeader), bodyNonce, bodyKey);
  next.sendingChain = nextChain;
  next.sent = state.sent + 1;
  return { state: next, message: concat(encryptedHeader, body) };
}

async function skipMessageKeys(s, until) {
  if (until > s.received + maximumSkip) {
    throw new SessionError('tooManySkipped', `the message claims ${until - s.received} earlier messages were lost, more than the ${maximumSkip} a session tolerates`);
  }
  if (!s.receivingChain || !s.receivingHeaderKey) return;
  let chain = s.receivingChain;
  while (s.received < until) {
    const { messageKey, next } = await chainStep(chain);
    s.skipped.push({ headerKey: s.receivingHeaderKey, number: s.received, messageKey });
    chain = next;
    s.received += 1;
  }
  s.receivingChain = chain;
  if (s.skipped.length > maximumStoredSkippedKeys) s.skipped.splice(0, s.skipped.length - maximumStoredSkippedKeys);
}

async function ratchetStep(s, remote, ratchetSecret) {
  s.previous = s.sent;
  s.sent = 0;
  s.received = 0;
  s.sendingHeaderKey = s.nextSendingHeaderKey;
  s.receivingHeaderKey = s.nextReceivingHeaderKey;
  s.remote = remote;
  const [root, receiving, nextReceiving] = await rootStep(s.root, s.dhSecret, remote);
  s.receivingChain = receiving;
  s.nextReceivingHeaderKey = nextReceiving;
  const pair = x25519KeyPair(ratchetSecret);
  s.dhSecret = pair.secretKey;
  s.dhPublic = pair.publicKey;
  const [root2, sending, nextSending] = await rootStep(root, s.dhSecret, remote);
  s.root = root2;
  s.sendingChain = sending;
  s.nextSendingHeaderKey = nextSending;
}

/** Decrypts one message: returns {state, plaintext}; throws SessionError and leaves `state` as it was. */
export async function decrypt(state, message, ad) {
  if (message.length < encryptedHeaderLength + 16) {
    throw new SessionError('malformed', `a session message must be at least ${encryptedHeaderLength + 16} bytes, got ${message.length}`);
  }
  const encryptedHeader = message.slice(0, encryptedHeaderLength);
  const body = message.slice(encryptedHeaderLength);
  const bodyAD = concat(ad, encryptedHeader);
  const s = copy(state);
  const openBody = async messageKey => {
    const [key, nonce] = await bodyKeyAndNonce(messageKey);
    const plain = aeadOpen(body, bodyAD, nonce, key);
    if (!plain) throw new SessionError('undecryptable', 'the message was altered in transit (its body does not authenticate); it was ignored');
    return plain;
  };

  const headerKeys = [];
  for (const entry of s.skipped) if (!headerKeys.some(k => equalBytes(k, entry.headerKey))) headerKeys.push(entry.headerKey);
  for (const headerKey of headerKeys) {
    const header = openHeader(encryptedHeader, headerKey, ad);
    if (!header) continue;
    const index = s.skipped.findIndex(e => e.number === header.number && equalBytes(e.headerKey, headerKey));
    if (index < 0) continue;
    const plaintext = await openBody(s.skipped[index].messageKey);
    s.skipped.splice(index, 1);
    return { state: s, plaintext };
  }

  let header = s.receivingHeaderKey ? openHeader(encryptedHeader, s.receivingHeaderKey, ad) : null;
  if (header) {
    if (header.number < s.received) throw new SessionError('duplicate', 'this message was already received (a duplicate or a replay); it was ignored');
  } else if ((header = openHeader(encryptedHeader, s.nextReceivingHeaderKey, ad))) {
    await skipMessageKeys(s, header.previous);
    await ratchetStep(s, header.ratchetKey);
  } else {
    throw new SessionError('undecryptable', 'the message could not be opened: it is not for this session, was already received, or was altered');
  }
  await skipMessageKeys(s, header.number);
  if (!s.receivingChain) throw new SessionError('undecryptable', 'the message could not be opened: no receiving chain');
  const { messageKey, next } = await chainStep(s.receivingChain);
  const plaintext = await openBody(messageKey);
  s.receivingChain = next;
  s.received += 1;
  return { state: s, plaintext };
}

/** `"errand/v1/session" ‖ th`: the session's associated data, to which each envelope id is appended. */
export const sessionAssociatedData = th => concat(utf8('errand/v1/session'), th);

/** Seals a payload into a new envelope: returns {state, envelope}. */
export async function sealPayload(state, th, payload, { envelopeId = randomBytes(16), headerNonce } = {}) {
  if (payload.length > maximumPayloadLength) {
    throw new SessionError('tooLarge', `a message of ${payload.length} bytes does not fit in one envelope (at most ${maximumPayloadLength}); split it into parts`);
  }
  const { state: next, message } = await encrypt(state, pad(payload), concat(sessionAssociatedData(th), envelopeId), headerNonce);
  return { state: next, envelope: newEnvelope(message, envelopeId) };
}

/** Opens an envelope of the session: returns {state, payload}. */
export async function openPayload(state, th, envelope) {
  const { state: next, plaintext } = await decrypt(state, envelope.ciphertext, concat(sessionAssociatedData(th), envelope.id));
  const payload = unpad(plaintext);
  if (!payload) throw new SessionError('malformed', "the message's padding is invalid");
  return { state: next, payload };
}

// Serialisation, byte for byte the CLI's ("Peer state"): "ERDR" ‖ 0x01 ‖ DHs secret ‖ opt(DHr) ‖ RK ‖
// opt(CKs) ‖ opt(CKr) ‖ opt(HKs) ‖ opt(HKr) ‖ NHKs ‖ NHKr ‖ u32 Ns ‖ u32 Nr ‖ u32 PN ‖ u32 count ‖ skipped.
const magic = utf8('ERDR');
const opt = x => (x ? concat(Uint8Array.of(1), x) : Uint8Array.of(0));

export function serialize(s) {
  return concat(magic, Uint8Array.of(1), s.dhSecret, opt(s.remote), s.root, opt(s.sendingChain), opt(s.receivingChain),
    opt(s.sendingHeaderKey), opt(s.receivingHeaderKey), s.nextSendingHeaderKey, s.nextReceivingHeaderKey,
    u32(s.sent), u32(s.received), u32(s.previous), u32(s.skipped.length),
    ...s.skipped.map(e => concat(e.headerKey, u32(e.number), e.messageKey)));
}

export function deserialize(bytes) {
  let offset = 0;
  const bad = () => new SessionError('malformed', 'the stored session state is damaged');
  const take = n => { if (offset + n > bytes.length) throw bad(); const out = bytes.slice(offset, offset + n); offset += n; return out; };
  const takeOpt = () => { const flag = take(1)[0]; if (flag === 0) return null; if (flag !== 1) throw bad(); return take(32); };
  const takeU32 = () => readU32(take(4), 0);
  if (!equalBytes(take(4), magic) || take(1)[0] !== 1) throw bad();
  const dhSecret = take(32);
  const s = {
    dhSecret, dhPublic: x25519KeyPair(dhSecret).publicKey, remote: takeOpt(), root: take(32), sendingChain: takeOpt(),
    receivingChain: takeOpt(), sendingHeaderKey: takeOpt(), receivingHeaderKey: takeOpt(),
    nextSendingHeaderKey: take(32), nextReceivingHeaderKey: take(32), sent: takeU32(), received: takeU32(), previous: takeU32(), skipped: [],
  };
  const count = takeU32();
  for (let i = 0; i < count; i++) s.skipped.push({ headerKey: take(32), number: takeU32(), messageKey: take(32) });
  if (offset !== bytes.length) throw bad();
  return s;
}
