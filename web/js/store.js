// The companion's state in IndexedDB (docs/protocol.md "Peer state", web companion). Long-term
// private keys are non-extractable WebCrypto keys stored as they are; ratchet states, send tokens
// and raw keys (a browser without WebCrypto curves) are encrypted at rest with AES-GCM under a
// non-extractable key that never leaves the browser. Every processed envelope is committed with
// its new session state in one transaction.

const databaseName = 'errand';
const stores = ['settings', 'hosts', 'sessions', 'outbox', 'seen', 'tasks'];
let opened;

function promised(request) {
  return new Promise((resolve, reject) => { request.onsuccess = () => resolve(request.result); request.onerror = () => reject(request.error); });
}

/** Opens (and creates) the database. */
export function openDatabase() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(databaseName, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore('settings');
      db.createObjectStore('hosts', { keyPath: 'id' });
      db.createObjectStore('sessions');
      db.createObjectStore('outbox', { keyPath: 'n', autoIncrement: true }).createIndex('host', 'host');
      db.createObjectStore('seen');
      db.createObjectStore('tasks', { keyPath: 'task' }).createIndex('host', 'host');
    };
    request.onsuccess = () => {
      const db = request.result;
      // Another holder (the page, the service worker) deleting or upgrading the database: let go,
      // and open it again on the next use.
      db.onversionchange = () => { db.close(); opened = undefined; wrapKey = undefined; };
      resolve(db);
    };
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error('the Errand database is held open by an older version of this page: close its other tabs'));
  });
  return opened;
}

/** Reads in one read-only transaction: `read(tx)` returns promises of requests. */
export async function read(names, reader) {
  const db = await openDatabase();
  const tx = db.transaction(names, 'readonly');
  const get = (store, key) => promised(tx.objectStore(store).get(key));
  const all = (store, index, key) => promised(index ? tx.objectStore(store).index(index).getAll(key) : tx.objectStore(store).getAll());
  // [key, value] pairs of a whole store (keys and values come in the same key order).
  const entries = store => Promise.all([promised(tx.objectStore(store).getAllKeys()), promised(tx.objectStore(store).getAll())])
    .then(([keys, values]) => keys.map((key, i) => [key, values[i]]));
  return reader({ get, all, entries });
}

/**
 * Writes atomically: `ops` is a list of ['put', store, value, key?] and ['delete', store, key];
 * resolves when the transaction has committed (all or nothing).
 */
export async function commit(ops) {
  const db = await openDatabase();
  const names = [...new Set(ops.map(op => op[1]))];
  if (names.length === 0) return;
  const fenced = holder !== null;
  const tx = db.transaction(fenced ? [...new Set([...names, 'settings'])] : names, 'readwrite', { durability: 'strict' });
  const results = [];
  let overtaken = false;
  const write = () => {
    for (const [kind, store, a, b] of ops) {
      const os = tx.objectStore(store);
      results.push(kind === 'put' ? (b === undefined ? os.put(a) : os.put(a, b)) : os.delete(a));
    }
  };
  if (fenced) {
    // Only the current holder of the state writes: a page that lost the lock (frozen, cached,
    // or overtaken by the service worker) must not commit a ratchet state read before.
    const current = tx.objectStore('settings').get('holder');
    current.onsuccess = () => {
      if (current.result === holder) write(); else { overtaken = true; tx.abort(); }
    };
  } else write();
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(overtaken ? new HolderError() : tx.error ?? new Error('the database transaction was aborted'));
  });
  return results.map(r => r.result);
}

/** Another holder (a tab, the service worker) took over this device's state since this one claimed it. */
export class HolderError extends Error {
  constructor() {
    super('another tab or the notification worker took over this device\'s keys meanwhile; nothing was changed');
    this.hint = 'reload the page';
  }
}

/** This context's claim on the state, or null (not claimed: writes are not fenced). */
let holder = null;

/**
 * Claims the state for this context, once it holds the Web Lock `errand-companion`: from now on
 * a write commits only while no other context has claimed it since.
 */
export async function claim() {
  const mine = crypto.randomUUID();
  holder = null;
  await commit([['put', 'settings', mine, 'holder']]);
  holder = mine;
}

/** Deletes everything this companion stored (unpair and forget). */
export async function forgetEverything() {
  const db = await openDatabase();
  db.close();
  opened = undefined;
  wrapKey = undefined;
  await new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(databaseName);
    request.onsuccess = resolve; request.onerror = () => reject(request.error); request.onblocked = resolve;
  });
  // Still the holder: claim the new, empty state (pairing again writes to it).
  if (holder !== null) await claim();
}

// Encryption at rest.
let wrapKey;
async function atRestKey() {
  if (wrapKey) return wrapKey;
  const stored = await read(['settings'], ({ get }) => get('settings', 'wrapKey'));
  if (stored) return (wrapKey = stored);
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  // Two tabs starting at once: keep whichever was stored first.
  const db = await openDatabase();
  const tx = db.transaction(['settings'], 'readwrite');
  const os = tx.objectStore('settings');
  const existing = await promised(os.get('wrapKey'));
  if (!existing) os.put(key, 'wrapKey');
  await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
  return (wrapKey = existing ?? key);
}

/** AES-256-GCM under the at-rest key: {iv, data}. `label` is bound as associated data. */
export async function sealAtRest(bytes, label) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(label) }, await atRestKey(), bytes));
  return { iv, data };
}

export async function openAtRest(sealed, label) {
  return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv, additionalData: new TextEncoder().encode(label) }, await atRestKey(), sealed.data));
}

/** Keeps an identity from primitives.js storable: CryptoKeys as they are, raw secrets sealed. */
export async function storableIdentity(identity, label) {
  if (identity.kind === 'webcrypto') return identity;
  const secret = identity.seed ?? identity.secret;
  return { kind: 'raw', field: identity.seed ? 'seed' : 'secret', publicKey: identity.publicKey, sealed: await sealAtRest(secret, label) };
}

export async function loadIdentity(stored, label) {
  if (stored.kind === 'webcrypto') return stored;
  return { kind: 'raw', publicKey: stored.publicKey, [stored.field]: await openAtRest(stored.sealed, label) };
}
