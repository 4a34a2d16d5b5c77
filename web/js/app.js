// The page: which view shows, and what each control does. All protocol work is in companion.js.
import { loadSodium } from './primitives.js';
import { parseOffer, fingerprint, formatSAS, OfferError } from './offer.js';
import { Companion, CompanionError, taskSummary } from './companion.js';
import { pushSupported, turnOn, turnOff, answerServiceWorker } from './notify.js';
import { claim } from './store.js';

const $ = id => document.getElementById(id);
const views = ['loading-view', 'lock-view', 'welcome-view', 'pair-view', 'conversation-view'];
const state = { offer: null, selected: null, pairing: false, opened: null, opening: false };
let companion;

function show(view) { for (const v of views) $(v).hidden = v !== view; }

function problem(error) {
  const box = $('problem');
  if (!error) { box.hidden = true; return; }
  box.querySelector('.message').textContent = error.message;
  box.querySelector('.hint').textContent = error.hint ?? '';
  box.hidden = false;
  if (!(error instanceof OfferError || error instanceof CompanionError)) console.error(error);
}

function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(properties)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** Arguments typed as words; quotes keep spaces ("a b" or 'a b'), a backslash escapes one character. */
export function splitArguments(text) {
  const words = []; let current = null, quote = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) { if (c === quote) quote = null; else if (c === '\\' && quote === '"' && i + 1 < text.length) current += text[++i]; else current += c; continue; }
    if (c === '"' || c === "'") { quote = c; current ??= ''; } else if (c === '\\' && i + 1 < text.length) { current = (current ?? '') + text[++i]; }
    else if (/\s/.test(c)) { if (current !== null) words.push(current); current = null; } else current = (current ?? '') + c;
  }
  if (quote) throw new CompanionError('an argument has an opening quote without its closing one', 'close the quote, or leave quotes out');
  if (current !== null) words.push(current);
  return words;
}

// MARK: Pairing

/** Whether this page may connect to `relayURL` (a self-hosted app's policy may list other relays). */
async function relayAllowed(relayURL) {
  try {
    await fetch(new URL('/healthz', relayURL), { method: 'GET', cache: 'no-store', mode: 'cors' });
    return true;
  } catch {
    return false;
  }
}

async function showOffer(text) {
  problem(null);
  try {
    state.offer = parseOffer(text);
  } catch (error) {
    state.offer = null;
    await render();
    problem(error);
    return;
  }
  const offer = state.offer;
  // This page may connect only to its own origin (its Content-Security-Policy), so a code for
  // another relay must be opened with that relay's own link.
  if (new URL(offer.relayURL).origin !== location.origin && !(await relayAllowed(offer.relayURL))) {
    state.offer = null;
    await render();
    problem({ message: `this pairing code is for the relay ${offer.relayURL}, which this page cannot reach`,
      hint: "open the code's link with the phone's camera (it opens the app of that relay), or run 'errand pair' on a computer" });
    return;
  }
  $('pair-host').textContent = offer.hostName ?? 'your computer';
  $('pair-fingerprint').textContent = await fingerprint(offer.hostSigningKey);
  $('pair-relay').textContent = offer.relayURL;
  $('sas-box').hidden = true;
  $('pair-status').textContent = '';
  $('pair-button').disabled = false;
  $('device-name').disabled = false;
  $('device-name').value ||= (await companion.deviceName()) ?? '';
  show('pair-view');
}

