// The relay's HTTP and WebSocket API (docs/protocol.md "Relay API"), as the companion uses it.
import { base64url, fromBase64url, concat, hex, utf8, readU64 } from './bytes.js';
import { sha256, sign, randomBytes } from './primitives.js';

/** How long one HTTP request may take before it counts as no answer. */
const requestMilliseconds = 30000;

/** A refusal or failure talking to the relay. `transient` is true when trying later may work. */
export class RelayError extends Error {
  constructor(message, { status = 0, code = 'unreachable', retryAfter } = {}) {
    super(message);
    this.status = status; this.code = code; this.retryAfter = retryAfter;
    this.transient = status === 0 || status === 429 || status >= 500;
  }
}

/** `SHA-256("errand mailbox v1\n" ‖ owner key)[0..16]`, base64url. */
export async function mailboxId(ownerPublicKey) {
  return base64url((await sha256(concat(utf8('errand mailbox v1\n'), ownerPublicKey))).slice(0, 16));
}

/** `SHA-256(token)`, base64url: what a mailbox owner registers. */
export async function tokenHash(token) { return base64url(await sha256(token)); }

export class RelayClient {
  /** `pinnedKey`: the relay's audit verifier key from the pairing offer, which signed requests name. */
  constructor(baseURL, pinnedKey) {
    this.baseURL = baseURL.replace(/\/+$/, '');
    this.pinnedKey = pinnedKey ?? null;
    this.fetchedKey = null;
  }

  async relayKey() {
    if (this.pinnedKey) return this.pinnedKey;
    if (!this.fetchedKey) {
      const response = await this.request('GET', '/v1/log/key');
      this.fetchedKey = (await response.text()).replace(/\n$/, '');
    }
    return this.fetchedKey;
  }

  /** One HTTP request; throws RelayError for a refusal (with the relay's own message) or no answer. */
  async request(method, path, { body, headers = {}, signer, accept = [200] } = {}) {
    const allHeaders = { ...headers };
    const bytes = body === undefined ? new Uint8Array(0) : (typeof body === 'string' ? utf8(body) : body);
    if (signer) Object.assign(allHeaders, await this.signature(method, path, bytes, signer));
    let response;
    try {
      response = await fetch(this.baseURL + path, {
        method, headers: allHeaders, body: body === undefined ? undefined : bytes, cache: 'no-store', credentials: 'omit',
        signal: AbortSignal.timeout(requestMilliseconds),
      });
    } catch (error) {
      throw new RelayError(`the relay at ${this.baseURL} cannot be reached (${error.message})`);
    }
    if (accept.includes(response.status)) return response;
    let code = 'http_' + response.status, message = `the relay answered ${response.status}`, retryAfter;
    try {
      const json = await response.json();
      if (json && json.error) { code = json.error.code ?? code; message = json.error.message ?? message; retryAfter = json.error.retryAfterSeconds; }
    } catch { /* not JSON */ }
    throw new RelayError(message, { status: response.status, code, retryAfter });
  }

