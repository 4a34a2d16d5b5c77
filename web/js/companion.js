// The web companion: pairing, sending through the outbox, the live connection and the
// conversation it keeps, on top of the protocol modules. One instance per open app; all changes
// of state go through one queue, so envelopes are processed one at a time and in order.
import * as primitives from './primitives.js';
import { base64url, fromBase64url, hex, utf8, fromUTF8 } from './bytes.js';
import { parseEnvelope } from './envelope.js';
import { makeRequest, openReply, verifyReceipt, newPairingKeys, PairingError } from './pairing.js';
import * as ratchet from './ratchet.js';
import { RelayClient, RelayError, mailboxId, tokenHash } from './relay.js';
import * as store from './store.js';
import { shortAuthenticationString } from './offer.js';

const sessionLabel = id => `errand session ${id}`;
const tokenLabel = id => `errand send token ${id}`;
const identityLabel = (id, which) => `errand ${which} key ${id}`;

const finalStatuses = new Set(['succeeded', 'failed', 'cancelled', 'timedOut', 'interrupted', 'refused']);
const statuses = new Set(['queued', 'running', ...finalStatuses]);
const text = value => (typeof value === 'string' ? value : undefined);
const integer = value => (Number.isSafeInteger(value) ? value : undefined);
const flag = value => (typeof value === 'boolean' ? value : undefined);

/** A task request as the host reports it, keeping only fields of the expected types. */
function cleanRequest(request) {
  if (!request || typeof request !== 'object' || Array.isArray(request)) return null;
  const clean = { task: text(request.task), executor: text(request.executor) };
  if (text(request.text) !== undefined) clean.text = request.text;
  if (text(request.action) !== undefined) clean.action = request.action;
  if (Array.isArray(request.arguments)) clean.arguments = request.arguments.filter(a => typeof a === 'string');
  if (request.newConversation === true) clean.newConversation = true;
  return clean;
}

/** What a task asked for, in a few words (its text, or the action and its arguments). */
export function taskSummary(request) {
  if (!request) return '(sent from another device)';
  if (request.executor === 'agent' || request.executor === 'shell') return request.text ?? '';
  return [request.action ?? '', ...(request.arguments ?? [])].join(' ');
}

const finalWords = { succeeded: 'succeeded', failed: 'failed', cancelled: 'cancelled', timedOut: 'timed out', interrupted: 'interrupted', refused: 'refused' };
const shortened = (value, length) => (value.length > length ? value.slice(0, length - 1).trimEnd() + '…' : value);

/**
 * The words of a notification about a finished task: "studio: organize notes — succeeded", and
 * the last line of its output. Written on this device only; nothing of it ever reaches a server.
 */
export function noticeText(notice) {
  if (notice.kind === 'approval') {
    const what = shortened([notice.tool, notice.about].filter(Boolean).join(': ').replace(/\s+/g, ' ').trim() || 'a tool', 100);
    return { title: `${notice.hostName} needs an answer`, body: `The agent asks to use ${what}. Open Errand to allow or deny it.` };
  }
  const what = shortened(notice.summary.replace(/\s+/g, ' ').trim() || 'a task', 60);
  return { title: `${notice.hostName}: ${what} — ${finalWords[notice.status] ?? notice.status}`, body: shortened(notice.lastLine ?? '', 120) };
}

const lastLine = output => output.split('\n').map(line => line.trim()).filter(Boolean).pop() ?? '';

/** A failure with what to do about it. */
export class CompanionError extends Error {
  constructor(message, hint) { super(message); this.hint = hint; }
}

export class Companion {
  /** `onChange(what)` is called after every change the page should show. */
  constructor(onChange = () => {}) {
    this.onChange = onChange;
    this.queue = Promise.resolve();
    this.connections = new Map();   // host id → {client, link, state: 'connecting'|'online'|'offline', retry}
    this.flushing = new Set();
    this.flushAgain = new Set();       // hosts with messages queued while their flush ran
    this.notices = null;               // while catching up: the tasks that finished meanwhile
  }