async function pair(event) {
  event.preventDefault();
  if (state.pairing || !state.offer) return;
  problem(null);
  const offer = state.offer;
  state.pairing = true;
  $('pair-button').disabled = true; $('device-name').disabled = true;
  $('pair-status').textContent = 'sending the pairing request…';
  try {
    if (offer.expiresAt <= Date.now() / 1000) parseOffer(offer.uri);  // the expiry message, if it passed while the page was open
    const host = await companion.pair(offer, $('device-name').value.trim(), {
      showSAS: digits => { $('sas').textContent = formatSAS(digits); $('sas-box').hidden = false; },
      status: text => { $('pair-status').textContent = text; },
    });
    state.offer = null;
    state.selected = host.id;
    companion.connect(host.id);
    await render();
  } catch (error) {
    $('pair-status').textContent = '';
    $('sas-box').hidden = true;
    problem(error);
  } finally {
    state.pairing = false;
    // A notification tapped while pairing opens its task now.
    if (openedFor) { const { host, task } = openedFor; openedFor = null; openFromNotification(host, task); }
    $('pair-button').disabled = false; $('device-name').disabled = false;
  }
}

// MARK: Conversation

const statusText = { sending: 'waiting to send', queued: 'queued', running: 'running', succeeded: 'done', failed: 'failed',
  cancelled: 'cancelled', timedOut: 'timed out', interrupted: 'interrupted', refused: 'refused' };

function renderTask(host, task) {
  const open = ['sending', 'queued', 'running'].includes(task.status);
  const meta = [task.request?.executor === 'action' ? 'action' : null, task.device ? `from ${task.device}` : null,
    task.exitCode !== undefined && task.exitCode !== null ? `exit ${task.exitCode}` : null, task.reason ?? null,
    task.truncated ? 'output truncated' : null].filter(Boolean).join(' · ');
  const opened = task.task === state.opened;
  return element('li', { class: opened ? 'task opened' : 'task', 'data-task': task.task, 'data-status': task.status, tabindex: opened ? '-1' : null },
    element('header', {}, element('span', { class: 'request' }, taskSummary(task.request)),
      element('span', { class: `status ${task.status}` },
        task.status === 'sending' && host.revoked ? 'not sent' : statusText[task.status] ?? task.status)),
    meta ? element('div', { class: 'meta' }, meta) : null,
    task.output ? element('pre', { class: 'output', 'aria-label': 'Output' }, task.output) : null,
    ...Object.values(task.approvals ?? {}).map(approval => renderApproval(host, task, approval)),
    open && task.status !== 'sending' && !host.revoked
      ? element('button', { type: 'button', class: 'secondary', onclick: () => companion.cancel(host.id, task.task).catch(problem) }, 'Cancel') : null);
}

/** An agent's request to use a tool: Allow / Deny while it waits, then how it ended. */
function renderApproval(host, task, approval) {
  const what = approval.summary ? `${approval.tool}: ${approval.summary}` : approval.tool;
  const waiting = approval.status === 'pending' && approval.expiresAt > Date.now() / 1000;
  if (!waiting) {
    const outcome = approval.status === 'allowed' ? 'Allowed' : approval.status === 'denied' ? 'Denied' : 'Not answered in time';
    const detail = [approval.by ? `by ${approval.by}` : null, approval.status === 'denied' && !approval.by ? approval.reason : null].filter(Boolean).join(' ');
    return element('div', { class: 'approval settled', 'data-approval': approval.id },
      element('p', {}, `${outcome}${detail ? ` ${detail}` : ''}: ${what}`));
  }
  const answer = allow => async () => {
    problem(null);
    try { await companion.answerApproval(host.id, task.task, approval.id, allow, allow ? null : reason.value.trim() || null); } catch (error) { problem(error); }
  };
  const reason = element('input', { 'aria-label': 'Why not (optional, for the agent)', placeholder: 'why not (optional)', autocomplete: 'off' });
  const answered = approval.answered ? `Sent: ${approval.answered === 'allow' ? 'allow' : 'deny'}. Waiting for ${host.name}…` : null;
  return element('div', { class: 'approval', 'data-approval': approval.id, role: 'group', 'aria-label': 'The agent asks' },
    element('p', {}, element('strong', {}, `The agent asks to use ${what}`)),
    approval.input && approval.input !== '{}' ? element('details', {}, element('summary', {}, 'Its input'), element('pre', {}, approval.input)) : null,
    approval.inputBytes > new TextEncoder().encode(approval.input).length
      ? element('p', { class: 'refusal' }, `Only the first part of its input is shown (${approval.inputBytes} bytes in all): look at it on the computer before you allow it.`) : null,
    approval.refusal ? element('p', { class: 'refusal' }, `Your answer did not count: ${approval.refusal}`) : null,
    answered ? element('p', { class: 'meta' }, answered) : null,
    host.revoked ? null : element('div', { class: 'answers' },
      element('button', { type: 'button', class: 'allow', onclick: answer(true) }, 'Allow'),
      element('button', { type: 'button', class: 'secondary deny', onclick: answer(false) }, 'Deny'), reason));
}