  /** The four headers of a signed owner request (protocol "Signed requests"). */
  async signature(method, path, body, signer) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = base64url(randomBytes(16));
    const text = ['errand-relay-request-v2', await this.relayKey(), method, path, timestamp, nonce, hex(await sha256(body))].join('\n');
    return {
      'Errand-Key': base64url(signer.publicKey), 'Errand-Timestamp': timestamp, 'Errand-Nonce': nonce,
      'Errand-Signature': base64url(await sign(signer, utf8(text))),
    };
  }

  async putPairingRequest(slot, envelopeBytes, claim) {
    await this.request('PUT', `/v1/pairing-slots/${base64url(slot)}/request`, {
      body: envelopeBytes, headers: { 'Content-Type': 'application/octet-stream', 'Errand-Claim': base64url(claim) }, accept: [201],
    });
  }

  /** The host's receipt for this device's request, or null while there is none (the slot stays). */
  async pairingReceipt(slot, claim) {
    const response = await this.request('GET', `/v1/pairing-slots/${base64url(slot)}/receipt`, {
      headers: { 'Errand-Claim': base64url(claim) }, accept: [200, 204],
    });
    return response.status === 204 ? null : new Uint8Array(await response.arrayBuffer());
  }

  /** The host's reply, or null while there is none. */
  async takePairingReply(slot, claim) {
    const response = await this.request('GET', `/v1/pairing-slots/${base64url(slot)}/reply`, {
      headers: { 'Errand-Claim': base64url(claim) }, accept: [200, 204],
    });
    return response.status === 204 ? null : new Uint8Array(await response.arrayBuffer());
  }

  async addSendToken(mailbox, hash, signer) {
    await this.request('PUT', `/v1/mailboxes/${mailbox}/send-tokens/${hash}`, { signer, accept: [204] });
  }

  /** Posts an envelope with a send token: {seq, duplicate}. */
  async post(mailbox, token, envelopeBytes) {
    const response = await this.request('POST', `/v1/mailboxes/${mailbox}/envelopes`, {
      body: envelopeBytes, accept: [200, 201],
      headers: { 'Content-Type': 'application/octet-stream', Authorization: `Bearer ${base64url(token)}` },
    });
    return response.json();
  }

  async acknowledge(mailbox, idsHex, signer) {
    if (idsHex.length === 0) return;
    await this.request('POST', `/v1/mailboxes/${mailbox}/acks`, {
      body: JSON.stringify({ ids: idsHex }), headers: { 'Content-Type': 'application/json' }, signer,
    });
  }

  /** One page of the owner's mailbox after `after`: {envelopes: [{seq, bytes}], more}. */
  async fetchEnvelopes(mailbox, after, signer, limit = 100) {
    const response = await this.request('GET', `/v1/mailboxes/${mailbox}/envelopes?after=${after}&limit=${limit}`, { signer });
    const json = await response.json();
    if (!json || !Array.isArray(json.envelopes)) throw new RelayError('the relay answered a mailbox page without envelopes', { status: 502, code: 'bad_answer' });
    return { envelopes: json.envelopes.map(e => ({ seq: e.seq, bytes: fromBase64url(e.envelope) })), more: json.more === true };
  }

  /** The relay's VAPID public key (base64url), or null when the relay rings no doorbells. */
  async pushKey() {
    const response = await this.request('GET', '/v1/push/key', { accept: [200, 404] });
    if (response.status === 404) return null;
    const json = await response.json();
    return typeof json?.vapidPublicKey === 'string' ? json.vapidPublicKey : null;
  }

  /** Registers a doorbell for the owner's mailbox (protocol "Doorbells"): its id. */
  async saveDoorbell(mailbox, doorbell, signer) {
    const response = await this.request('POST', `/v1/mailboxes/${mailbox}/doorbells`, {
      body: JSON.stringify(doorbell), headers: { 'Content-Type': 'application/json' }, signer, accept: [200, 201],
    });
    return (await response.json()).id;
  }

  /** Removes a doorbell; one the relay no longer has counts as removed. */
  async removeDoorbell(mailbox, id, signer) {
    await this.request('DELETE', `/v1/mailboxes/${mailbox}/doorbells/${id}`, { signer, accept: [204, 404] });
  }

  /**
   * A live connection to the owner's mailbox. Calls `onEnvelope(seq, bytes)` (awaited, in order),
   * `onCaughtUp(seq)`, `onClose(reason, error)`. Returns {acknowledge(idsBytes[]), close()}.
   */
  live(mailbox, signer, after, { onEnvelope, onCaughtUp, onClose }) {
    const url = this.baseURL.replace(/^http/, 'ws') + `/v1/mailboxes/${mailbox}/live`;
    const socket = new WebSocket(url);
    socket.binaryType = 'arraybuffer';
    let queue = Promise.resolve();
    let refusal = null;
    socket.onmessage = event => {
      queue = queue.then(async () => {
        if (typeof event.data === 'string') {
          const json = JSON.parse(event.data);
          if (json.challenge) {
            const text = `errand-relay-live-v2\n${await this.relayKey()}\n${mailbox}\n${json.challenge}`;
            socket.send(JSON.stringify({ key: base64url(signer.publicKey), signature: base64url(await sign(signer, utf8(text))), after }));
          } else if (json.error) {
            refusal = new RelayError(json.error.message, { status: 400, code: json.error.code });
          }
          return;
        }
        const bytes = new Uint8Array(event.data);
        if (bytes[0] === 1 && bytes.length > 9) await onEnvelope(readU64(bytes, 1), bytes.slice(9));
        else if (bytes[0] === 2 && bytes.length === 9) await onCaughtUp(readU64(bytes, 1));
      }).catch(error => { console.error('errand: live frame', error); });
    };
    socket.onclose = event => { queue.then(() => onClose(event.reason || `closed (${event.code})`, refusal)); };
    return {
      acknowledge(ids) {
        if (ids.length && socket.readyState === WebSocket.OPEN) socket.send(concat(Uint8Array.of(3), ...ids));
      },
      close() { socket.close(1000); },
    };
  }
}
