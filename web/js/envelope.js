// Envelope v1 (docs/protocol.md "Envelope v1"): 0x01 ‖ id (16) ‖ ciphertext.
import { concat, hex } from './bytes.js';
import { randomBytes } from './primitives.js';

export const maximumEnvelopeLength = 65536;

/** An envelope's bytes from an id and a ciphertext. */
export function encodeEnvelope(id, ciphertext) {
  if (id.length !== 16) throw new TypeError('an envelope id is 16 bytes');
  const bytes = concat(Uint8Array.of(1), id, ciphertext);
  if (bytes.length > maximumEnvelopeLength) throw new RangeError(`an envelope is at most ${maximumEnvelopeLength} bytes, this one ${bytes.length}`);
  if (ciphertext.length < 16) throw new RangeError('an envelope carries at least a 16-byte tag');
  return bytes;
}

/** A new envelope with a random id. */
export function newEnvelope(ciphertext, id = randomBytes(16)) {
  return { id, bytes: encodeEnvelope(id, ciphertext), ciphertext };
}

/** Parses an envelope; throws an Error whose `code` is `truncated`, `oversized` or `unsupportedVersion`. */
export function parseEnvelope(bytes) {
  const fail = (code, message) => Object.assign(new Error(message), { code });
  if (bytes.length < 33) throw fail('truncated', 'an envelope is at least 33 bytes');
  if (bytes.length > maximumEnvelopeLength) throw fail('oversized', 'an envelope is at most 65,536 bytes');
  if (bytes[0] !== 1) throw fail('unsupportedVersion', `envelope version ${bytes[0]} is not supported`);
  return { id: bytes.slice(1, 17), ciphertext: bytes.slice(17), bytes };
}

export const envelopeIdHex = envelope => hex(envelope.id);