function renderActions(host) {
  const list = $('actions');
  list.replaceChildren();
  if (!host.actions) { list.append(element('li', {}, 'Asking the computer for its actions…')); return; }
  if (host.actions.length === 0) { list.append(element('li', {}, 'This computer has no actions. Add executables to its actions folder.')); return; }
  for (const action of host.actions) {
    const input = element('input', { 'aria-label': `Arguments for ${action.name}`, placeholder: 'arguments', autocomplete: 'off', autocapitalize: 'off' });
    const form = element('form', {
      onsubmit: async event => {
        event.preventDefault(); problem(null);
        try { await companion.runAction(host.id, action.name, splitArguments(input.value)); input.value = ''; } catch (error) { problem(error); }
      },
    }, input, element('button', { type: 'submit', 'aria-label': `Run ${action.name}` }, 'Run'));
    list.append(element('li', { class: 'action' }, element('strong', {}, action.name),
      action.description ? element('p', { class: 'description' }, action.description) : null, form));
  }
}

async function renderConversation(hosts) {
  const host = hosts.find(h => h.id === state.selected) ?? hosts[0];
  state.selected = host.id;
  const tabs = $('host-tabs');
  tabs.replaceChildren(...(hosts.length > 1 ? hosts.map(h => element('button', {
    type: 'button', 'aria-current': String(h.id === host.id), onclick: () => { state.selected = h.id; render(); },
  }, h.name)) : []));
  $('revoked').hidden = !host.revoked;
  $('revoked-name').textContent = host.name;
  $('message').disabled = host.revoked; $('send-button').disabled = host.revoked;
  const pending = await companion.pendingCount(host.id);
  const connection = companion.connectionState(host.id);
  $('outbox').textContent = host.revoked ? '' : pending === 0 ? '' : connection === 'online'
    ? `sending ${pending} message${pending === 1 ? '' : 's'}…`
    : `offline: ${pending} message${pending === 1 ? '' : 's'} waiting; ${pending === 1 ? 'it goes' : 'they go'} when the relay is reachable again`;
  $('connection').textContent = host.revoked ? 'revoked' : { online: `connected to ${host.name}`, offline: 'offline', connecting: 'connecting…' }[connection];
  const tasks = await companion.tasks(host.id);
  const list = $('tasks');
  const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  list.replaceChildren(...(tasks.length ? tasks.flatMap(t => t.request?.newConversation
    ? [element('li', { class: 'divider', role: 'separator' }, 'New conversation'), renderTask(host, t)] : [renderTask(host, t)])
    : [element('li', { class: 'empty' }, `Paired with ${host.name}. Send a message, or run one of its actions.`)]));
  renderActions(host);
  $('host-details').textContent = `${host.name}, paired ${new Date(host.pairedAt * 1000).toLocaleString()} as “${host.deviceName}”, through ${host.relayURL}.`;
  await renderNotifications(hosts);
  if (atBottom && !state.opening) window.scrollTo(0, document.body.scrollHeight);
}

// MARK: Notifications