  /** Runs `work` after everything queued before it; failures reach the caller only. */
  serial(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  async hosts() { return store.read(['hosts'], ({ all }) => all('hosts')); }

  /** Rewrites one host's record with `change(current)`, in turn with received envelopes (which rewrite it too). */
  async updateHost(hostId, change) {
    await this.serial(async () => {
      const current = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
      if (current) await store.commit([['put', 'hosts', change(current)]]);
    });
  }
  async tasks(hostId) {
    const tasks = await store.read(['tasks'], ({ all }) => all('tasks', 'host', hostId));
    return tasks.sort((a, b) => (a.createdAt - b.createdAt) || ((a.position ?? 0) - (b.position ?? 0)));
  }
  async pendingCount(hostId) { return (await store.read(['outbox'], ({ all }) => all('outbox', 'host', hostId))).length; }
  async deviceName() { return store.read(['settings'], ({ get }) => get('settings', 'deviceName')); }

  // MARK: Pairing

  /**
   * Pairs with the host of a parsed offer. `ui.showSAS(digits)` is called once the host's signed
   * receipt for this request arrived; `ui.status(text)` with progress. Returns the stored host.
   */
  async pair(offer, deviceName, ui) {
    const hostLabel = offer.hostName ?? 'the computer';
    const keys = await newPairingKeys(primitives);
    const { envelope, th } = await makeRequest(offer, keys, deviceName);
    const client = new RelayClient(offer.relayURL, offer.auditKey);
    try {
      await client.putPairingRequest(offer.slot, envelope.bytes, keys.claim);
    } catch (error) {
      if (error.code === 'slot_already_used') {
        throw new CompanionError('this pairing code was already used by another device', "start pairing again on the computer ('errand host pair') for a fresh code");
      }
      if (error.status === 404) {
        throw new CompanionError('the pairing code is no longer open at the relay: it expired, was cancelled, or was already used',
          "start pairing again on the computer ('errand host pair') for a fresh code");
      }
      throw new CompanionError(`could not send the pairing request: ${error.message}`, 'check that this device can reach the relay, then scan the code again');
    }
    ui.status(`waiting for ${hostLabel} to receive the request…`);
    const receipt = await this.waitForSlot(client, offer, keys.claim, 'receipt');
    try { await verifyReceipt(offer, keys, receipt); } catch (error) {
      if (error instanceof PairingError) throw new CompanionError(error.message, error.hint);
      throw error;
    }
    ui.showSAS(await shortAuthenticationString(offer.secret, th));
    ui.status(`waiting for ${hostLabel} to confirm…`);
    const reply = await this.waitForSlot(client, offer, keys.claim, 'reply');
    let accepted;
    try { accepted = await openReply(offer, keys, th, reply, hostLabel); } catch (error) {
      if (error instanceof PairingError) throw new CompanionError(error.message, error.hint);
      throw error;
    }
    const own = await mailboxId(keys.signing.publicKey);
    try {
      await client.addSendToken(own, await tokenHash(keys.hostSendToken), keys.signing);
    } catch (error) {
      throw new CompanionError(`could not let ${accepted.hostName} write to this device's mailbox: ${error.message}`,
        "revoke this device on the computer ('errand host revoke') and pair again");
    }
    const id = own;
    const host = {
      id, name: accepted.hostName, relayURL: offer.relayURL, auditKey: offer.auditKey ?? null,
      hostSigningKey: offer.hostSigningKey, hostAgreementKey: offer.hostAgreementKey, hostMailbox: await mailboxId(offer.hostSigningKey),
      th, mailbox: own, sendToken: await store.sealAtRest(accepted.sendToken, tokenLabel(id)),
      signing: await store.storableIdentity(keys.signing, identityLabel(id, 'signing')),
      agreement: await store.storableIdentity(keys.agreement, identityLabel(id, 'agreement')),
      pairedAt: Math.floor(Date.now() / 1000), revoked: false, historyPosition: 0, actions: null, deviceName,
    };
    const sealedState = await store.sealAtRest(ratchet.serialize(accepted.state), sessionLabel(id));
    await store.commit([['put', 'hosts', host], ['put', 'sessions', sealedState, id], ['put', 'settings', deviceName, 'deviceName']]);
    keys.ephemeral.secretKey.fill(0);
    this.onChange('hosts');
    // The host can answer only once it has heard from this device: ask for the actions and the history.
    await this.send(id, { type: 'listActions', request: crypto.randomUUID() });
    await this.send(id, { type: 'sync', request: crypto.randomUUID(), after: 0 });
    const notifications = await this.notifications();
    if (notifications) {
      this.registerDoorbells(notifications)
        .then(({ skipped }) => { for (const s of skipped) console.warn(`errand: no notifications from ${s.hostName} (${s.reason})`); })
        .catch(error => console.warn(`errand: no notifications from ${host.name} yet (${error.message})`));
    }
    return host;
  }

  /** Waits for the host's `'receipt'`, then its `'reply'`, in the pairing slot. */
  async waitForSlot(client, offer, claim, part) {
    const deadline = (offer.expiresAt + 5) * 1000;
    while (Date.now() < deadline) {
      try {
        const found = part === 'receipt' ? await client.pairingReceipt(offer.slot, claim) : await client.takePairingReply(offer.slot, claim);
        if (found) return found;
      } catch (error) {
        if (error.status === 404 && Date.now() >= (offer.expiresAt - 2) * 1000) break;
        if (error.status === 404) {
          throw new CompanionError('the computer closed the pairing code without answering (it could not read this device\'s request, or the code expired)',
            "start pairing again on the computer ('errand host pair')");
        }
        if (error.status === 403) throw new CompanionError('another device claimed this pairing code', 'start pairing again on the computer for a fresh code');
        if (!error.transient) throw new CompanionError(`could not collect the computer's answer: ${error.message}`, 'pair again');
      }
      await new Promise(resolve => setTimeout(resolve, part === 'receipt' ? 150 : 400));
    }
    if (part === 'receipt') {
      throw new CompanionError("the computer did not confirm receiving this device's request before the pairing code expired",
        'if the computer asked you to confirm a code meanwhile, decline it; then start pairing again');
    }
    throw new CompanionError('the computer did not answer before the pairing code expired', 'confirm on the computer sooner, or start pairing again');
  }

  // MARK: Sending

  /** Seals `message` (a conversation object) for the host and queues it; then tries to deliver. */
  async send(hostId, message, localTask) {
    await this.serial(async () => {
      const host = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
      if (!host) throw new CompanionError('this computer is no longer paired');
      if (host.revoked) throw new CompanionError(`${host.name} no longer accepts messages from this device (it was revoked)`, 'unpair it here; pair again if this device should have access');
      const state = await this.loadSession(hostId);
      const { state: next, envelope } = await ratchet.sealPayload(state, host.th, utf8(JSON.stringify(message)));
      const sealedState = await store.sealAtRest(ratchet.serialize(next), sessionLabel(hostId));
      const ops = [['put', 'sessions', sealedState, hostId],
        ['put', 'outbox', { host: hostId, id: hex(envelope.id), bytes: envelope.bytes, createdAt: Date.now() }]];
      if (localTask) ops.push(['put', 'tasks', localTask]);
      await store.commit(ops);
    });
    this.onChange('outbox');
    this.flush(hostId);
  }

  /** Sends text to the host's agent; returns the task id. With `newConversation` the agent forgets the earlier tasks. */
  async sendText(hostId, text, { newConversation = false } = {}) {
    const task = crypto.randomUUID();
    const request = { task, executor: 'agent', text };
    if (newConversation) request.newConversation = true;
    await this.send(hostId, { type: 'task', task: request }, this.localTask(hostId, request));
    return task;
  }

  /** Runs one of the host's actions with arguments (one argv entry each, no shell). */
  async runAction(hostId, action, args) {
    const task = crypto.randomUUID();
    const request = { task, executor: 'action', action, arguments: args };
    await this.send(hostId, { type: 'task', task: request }, this.localTask(hostId, request));
    return task;
  }

  async cancel(hostId, task) { await this.send(hostId, { type: 'cancel', task }); }

  /** Answers an agent's approval request: allow, or deny with an optional message for the agent. */
  async answerApproval(hostId, task, approval, allow, message) {
    const answer = { type: 'approve', approval, allow };
    if (!allow && message) answer.message = message;
    await this.send(hostId, answer);
    // Read and written in one turn of the queue: the host's answer (the task's output) may be
    // applied meanwhile, and a copy read before it would write that output away.
    const marked = await this.serial(async () => {
      const known = await store.read(['tasks'], ({ get }) => get('tasks', task));
      if (known?.approvals?.[approval]?.status !== 'pending') return false;
      await store.commit([['put', 'tasks', { ...known, approvals: { ...known.approvals,
        [approval]: { ...known.approvals[approval], answered: allow ? 'allow' : 'deny', refusal: undefined } } }]]);
      return true;
    });
    if (marked) this.onChange('conversation');
  }
  async refreshActions(hostId) { await this.send(hostId, { type: 'listActions', request: crypto.randomUUID() }); }

  localTask(hostId, request) {
    return { task: request.task, host: hostId, request, status: 'sending', output: '', outputLength: 0, createdAt: Math.floor(Date.now() / 1000), device: null };
  }

  /** Posts what waits in the outbox, oldest first; stops at the first failure (kept for later). */
  async flush(hostId) {
    if (this.flushing.has(hostId)) { this.flushAgain.add(hostId); return; }
    this.flushing.add(hostId);
    try {
      do {
        this.flushAgain.delete(hostId);
        const host = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
        if (!host || host.revoked) return;
        const pending = (await store.read(['outbox'], ({ all }) => all('outbox', 'host', hostId))).sort((a, b) => a.n - b.n);
        const client = this.client(host);
        const token = await store.openAtRest(host.sendToken, tokenLabel(hostId));
        for (const item of pending) {
          try {
            await client.post(host.hostMailbox, token, item.bytes);
          } catch (error) {
            if (error.status === 403 || error.status === 401) {
              await this.updateHost(hostId, host => ({ ...host, revoked: true }));
              this.onChange('revoked');
              return;
            }
            this.setState(hostId, 'offline', error.message);
            return;
          }
          await store.commit([['delete', 'outbox', item.n]]);
          this.onChange('outbox');
        }
      } while (this.flushAgain.has(hostId));
    } finally {
      this.flushing.delete(hostId);
    }
  }

  // MARK: Receiving

  client(host) {
    let connection = this.connections.get(host.id);
    if (!connection) {
      connection = { client: new RelayClient(host.relayURL, host.auditKey), state: 'connecting', attempt: 0 };
      this.connections.set(host.id, connection);
    }
    return connection.client;
  }

  connectionState(hostId) { return this.connections.get(hostId)?.state ?? 'connecting'; }

  setState(hostId, state, detail) {
    const connection = this.connections.get(hostId);
    if (connection && (connection.state !== state || connection.detail !== detail)) {
      connection.state = state; connection.detail = detail;
      this.onChange('connection');
    }
  }

  /** Keeps a live connection to this device's mailbox at the host's relay, reconnecting with backoff. */
  async connect(hostId) {
    const host = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
    if (!host) return;
    const client = this.client(host);
    const connection = this.connections.get(hostId);
    if (connection.link || connection.opening || connection.paused) return;
    connection.opening = true;
    let signing;
    try { signing = await store.loadIdentity(host.signing, identityLabel(hostId, 'signing')); } finally { connection.opening = false; }
    if (connection.link || connection.stopped) return;
    let synced = false;
    const open = () => {
      const link = client.live(host.mailbox, signing, 0, {
        onEnvelope: async (seq, bytes) => {
          const id = await this.receive(hostId, bytes);
          if (id) connection.link?.acknowledge([id]);
        },
        onCaughtUp: async () => {
          connection.attempt = 0;
          this.setState(hostId, 'online');
          this.flush(hostId);
          if (!synced) {
            synced = true;
            const current = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
            if (current && !current.revoked) this.send(hostId, { type: 'sync', request: crypto.randomUUID(), after: await this.syncStart(hostId) }).catch(() => {});
          }
        },
        onClose: async (reason, refusal) => {
          if (connection.link !== link) return;  // an older socket, already replaced
          connection.link = null;
          if (connection.stopped || connection.paused) return;
          if (refusal?.code === 'not_found') {
            // The host closed this device's mailbox when it revoked it (or the relay lost it).
            await this.updateHost(hostId, host => ({ ...host, revoked: true }));
            this.onChange('revoked');
            return;
          }
          this.setState(hostId, 'offline', refusal ? refusal.message : reason);
          const delay = Math.min(30000, 500 * 2 ** Math.min(connection.attempt++, 6)) * (0.5 + Math.random() / 2);
          connection.timer = setTimeout(open, delay);
        },
      });
      connection.link = link;
    };
    open();
  }

  /**
   * Where a sync starts: just before the first task still open here (other devices' tasks get no
   * live events, so an open one is brought up to date by the next sync), else after the last one.
   */
  async syncStart(hostId) {
    const tasks = await store.read(['tasks'], ({ all }) => all('tasks', 'host', hostId));
    const positioned = tasks.filter(t => Number.isSafeInteger(t.position));
    const open = positioned.filter(t => !finalStatuses.has(t.status)).map(t => t.position);
    if (open.length) return Math.max(0, Math.min(...open) - 1);
    return positioned.reduce((last, t) => Math.max(last, t.position), 0);
  }

  /**
   * Closes every live connection (the page is going away, or into the back-forward cache): the
   * relay then knows this device is not listening and rings its doorbells. `resume` reopens them.
   */
  pause() {
    for (const connection of this.connections.values()) { connection.paused = true; clearTimeout(connection.timer); connection.link?.close(); }
  }

  resume() {
    for (const [hostId, connection] of this.connections) {
      if (!connection.paused) continue;
      connection.paused = false; connection.attempt = 0;
      this.connect(hostId);
    }
  }

  /** Reconnects every host at once (the network came back). */
  reconnectNow() {
    for (const [hostId, connection] of this.connections) {
      if (!connection.link && !connection.stopped) { clearTimeout(connection.timer); connection.attempt = 0; this.connect(hostId); }
      this.flush(hostId);
    }
  }

  /**
   * Processes one envelope from the host; returns its id (to acknowledge) once it is handled or
   * cannot ever be, or null when it must stay at the relay (a local failure).
   */
  async receive(hostId, bytes) {
    let envelope;
    try { envelope = parseEnvelope(bytes); } catch { return null; }
    const idHex = hex(envelope.id);
    return this.serial(async () => {
      const seenKey = `${hostId}/${idHex}`;
      const [host, seen] = await store.read(['hosts', 'seen'], ({ get }) => Promise.all([get('hosts', hostId), get('seen', seenKey)]));
      if (!host) return null;
      if (seen) return envelope.id;
      let opened;
      try {
        opened = await ratchet.openPayload(await this.loadSession(hostId), host.th, envelope);
      } catch (error) {
        if (error instanceof ratchet.SessionError) { console.warn(`errand: dropped an envelope: ${error.message}`); return envelope.id; }
        return null;
      }
      const ops = [['put', 'sessions', await store.sealAtRest(ratchet.serialize(opened.state), sessionLabel(hostId)), hostId],
        ['put', 'seen', Date.now(), seenKey]];
      let message = null;
      try { message = JSON.parse(fromUTF8(opened.payload) ?? ''); } catch { message = null; }
      if (message && typeof message === 'object' && !Array.isArray(message)) {
        // A message that cannot be applied is dropped, but it still counts as received: the
        // session state and its id are saved, so it is not retried forever.
        try { ops.push(...await this.apply(host, message)); } catch (error) { console.warn(`errand: a message from the host could not be applied; dropped (${error.message})`); }
      } else console.warn('errand: a message from the host is not a JSON object; dropped');
      await store.commit(ops);
      this.onChange('conversation');
      return envelope.id;
    });
  }

  /** The writes a conversation message causes. */
  async apply(host, message) {
    const getTask = id => store.read(['tasks'], ({ get }) => get('tasks', id));
    switch (message.type) {
      case 'event': {
        const event = message.event;
        if (!event || typeof event !== 'object' || typeof event.task !== 'string' || !statuses.has(event.status)) return [];
        const task = (await getTask(event.task)) ?? { task: event.task, host: host.id, request: null, output: '', outputLength: 0, createdAt: Math.floor(Date.now() / 1000) };
        if (task.host !== host.id) return [];
        // A final status is never replaced by an earlier one arriving late.
        const updated = { ...task, status: finalStatuses.has(task.status) ? task.status : event.status };
        const output = text(event.output);
        if (output !== undefined) {
          const piece = utf8(output);
          const offset = integer(event.offset) ?? task.outputLength;
          if (offset === task.outputLength) {
            updated.output = task.output + output; updated.outputLength = task.outputLength + piece.length;
          } else if (offset < task.outputLength && offset + piece.length > task.outputLength) {
            const tail = fromUTF8(piece.slice(task.outputLength - offset));
            if (tail !== null) { updated.output = task.output + tail; updated.outputLength = offset + piece.length; }
          }
        }
        if (!finalStatuses.has(task.status)) {
          for (const [field, read] of [['exitCode', integer], ['reason', text], ['truncated', flag], ['outputBytes', integer], ['outputDigest', text]]) {
            const value = read(event[field]);
            if (value !== undefined) updated[field] = value;
          }
        }
        if (finalStatuses.has(updated.status)) updated.finishedAt = updated.finishedAt ?? Math.floor(Date.now() / 1000);
        if (this.notices && finalStatuses.has(updated.status) && !finalStatuses.has(task.status)) {
          this.notices.push({ host: host.id, hostName: host.name, task: updated.task, status: updated.status,
            summary: taskSummary(updated.request), lastLine: lastLine(updated.output) });
        }
        return [['put', 'tasks', updated]];
      }
      case 'approval': case 'approvalResolved': case 'approvalRefused': {
        // Kept with their task: { [id]: {id, tool, summary, input, expiresAt, status, by, reason, refusal} }.
        const request = message.type === 'approval' ? message.approval : null;
        const resolution = message.type === 'approvalResolved' ? message.resolution : null;
        const id = text(request?.id ?? resolution?.approval ?? message.approval);
        const taskId = text(request?.task ?? resolution?.task);
        if (!id || (message.type !== 'approvalRefused' && !taskId)) return [];
        let task = taskId ? await getTask(taskId) : (await store.read(['tasks'], ({ entries }) => entries('tasks')))
          .map(([, value]) => value).find(t => t.host === host.id && t.approvals?.[id]);
        if (!task && !request) return [];
        task = task ?? { task: taskId, host: host.id, request: null, status: 'running', output: '', outputLength: 0, createdAt: Math.floor(Date.now() / 1000) };
        if (task.host !== host.id) return [];
        const known = task.approvals?.[id];
        let entry;
        if (request) {
          if (known) return [];
          entry = { id, tool: text(request.tool) ?? 'a tool', summary: text(request.summary) ?? '', input: text(request.input) ?? '',
            inputBytes: integer(request.inputBytes) ?? null, expiresAt: integer(request.expiresAt) ?? 0, status: 'pending' };
          if (this.notices) this.notices.push({ kind: 'approval', id, host: host.id, hostName: host.name, task: task.task, tool: entry.tool, about: entry.summary });
        } else if (resolution) {
          if (!['allowed', 'denied'].includes(resolution.outcome)) return [];
          entry = { ...(known ?? { id, tool: 'a tool', summary: '', input: '', expiresAt: 0 }), status: resolution.outcome,
            by: text(resolution.by) ?? null, reason: text(resolution.reason) ?? null };
        } else {
          if (!known) return [];
          entry = { ...known, refusal: text(message.reason) ?? 'the computer did not count this answer', answered: undefined };
        }
        return [['put', 'tasks', { ...task, approvals: { ...(task.approvals ?? {}), [id]: entry } }]];
      }
      case 'actions':
        if (!Array.isArray(message.actions)) return [];
        return [['put', 'hosts', { ...host, actions: message.actions.filter(a => a && typeof a.name === 'string').map(a => ({ name: a.name, description: text(a.description) ?? '' })) }]];
      case 'history': {
        if (!Array.isArray(message.entries)) return [];
        const ops = [];
        let position = host.historyPosition ?? 0;
        for (const entry of message.entries) {
          if (!entry || typeof entry !== 'object' || typeof entry.task !== 'string' || !statuses.has(entry.status)) continue;
          const known = await getTask(entry.task);
          if (known && known.host !== host.id) continue;
          const reported = text(entry.output) ?? '';
          // Keep a final status already received (a snapshot may be older than the last event),
          // and this device's fuller live output.
          const keepKnown = known && (finalStatuses.has(known.status) || known.outputLength > utf8(reported).length);
          ops.push(['put', 'tasks', {
            ...(known ?? {}), task: entry.task, host: host.id, request: cleanRequest(entry.request) ?? known?.request ?? null,
            status: known && finalStatuses.has(known.status) ? known.status : entry.status,
            exitCode: known?.exitCode ?? integer(entry.exitCode), output: keepKnown ? known.output : reported,
            outputLength: keepKnown ? known.outputLength : utf8(reported).length, truncated: flag(entry.truncated) ?? known?.truncated,
            createdAt: integer(entry.createdAt) ?? known?.createdAt ?? Math.floor(Date.now() / 1000), finishedAt: integer(entry.finishedAt) ?? known?.finishedAt,
            device: text(entry.device) ?? known?.device ?? null, position: integer(entry.position) ?? known?.position,
          }]);
          if (integer(entry.position) !== undefined) position = Math.max(position, entry.position);
        }
        ops.push(['put', 'hosts', { ...host, historyPosition: position }]);
        return ops;
      }
      default:
        console.warn(`errand: a message of unknown type from the host; dropped`);
        return [];
    }
  }

  async loadSession(hostId) {
    const sealed = await store.read(['sessions'], ({ get }) => get('sessions', hostId));
    if (!sealed) throw new CompanionError('the session with this computer is gone', 'unpair it here and pair again');
    return ratchet.deserialize(await store.openAtRest(sealed, sessionLabel(hostId)));
  }

  /**
   * Forgets the ids of envelopes received more than 8 days ago: the relay keeps an envelope at
   * most 7 days, so none of them can be delivered again.
   */
  async pruneSeen(now = Date.now()) {
    await this.serial(async () => {
      const cutoff = now - 8 * 86400 * 1000;
      const old = await store.read(['seen'], ({ entries }) => entries('seen'));
      const stale = old.filter(([, at]) => typeof at !== 'number' || at < cutoff).map(([key]) => ['delete', 'seen', key]);
      if (stale.length) await store.commit(stale);
    });
  }

  // MARK: Catching up (a push woke this device)

  /**
   * Fetches what waits in each paired computer's mailbox over HTTP, processes it as the live
   * connection would and acknowledges what was handled. Returns the tasks that finished
   * meanwhile (see `noticeText`) and, per computer that could not be read, why.
   */
  async catchUp() {
    // One at a time: each collects the tasks that finished during its own run.
    const run = (this.catchingUp ?? Promise.resolve()).catch(() => {}).then(() => this.catchUpNow());
    this.catchingUp = run;
    return run;
  }

  async catchUpNow() {
    const notices = [], failures = [];
    this.notices = notices;
    try {
      for (const host of await this.hosts()) {
        if (host.revoked) continue;
        try {
          await this.catchUpWith(host);
        } catch (error) {
          failures.push({ host: host.id, hostName: host.name, reason: error.message });
        }
      }
    } finally {
      this.notices = null;
    }
    return { notices, failures };
  }

  async catchUpWith(host) {
    const client = this.client(host);
    const signing = await store.loadIdentity(host.signing, identityLabel(host.id, 'signing'));
    let after = 0;
    for (let page = 0; page < 50; page++) {
      const { envelopes, more } = await client.fetchEnvelopes(host.mailbox, after, signing);
      const handled = [];
      for (const { seq, bytes } of envelopes) {
        if (Number.isSafeInteger(seq)) after = Math.max(after, seq);
        const id = bytes ? await this.receive(host.id, bytes) : null;
        if (id) handled.push(hex(id));
      }
      await client.acknowledge(host.mailbox, handled, signing);
      if (!more || envelopes.length === 0) return;
    }
  }

  // MARK: Doorbells (notifications)

  /** The push subscription this device registered at its relays ({endpoint, p256dh, auth, key}), or null. */
  async notifications() { return (await store.read(['settings'], ({ get }) => get('settings', 'notifications'))) ?? null; }

  /** Whether the person said "not now" to the offer of notifications. */
  async notificationsDeclined() { return (await store.read(['settings'], ({ get }) => get('settings', 'notificationsDeclined'))) === true; }
  async declineNotifications() { await store.commit([['put', 'settings', true, 'notificationsDeclined']]); this.onChange('notifications'); }

  /** The VAPID public key of the relay of the first paired computer (what a subscription is made with), or null. */
  async pushKey() {
    const host = (await this.hosts()).find(h => !h.revoked);
    if (!host) throw new CompanionError('no paired computer to be notified about', 'pair with a computer first');
    try {
      return await this.client(host).pushKey();
    } catch (error) {
      throw new CompanionError(`could not ask the relay for its push key: ${error.message}`, 'try again when the relay is reachable');
    }
  }

  /**
   * Registers a browser push subscription (`PushSubscription.toJSON()`, made with `key`) as the
   * doorbell of this device's mailbox at every paired computer's relay. Returns the computers it
   * was registered for and those skipped, with why; throws when it was registered for none.
   */
  async enableNotifications(subscription, key) {
    const endpoint = subscription?.endpoint, p256dh = subscription?.keys?.p256dh, auth = subscription?.keys?.auth;
    if (typeof endpoint !== 'string' || typeof p256dh !== 'string' || typeof auth !== 'string') {
      throw new CompanionError('the browser made a push subscription without its endpoint or keys', 'turn notifications on again');
    }
    const notifications = { endpoint, p256dh, auth, key, enabledAt: Date.now() };
    const result = await this.registerDoorbells(notifications);
    if (result.registered.length === 0) {
      const reasons = result.skipped.map(s => `${s.hostName}: ${s.reason}`).join('; ');
      throw new CompanionError(`no relay accepted this browser's push service (${reasons})`,
        "ask the relay's operator to allow it (push.allowed_hosts), or use 'errand notify' with ntfy on a computer");
    }
    await store.commit([['put', 'settings', notifications, 'notifications']]);
    this.onChange('notifications');
    return result;
  }

  /** Registers a subscription the push service renewed, with the key the first one was made with. */
  async resubscribe(subscription) {
    const current = await this.notifications();
    if (current?.key) await this.enableNotifications(subscription, current.key);
  }

  /** Registers the subscription at each paired computer's relay whose push key it was made with. */
  async registerDoorbells(notifications) {
    const registered = [], skipped = [];
    for (const host of await this.hosts()) {
      if (host.revoked) continue;
      const client = this.client(host);
      try {
        const key = await client.pushKey();
        if (key === null) { skipped.push({ host: host.id, hostName: host.name, reason: 'its relay rings no doorbells (push is off there)' }); continue; }
        if (key !== notifications.key) { skipped.push({ host: host.id, hostName: host.name, reason: 'its relay is another one, with another push key' }); continue; }
        const signing = await store.loadIdentity(host.signing, identityLabel(host.id, 'signing'));
        const id = await client.saveDoorbell(host.mailbox, { kind: 'webpush', url: notifications.endpoint, p256dh: notifications.p256dh, auth: notifications.auth }, signing);
        await this.updateHost(host.id, fresh => ({ ...fresh, doorbell: id }));
        registered.push({ host: host.id, hostName: host.name });
        this.onChange('notifications');
      } catch (error) {
        skipped.push({ host: host.id, hostName: host.name, reason: error.message });
      }
    }
    return { registered, skipped };
  }

  /** Removes this device's doorbells at every relay; returns the computers whose relay could not be told. */
  async disableNotifications() {
    const failed = [];
    for (const host of await this.hosts()) {
      if (!host.doorbell) continue;
      try {
        const signing = await store.loadIdentity(host.signing, identityLabel(host.id, 'signing'));
        await this.client(host).removeDoorbell(host.mailbox, host.doorbell, signing);
        await this.updateHost(host.id, ({ doorbell, ...rest }) => rest);
      } catch (error) {
        failed.push({ host: host.id, hostName: host.name, reason: error.message });
      }
    }
    await store.commit([['delete', 'settings', 'notifications']]);
    this.onChange('notifications');
    return failed;
  }

  // MARK: Forgetting

  /** Forgets one computer: its keys, session, outbox and conversation. */
  async unpair(hostId) {
    const paired = await store.read(['hosts'], ({ get }) => get('hosts', hostId));
    if (paired?.doorbell) {
      // Best effort: a relay that cannot be reached keeps ringing a mailbox nobody reads, which
      // shows as a "nothing new" notification at most.
      store.loadIdentity(paired.signing, identityLabel(hostId, 'signing'))
        .then(signing => this.client(paired).removeDoorbell(paired.mailbox, paired.doorbell, signing))
        .catch(error => console.warn(`errand: the relay may still ring for ${paired.name} (${error.message})`));
    }
    const connection = this.connections.get(hostId);
    if (connection) { connection.stopped = true; clearTimeout(connection.timer); connection.link?.close(); this.connections.delete(hostId); }
    await this.serial(async () => {
      const [tasks, outbox] = await store.read(['tasks', 'outbox'], ({ all }) => Promise.all([all('tasks', 'host', hostId), all('outbox', 'host', hostId)]));
      await store.commit([['delete', 'hosts', hostId], ['delete', 'sessions', hostId],
        ['delete', 'seen', IDBKeyRange.bound(`${hostId}/`, `${hostId}/\uffff`)],
        ...tasks.map(t => ['delete', 'tasks', t.task]), ...outbox.map(o => ['delete', 'outbox', o.n])]);
    });
    this.onChange('hosts');
  }

  /** Forgets everything this browser holds for Errand. */
  async forgetEverything() {
    for (const id of [...this.connections.keys()]) {
      const connection = this.connections.get(id);
      connection.stopped = true; clearTimeout(connection.timer); connection.link?.close();
    }
    this.connections.clear();
    await this.serial(() => store.forgetEverything());
    this.onChange('hosts');
  }
}

export { RelayError, base64url, fromBase64url };
