// The web companion's handling of what a host (or a hostile one) sends, in the browser against
// real IndexedDB: wrong types are dropped, a final status is never undone, a sync restarts
// before the first open task, nothing a host sends makes applying a message throw, and a
// catch-up notices exactly the tasks that finished.
// window.companionChecks is a promise of {"passed": n, "failed": [{name, detail}]}.
import { loadSodium } from '../js/primitives.js';
import { pad, unpad } from '../js/padding.js';
import { Companion, noticeText } from '../js/companion.js';
import * as store from '../js/store.js';
import * as primitives from '../js/primitives.js';
import { concat, utf8 } from '../js/bytes.js';
import { newEnvelope } from '../js/envelope.js';
import { newPairingKeys, verifyReceipt } from '../js/pairing.js';

const results = { passed: 0, failed: [] };
async function check(name, body) {
  try {
    const outcome = await body();
    if (outcome === true) results.passed++; else results.failed.push({ name, detail: String(outcome) });
  } catch (error) { results.failed.push({ name, detail: `threw ${error.stack ?? error.message}` }); }
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b) || `${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`;

async function run() {
  await loadSodium();
  await store.forgetEverything();
  const companion = new Companion();
  const host = { id: 'host-a', name: 'studio', historyPosition: 0, actions: null };
  await store.commit([['put', 'hosts', host]]);
  const apply = async message => store.commit(await companion.apply(await store.read(['hosts'], ({ get }) => get('hosts', 'host-a')), message));
  const task = id => store.read(['tasks'], ({ get }) => get('tasks', id));

  await check('history entries with wrong types are cleaned, never stored as they came', async () => {
    await apply({ type: 'history', entries: [
      { task: 't1', status: 'running', position: 5, request: { executor: 'action', action: 'x', arguments: { length: 2 } },
        exitCode: { toString: 0 }, output: 7, device: ['x'], createdAt: 'yesterday' },
      { task: 't2', status: 'bogus', position: 6 },
      'not an entry', null,
    ] });
    const t1 = await task('t1');
    return same([t1.request.arguments, t1.exitCode, t1.output, t1.device, typeof t1.createdAt, await task('t2')],
      [undefined, undefined, '', null, 'number', undefined]);
  });

  await check('a sync starts just before the first task still open', async () => {
    await apply({ type: 'history', entries: [{ task: 't3', status: 'succeeded', position: 9, request: { executor: 'agent', text: 'hi' } }] });
    const first = await companion.syncStart('host-a');
    await apply({ type: 'event', event: { task: 't1', status: 'succeeded', exitCode: 0 } });
    return same([first, await companion.syncStart('host-a')], [4, 9]);
  });

  await check('a final status is never replaced by a late earlier one, from an event or a history', async () => {
    await apply({ type: 'event', event: { task: 't1', status: 'running', output: 'late', offset: 0, exitCode: 3 } });
    await apply({ type: 'history', entries: [{ task: 't1', status: 'running', position: 5, output: 'older snapshot' }] });
    const t1 = await task('t1');
    return same([t1.status, t1.exitCode], ['succeeded', 0]);
  });

  await check('events with wrong types or unknown statuses change nothing', async () => {
    await apply({ type: 'event', event: { task: 't4', status: 'running', output: 'one ', offset: 0 } });
    await apply({ type: 'event', event: { task: 't4', status: 'exploded', output: 'two' } });
    await apply({ type: 'event', event: { task: 't4', status: 'running', output: { evil: true }, reason: 5, truncated: 'yes' } });
    await apply({ type: 'event', event: 'nothing' });
    const t4 = await task('t4');
    return same([t4.output, t4.reason, t4.truncated], ['one ', undefined, undefined]);
  });

  await check('actions keep only named entries and text descriptions', async () => {
    await apply({ type: 'actions', actions: [{ name: 'a', description: 'ok' }, { name: 3 }, null, { name: 'b', description: { x: 1 } }] });
    return same((await store.read(['hosts'], ({ get }) => get('hosts', 'host-a'))).actions, [{ name: 'a', description: 'ok' }, { name: 'b', description: '' }]);
  });

  await check('an empty padded message is refused, not thrown on', async () => same(unpad(new Uint8Array(0)), null));

  await check('old received ids are forgotten, recent ones kept', async () => {
    const now = Date.now();
    await store.commit([['put', 'seen', now - 9 * 86400 * 1000, 'host-a/old'], ['put', 'seen', now, 'host-a/new']]);
    await companion.pruneSeen(now);
    const keys = await store.read(['seen'], ({ entries }) => entries('seen'));
    return same(keys.map(([key]) => key), ['host-a/new']);
  });

  await check('while catching up, a task turning final is noticed once; progress, finals again and history are not', async () => {
    companion.notices = [];
    await apply({ type: 'event', event: { task: 't5', status: 'running', output: 'step 1\n', offset: 0 } });
    await store.commit([['put', 'tasks', { ...(await task('t5')), request: { task: 't5', executor: 'agent', text: 'organize   notes' } }]]);
    await apply({ type: 'event', event: { task: 't5', status: 'succeeded', output: 'all tidy\n\n', offset: 7, exitCode: 0 } });
    await apply({ type: 'event', event: { task: 't5', status: 'failed' } });
    await apply({ type: 'history', entries: [{ task: 't6', status: 'failed', position: 12 }] });
    const noticed = companion.notices;
    companion.notices = null;
    await apply({ type: 'event', event: { task: 't7', status: 'succeeded' } });
    return same([noticed.map(n => [n.task, n.status, n.summary, n.lastLine, n.hostName]), noticeText(noticed[0])],
      [[['t5', 'succeeded', 'organize   notes', 'all tidy', 'studio']], { title: 'studio: organize notes — succeeded', body: 'all tidy' }]);
  });

  await check('notification text is shortened and names a status in words', async () => {
    const long = noticeText({ hostName: 'studio', summary: 'x'.repeat(100), status: 'timedOut', lastLine: 'y'.repeat(200) });
    const empty = noticeText({ hostName: 'studio', summary: '  ', status: 'refused' });
    return same([long.title.length, long.title.endsWith('… — timed out'), long.body.length, empty],
      ['studio: '.length + 60 + ' — timed out'.length, true, 120, { title: 'studio: a task — refused', body: '' }]);
  });

  await check('an approval request is kept with its task and noticed once; a refusal and its resolution settle it; malformed fields are cleaned, an unknown outcome ignored', async () => {
    companion.notices = [];
    const request = { id: 'ap-1', task: 't8', tool: 'Bash', summary: 'git status', input: '{"command":"git status"}', expiresAt: 4102444800 };
    await apply({ type: 'approval', approval: request });
    await apply({ type: 'approval', approval: request });  // a repeat
    await apply({ type: 'approval', approval: { id: 'ap-2', task: 't8', tool: { evil: 1 }, expiresAt: 'soon' } });
    await apply({ type: 'approval', approval: 'nothing' });
    const noticed = companion.notices;
    companion.notices = null;
    const pending = (await task('t8')).approvals;
    await apply({ type: 'approvalRefused', approval: 'ap-1', reason: 'this device may not answer approval requests' });
    const refused = (await task('t8')).approvals['ap-1'].refusal;
    await apply({ type: 'approvalResolved', resolution: { approval: 'ap-1', task: 't8', outcome: 'allowed', by: 'tablet' } });
    await apply({ type: 'approvalResolved', resolution: { approval: 'ap-2', task: 't8', outcome: 'maybe' } });
    const settled = (await task('t8')).approvals;
    return same([noticed.map(n => [n.kind, n.id, n.task, n.tool, n.about]), noticeText(noticed[0]).title, pending['ap-1'].status,
      pending['ap-2'].tool, pending['ap-2'].expiresAt, refused, settled['ap-1'].status, settled['ap-1'].by, settled['ap-2'].status],
    [[['approval', 'ap-1', 't8', 'Bash', 'git status'], ['approval', 'ap-2', 't8', 'a tool', '']], 'studio needs an answer', 'pending',
      'a tool', 0, 'this device may not answer approval requests', 'allowed', 'tablet', 'pending']);
  });

  await check('answering an approval keeps the output the host streams meanwhile', async () => {
    await apply({ type: 'approval', approval: { id: 'ap-9', task: 't9', tool: 'Bash', summary: 'touch x', input: '{}', expiresAt: 4102444800 } });
    const host = await store.read(['hosts'], ({ get }) => get('hosts', 'host-a'));
    // The host's output is being applied (in the queue) while the answer is sent.
    const streaming = companion.serial(async () => {
      await new Promise(resolve => setTimeout(resolve, 50));
      await store.commit(await companion.apply(host, { type: 'event', event: { task: 't9', status: 'running', output: 'denied: not today\n', offset: 0 } }));
    });
    const send = companion.send;
    companion.send = async () => {};
    try { await companion.answerApproval('host-a', 't9', 'ap-9', false, 'not today'); } finally { companion.send = send; }
    await streaming;
    const kept = await task('t9');
    return same([kept.output, kept.approvals['ap-9'].answered], ['denied: not today\n', 'deny']);
  });

  await check('once claimed, a write commits only while no other context has claimed the state since', async () => {
    await store.claim();
    await store.commit([['put', 'tasks', { task: 'fenced-1', host: 'host-a', status: 'queued' }]]);
    // Another context (a tab, the service worker) claims it: this one's next write is refused whole.
    const db = await store.openDatabase();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(['settings'], 'readwrite');
      tx.objectStore('settings').put('someone-else', 'holder');
      tx.oncomplete = resolve; tx.onerror = () => reject(tx.error);
    });
    let refused = null;
    try { await store.commit([['put', 'tasks', { task: 'fenced-2', host: 'host-a', status: 'queued' }], ['delete', 'tasks', 'fenced-1']]); }
    catch (error) { refused = error; }
    const left = [await task('fenced-1'), await task('fenced-2')].map(t => t?.task ?? null);
    await store.claim();
    await store.commit([['delete', 'tasks', 'fenced-1']]);
    return same([refused instanceof store.HolderError, left], [true, ['fenced-1', null]]);
  });

  await check("the SAS waits for a receipt for this request's own keys, signed by the host in the code", async () => {
    const hostIdentity = await primitives.newSigningIdentity();
    const offer = { hostSigningKey: hostIdentity.publicKey };
    const receipt = async (signer, keys) => {
      const binding = await primitives.sha256(concat(keys.signing.publicKey, keys.agreement.publicKey, keys.ephemeral.publicKey));
      const signature = await primitives.sign(signer, concat(utf8('errand pairing receipt v1'), binding));
      return newEnvelope(primitives.sealBox(pad(concat(Uint8Array.of(1), signature)), keys.ephemeral.publicKey)).bytes;
    };
    const refused = async promise => { try { await promise; return false; } catch (error) { return error.message.includes('received another request'); } };
    const mine = await newPairingKeys(primitives), other = await newPairingKeys(primitives);
    await verifyReceipt(offer, mine, await receipt(hostIdentity, mine));
    const swapped = await refused(verifyReceipt(offer, mine, await receipt(hostIdentity, other)));
    const mixed = await refused(verifyReceipt(offer, mine, await receipt(hostIdentity, { ...other, ephemeral: mine.ephemeral })));
    const impostor = await refused(verifyReceipt(offer, mine, await receipt(await primitives.newSigningIdentity(), mine)));
    return same({ swapped, mixed, impostor }, { swapped: true, mixed: true, impostor: true });
  });

  await check('unpairing forgets the host, its tasks and its received ids', async () => {
    await companion.unpair('host-a');
    const left = await store.read(['hosts', 'tasks', 'seen'], ({ all }) => Promise.all([all('hosts'), all('tasks'), all('seen')]));
    return same(left.map(list => list.length), [0, 0, 0]);
  });
  await store.forgetEverything();
}

window.companionChecks = run().catch(error => results.failed.push({ name: 'run', detail: error.stack })).then(() => {
  document.getElementById('result').textContent = JSON.stringify(results);
  document.title = results.failed.length ? 'failed' : 'passed';
  return results;
});