async function renderNotifications(hosts) {
  const supported = pushSupported();
  const notifications = await companion.notifications();
  const declined = await companion.notificationsDeclined();
  const blocked = supported && Notification.permission === 'denied';
  $('notify-offer').hidden = !supported || !!notifications || declined || blocked || !hosts.some(h => !h.revoked);
  const registered = hosts.filter(h => h.doorbell).map(h => h.name);
  $('notify-status').textContent = !supported ? 'Notifications: this browser cannot show them for a web app.'
    : blocked ? "Notifications: blocked for this site in the browser's settings."
    : notifications ? `Notifications: on${registered.length ? ` for ${registered.join(', ')}` : ''}.` : 'Notifications: off.';
  $('notify-on').hidden = !supported || blocked || !!notifications || !$('notify-offer').hidden;
  $('notify-off').hidden = !notifications;
}

async function enableNotifications() {
  problem(null);
  $('notify-status').textContent = 'Notifications: turning on…';
  try {
    const { skipped } = await turnOn(companion);
    if (skipped.length) {
      problem(new CompanionError(`notifications are on, but not for ${skipped.map(s => `${s.hostName} (${s.reason})`).join(', ')}`,
        "ask that relay's operator to turn push on, or use 'errand notify' with ntfy on a computer"));
    }
  } catch (error) { problem(error); }
  await render();
}

/** Shows the task a tapped notification named, once its conversation is on screen. */
function openTask() {
  const item = document.querySelector('#tasks li.opened');
  state.opening = false;
  if (!item) return;
  item.scrollIntoView({ block: 'center' });
  item.focus({ preventScroll: true });
}

function openFromNotification(host, task) {
  if (typeof host !== 'string' || typeof task !== 'string') return;
  if (!companion || state.pairing) { openedFor = { host, task }; return; }
  state.selected = host;
  state.opened = task;   // outlined until another notification opens another task
  state.opening = true;  // scrolled to once
  state.offer = null;
  render();
}

let rendering = null, again = false;
async function render() {
  if (rendering) { again = true; return rendering; }
  rendering = (async () => {
    do {
      again = false;
      if (state.offer) { if ($('pair-view').hidden) show('pair-view'); continue; }
      const hosts = await companion.hosts();
      if (hosts.length === 0) { show('welcome-view'); $('connection').textContent = ''; continue; }
      await renderConversation(hosts);
      show('conversation-view');
      if (state.opening) openTask();
    } while (again);
  })();
  try { await rendering; } finally { rendering = null; }
}

async function send(event) {
  event.preventDefault();
  const text = $('message').value;
  if (!text.trim()) return;
  problem(null);
  try {
    await companion.sendText(state.selected, text, { newConversation: $('new-conversation').checked });
    $('message').value = ''; $('new-conversation').checked = false; await render();
    window.scrollTo(0, document.body.scrollHeight);  // the message just sent, above the composer
  } catch (error) { problem(error); }
}

// MARK: Start

