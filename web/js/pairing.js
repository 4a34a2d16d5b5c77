// The pairing handshake, companion side (docs/protocol.md "Pairing handshake"): the same bytes as
// the command-line companion.
import { concat, u16, utf8, fromUTF8, equalBytes } from './bytes.js';
import { sha256, hkdf, hmacSha256, sealBox, openSealedBox, sign, verify, agree, x25519, randomBytes } from './primitives.js';
import { pad, unpad } from './padding.js';
import { newEnvelope } from './envelope.js';
import { transcriptHash, isAcceptableName } from './offer.js';
import * as ratchet from './ratchet.js';

/** A pairing failure a person can act on. */
export class PairingError extends Error {
  constructor(message, hint) { super(message); this.hint = hint; }
}

/**
 * Builds the sealed pairing request for `offer`.
 * `keys` = {signing, agreement (identities from primitives.js), ephemeral {secretKey, publicKey}, hostSendToken (32)}.
 * Returns {envelope, th, body}.
 */
export async function makeRequest(offer, keys, deviceName) {
  if (!isAcceptableName(deviceName)) {
    throw new PairingError('a device name must be 1 to 64 bytes of printable text', 'choose a plain, shorter name');
  }
  const name = utf8(deviceName);
  const body = concat(Uint8Array.of(1), keys.signing.publicKey, keys.agreement.publicKey, keys.ephemeral.publicKey,
    keys.hostSendToken, u16(name.length), name);
  const th = await transcriptHash(offer.uri, keys.signing.publicKey, keys.agreement.publicKey);
  const proofKey = await hkdf(offer.secret, th, utf8('errand/v1/pair-proof'), 32);
  const proof = await hmacSha256(proofKey, concat(utf8('errand pairing proof v1'), th, body));
  const signature = await sign(keys.signing, concat(utf8('errand pairing request v1'), th, body, proof));
  let sealed;
  try { sealed = sealBox(pad(concat(body, proof, signature)), offer.hostAgreementKey); } catch {
    throw new PairingError('the host key in the pairing code is not usable', 'the code was altered or damaged; ask for a new code on the computer');
  }
  return { envelope: newEnvelope(sealed), th, body };
}

/** The session keys: HKDF over t ‖ DH(X_c, X_h) ‖ DH(E_c, X_h) ‖ DH(X_c, R_h) ‖ DH(E_c, R_h). */
export async function sessionKeys(offer, keys, th, hostRatchetKey) {
  let ikm;
  try {
    ikm = concat(offer.secret, await agree(keys.agreement, offer.hostAgreementKey), x25519(keys.ephemeral.secretKey, offer.hostAgreementKey),
      await agree(keys.agreement, hostRatchetKey), x25519(keys.ephemeral.secretKey, hostRatchetKey));
  } catch {
    throw new PairingError('a pairing key is not usable (a weak X25519 key)', 'pair again');
  }
  const out = await hkdf(ikm, th, utf8('errand/v1/pair-session'), 128);
  ikm.fill(0);
  return { root: out.slice(0, 32), headerKey: out.slice(32, 64), nextHeaderKey: out.slice(64, 96), confirmationKey: out.slice(96, 128) };
}

/**
 * Checks the host's receipt: sealed to this pairing's ephemeral key and signed by the host in the
 * code over this request's keys (`"errand pairing receipt v1" ‖ binding`). Throws PairingError
 * when it is another request's (someone else answered the code) or forged.
 */
export async function verifyReceipt(offer, keys, receiptBytes) {
  const swapped = new PairingError('the computer received another request than this device\'s: someone else answered this pairing code',
    "do not confirm on the computer; cancel there and start pairing again ('errand host pair') for a fresh code");
  if (receiptBytes.length < 33 || receiptBytes[0] !== 1) throw swapped;
  const padded = openSealedBox(receiptBytes.slice(17), keys.ephemeral.publicKey, keys.ephemeral.secretKey);
  const plain = padded && unpad(padded);
  if (!plain || plain.length !== 65 || plain[0] !== 1) throw swapped;
  const binding = await sha256(concat(keys.signing.publicKey, keys.agreement.publicKey, keys.ephemeral.publicKey));
  if (!verify(plain.slice(1), concat(utf8('errand pairing receipt v1'), binding), offer.hostSigningKey)) throw swapped;
}

/**
 * Opens and checks the host's reply. Returns {status: 'accepted', hostRatchetKey, sendToken, hostName, session}
 * or throws PairingError (declined, rejected, forged, malformed).
 */
export async function openReply(offer, keys, th, replyBytes, hostLabel, { ratchetSecret } = {}) {
  const forged = new PairingError('the pairing reply was not signed by the computer in the pairing code',
    'someone interfered with pairing (possibly the relay); nothing was saved — pair again');
  const malformed = new PairingError('the pairing reply is malformed', 'the computer runs an incompatible version of Errand; update both and pair again');
  if (replyBytes.length < 33 || replyBytes[0] !== 1) throw forged;
  const ciphertext = replyBytes.slice(17);
  const padded = openSealedBox(ciphertext, keys.ephemeral.publicKey, keys.ephemeral.secretKey);
  const plain = padded && unpad(padded);
  if (!plain || plain.length <= 64) throw forged;
  const signed = plain.slice(0, plain.length - 64), signature = plain.slice(plain.length - 64);
  const binding = await sha256(concat(keys.signing.publicKey, keys.agreement.publicKey, keys.ephemeral.publicKey));
  if (!verify(signature, concat(utf8('errand pairing reply v1'), binding, signed), offer.hostSigningKey)) throw forged;
  if (signed.length < 2 || signed[0] !== 1) throw malformed;
  const status = signed[1];
  if (status === 2 && signed.length === 2) {
    throw new PairingError(`${hostLabel} declined the pairing`, 'if you did not expect this, check the codes matched and try again');
  }
  if (status === 3 && signed.length === 2) {
    throw new PairingError(`${hostLabel} rejected this device: it could not verify that this device read its pairing code`,
      'scan the code again; if this repeats, the code may have been altered on the way');
  }
  if (status !== 1 || signed.length < 2 + 64 + 2) throw malformed;
  const hostRatchetKey = signed.slice(2, 34), sendToken = signed.slice(34, 66);
  const nameLength = (signed[66] << 8) | signed[67];
  if (signed.length !== 68 + nameLength + 32) throw malformed;
  const hostName = fromUTF8(signed.slice(68, 68 + nameLength));
  if (hostName === null) throw malformed;
  const confirmedBody = signed.slice(0, 68 + nameLength), confirmation = signed.slice(68 + nameLength);
  const session = await sessionKeys(offer, keys, th, hostRatchetKey);
  const expected = await hmacSha256(session.confirmationKey, concat(utf8('errand pairing confirm v1'), th, confirmedBody));
  if (!equalBytes(expected, confirmation)) {
    throw new PairingError("the computer's session keys do not match this device's", 'someone interfered with pairing; nothing was saved — pair again');
  }
  const state = await ratchet.initiator({
    root: session.root, headerKey: session.headerKey, nextHeaderKey: session.nextHeaderKey, responderRatchetKey: hostRatchetKey, ratchetSecret,
  });
  return { status: 'accepted', hostRatchetKey, sendToken, hostName: isAcceptableName(hostName) ? hostName : hostLabel, session, state };
}

/** Fresh keys for one pairing. */
export async function newPairingKeys(primitives) {
  return {
    signing: await primitives.newSigningIdentity(),
    agreement: await primitives.newAgreementIdentity(),
    ephemeral: primitives.x25519KeyPair(),
    hostSendToken: randomBytes(32),
    claim: randomBytes(32),
  };
}
