// Length padding (docs/protocol.md "Length padding"): Padmé with a 256-byte floor, ISO/IEC 7816-4.
import * as sodium from './sodium.js';

/** Padded length for `length` content bytes: max(256, padme(length + 1)). */
export function paddedLength(length) {
  const n = length + 1;
  let p;
  if (n <= 2) p = n;
  else {
    const e = Math.floor(Math.log2(n));
    const s = Math.floor(Math.log2(e)) + 1;
    const mask = 2 ** (e - s) - 1;
    p = Math.floor((n + mask) / (mask + 1)) * (mask + 1);
  }
  return Math.max(256, p);
}

/** `plaintext ‖ 0x80 ‖ zeros` up to the padded length. */
export function pad(plaintext) {
  return sodium.pad(plaintext, paddedLength(plaintext.length));
}

/** The content of a padded message, or null when the padding is not exactly what `pad` writes. */
export function unpad(padded) {
  if (padded.length === 0) return null;
  const content = sodium.unpad(padded, padded.length);
  if (content === null || paddedLength(content.length) !== padded.length) return null;
  return content;
}