async function start() {
  await loadSodium();
  companion = new Companion(() => render());
  $('pair-form').addEventListener('submit', pair);
  $('message-form').addEventListener('submit', send);
  $('message').addEventListener('keydown', event => { if (event.key === 'Enter' && (event.metaKey || event.ctrlKey)) send(event); });
  $('paste-form').addEventListener('submit', event => { event.preventDefault(); const code = $('paste-code').value; $('paste-code').value = ''; showOffer(code); });
  $('problem-dismiss').addEventListener('click', () => problem(null));
  $('pair-another').addEventListener('click', () => { state.offer = null; show('welcome-view'); });
  $('unpair').addEventListener('click', async () => {
    const host = (await companion.hosts()).find(h => h.id === state.selected);
    if (host && confirm(`Unpair ${host.name} and forget its keys and conversation on this device?`)) { await companion.unpair(host.id); await render(); }
  });
  $('forget-all').addEventListener('click', async () => {
    if (confirm('Forget every paired computer, their keys and conversations on this device? Pair again to use Errand here.')) {
      if (await companion.notifications()) await turnOff(companion).catch(error => console.warn(`errand: notifications not turned off (${error.message})`));
      await companion.forgetEverything(); state.offer = null; await render();
    }
  });
  $('forget-revoked').addEventListener('click', async () => { await companion.unpair(state.selected); await render(); });
  $('notify-offer-on').addEventListener('click', enableNotifications);
  $('notify-on').addEventListener('click', enableNotifications);
  $('notify-offer-later').addEventListener('click', async () => { await companion.declineNotifications(); await render(); });
  $('notify-off').addEventListener('click', async () => {
    problem(null);
    try {
      const failed = await turnOff(companion);
      if (failed.length) {
        problem(new CompanionError(`the relay of ${failed.map(f => f.hostName).join(', ')} could not be told to stop ringing (${failed[0].reason})`,
          'this device may still be woken from there; it then shows a notification without content and unsubscribes'));
      }
    } catch (error) { problem(error); }
    await render();
  });
  window.addEventListener('online', () => companion.reconnectNow());
  window.addEventListener('hashchange', () => takeOfferFromLocation());

  if (openedFor) openFromNotification(openedFor.host, openedFor.task);
  for (const host of await companion.hosts()) companion.connect(host.id);
  companion.pruneSeen().catch(error => console.warn('errand: could not prune received ids', error));
  if (!takeOfferFromLocation()) await render();
}

/** The task a tapped notification opened the app for (`?host=…&task=…`), read and removed at once. */
let openedFor = null;
function readTaskLink() {
  const query = new URLSearchParams(location.search);
  if (!query.has('task')) return null;
  history.replaceState(null, '', location.pathname + location.hash);
  return { host: query.get('host'), task: query.get('task') };
}

/** The offer of the link the page was opened with, read before anything else and removed from the
 * address bar and history at once (it holds the pairing secret). */
let openedWith = null;
function readFragment() {
  const fragment = location.hash.slice(1);
  if (!fragment) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return location.href.split('#')[0] + '#' + fragment;
}

/** Shows the offer the page was opened with (or that a later hash change brought). */
function takeOfferFromLocation() {
  const link = openedWith ?? readFragment();
  openedWith = null;
  if (!link) return false;
  showOffer(link);
  return true;
}

async function main() {
  openedFor = readTaskLink();
  openedWith = readFragment();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js', { type: 'module' }).catch(error => console.warn('errand: no offline copy and no notifications', error));
  }
  let started = null, holding = false;
  // The service worker asks the page that holds the keys to catch up when a push arrives.
  answerServiceWorker(() => (holding ? started : null), openFromNotification);
  const run = () => {
    started = start().then(() => companion);
    started.catch(error => { started = null; show('welcome-view'); problem(error); });
  };
  if (!navigator.locks) { run(); return; }
  // One holder of the keys at a time (two advancing one session would break it): another tab,
  // or the service worker reading the mailboxes for a notification (briefly). This tab takes
  // over once the holder lets go. It lets go itself when it is put away (the back-forward cache,
  // a frozen background tab), its connections closed, so the service worker can catch up
  // meanwhile; the state is fenced (store.claim), so nothing it had in flight can commit after,
  // and it reloads when it comes back rather than act on what it showed before.
  let release = null;
  const notice = setTimeout(() => show('lock-view'), 2000);
  navigator.locks.request('errand-companion', async () => {
    clearTimeout(notice);
    show('loading-view');
    await claim();
    holding = true;
    run();
    return new Promise(resolve => { release = resolve; });
  });
  const letGo = () => { holding = false; companion?.pause(); release?.(); release = null; };
  window.addEventListener('pagehide', letGo);
  document.addEventListener('freeze', letGo);
  window.addEventListener('pageshow', event => { if (event.persisted) location.reload(); });
  document.addEventListener('resume', () => { if (!holding) location.reload(); });
}

main();
