// The app's service worker (a module). It keeps the app's own files so the app opens offline
// (network first, so an update applies at once when online; the cached copy when the network
// fails), and it answers doorbells: a push carries nothing, so it fetches and decrypts what waits
// in the mailboxes (through the open page when one holds the keys, else itself, under the same
// lock) and writes the notification from what it read.
import { loadSodium } from './js/primitives.js';
import { Companion, noticeText } from './js/companion.js';
import { claim, read } from './js/store.js';

const cacheName = 'errand-app-v3';
const files = ['./', 'index.html', 'app.css', 'manifest.webmanifest', 'icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png',
  'js/app.js', 'js/bytes.js', 'js/companion.js', 'js/envelope.js', 'js/notify.js', 'js/offer.js', 'js/padding.js', 'js/pairing.js',
  'js/primitives.js', 'js/ratchet.js', 'js/relay.js', 'js/sodium.js', 'js/store.js', 'vendor/sodium.mjs', 'vendor/sodium.wasm'];

self.addEventListener('install', event => {
  event.waitUntil(caches.open(cacheName).then(cache => cache.addAll(files)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', event => {
  event.waitUntil(caches.keys()
    .then(names => Promise.all(names.filter(n => n !== cacheName).map(n => caches.delete(n))))
    .then(() => self.clients.claim()));
});

// Only the app's own files, by exact path: never an API answer, even when the app is served
// from the same origin as the relay's API.
const appPaths = new Set(files.map(file => new URL(file, self.registration.scope).pathname));

self.addEventListener('fetch', event => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || !appPaths.has(url.pathname)) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(event.request);
      if (response.ok) {
        const copy = response.clone();
        caches.open(cacheName).then(cache => cache.put(event.request, copy));
      }
      return response;
    } catch (error) {
      const cached = await caches.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      throw error;
    }
  })());
});

// MARK: Doorbells

/** The lock the page holds while it runs: one holder of the keys and sessions at a time. */
const lockName = 'errand-companion';
const pageAnswerMilliseconds = 10000;
/** How long a doorbell may take before it shows what it has: a plain notification. */
const ringMilliseconds = 25000;
const icon = 'icons/icon-192.png';

/**
 * Runs `work` ('catchUp' or 'resubscribe') where the keys are: in the open page that holds them
 * (asked only when the lock is held), else here under that lock. Resolves to the work's result, or throws when it could not run.
 */
async function withCompanion(work, extra = {}) {
  const held = (await navigator.locks.query()).held.some(lock => lock.name === lockName);
  const windows = held ? await self.clients.matchAll({ type: 'window' }) : [];
  const answer = await new Promise(resolve => {
    let left = windows.length;
    if (left === 0) resolve(null);
    for (const client of windows) {
      const channel = new MessageChannel();
      const timer = setTimeout(() => done(null), pageAnswerMilliseconds);
      const done = reply => {
        clearTimeout(timer);
        channel.port1.close();
        if (reply?.running) resolve(reply); else if (--left === 0) resolve(null);
      };
      channel.port1.onmessage = event => done(event.data);
      client.postMessage({ type: 'errand-work', work, ...extra }, [channel.port2]);
    }
  });
  if (answer) {
    if (answer.error) throw new Error(answer.error);
    return answer.result;
  }
  return navigator.locks.request(lockName, { ifAvailable: true }, async lock => {
    if (!lock) throw new Error('another tab holds the keys and did not answer');
    await claim();
    await loadSodium();
    const companion = new Companion();
    if (work === 'catchUp') return companion.catchUp();
    await companion.resubscribe(extra.subscription);
    return null;
  });
}

async function notify(title, options) {
  await self.registration.showNotification(title, { icon, badge: icon, ...options });
}

/** What a doorbell shows: each task that finished, or that nothing new was found. */
async function ring() {
  // Notifications turned off (or everything forgotten) while a relay still rings: say nothing
  // of any task, and drop the subscription so it stops.
  const notifications = await read(['settings'], ({ get }) => get('settings', 'notifications')).catch(() => null);
  if (!notifications) {
    await notify('Errand', { body: 'Notifications are off for this device.', tag: 'errand-off', silent: true });
    const subscription = await self.registration.pushManager.getSubscription().catch(() => null);
    await subscription?.unsubscribe().catch(() => {});
    return;
  }
  let result;
  try {
    let timer;
    const deadline = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('it took too long')), ringMilliseconds); });
    result = await Promise.race([withCompanion('catchUp'), deadline]).finally(() => clearTimeout(timer));
  } catch (error) {
    console.warn(`errand: a doorbell rang, but the mailboxes could not be read (${error.message})`);
    result = null;
  }
  // Every push must show a notification (the browser requires it); without content, a plain one.
  if (!result || (result.notices.length === 0 && result.failures.length > 0)) {
    await notify('Errand', { body: 'Something is ready. Open Errand to read it.', tag: 'errand-doorbell' });
    return;
  }
  if (result.notices.length === 0) {
    await notify('Errand', { body: 'Nothing new: this device is up to date.', tag: 'errand-nothing-new', silent: true });
    return;
  }
  // Requests an agent waits on come first, and stay until they are seen.
  const ordered = [...result.notices.filter(n => n.kind === 'approval'), ...result.notices.filter(n => n.kind !== 'approval')];
  const shown = ordered.slice(0, 4);
  for (const notice of shown) {
    const { title, body } = noticeText(notice);
    const approval = notice.kind === 'approval';
    await notify(title, { body, tag: approval ? `errand-approval-${notice.id}` : `errand-task-${notice.task}`,
      requireInteraction: approval, data: { host: notice.host, task: notice.task } });
  }
  if (result.notices.length > shown.length) {
    const more = result.notices.length - shown.length;
    await notify('Errand', { body: `${more} more thing${more === 1 ? '' : 's'} to see.`, tag: 'errand-more' });
  }
}

self.addEventListener('push', event => { event.waitUntil(ring()); });

// Tapping a notification opens its task: in the open app if there is one, else in a new window.
self.addEventListener('notificationclick', event => {
  event.notification.close();
  const { host, task } = event.notification.data ?? {};
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const scope = new URL(self.registration.scope);
    const open = windows.find(client => new URL(client.url).pathname.startsWith(scope.pathname));
    if (open) {
      await open.focus();
      if (host && task) open.postMessage({ type: 'errand-open', host, task });
      return;
    }
    const url = new URL(scope);
    if (host && task) { url.searchParams.set('host', host); url.searchParams.set('task', task); }
    await self.clients.openWindow(url.href);
  })());
});

// The push service replaced the subscription: register the new one as the doorbell.
self.addEventListener('pushsubscriptionchange', event => {
  event.waitUntil((async () => {
    const subscription = event.newSubscription ?? (event.oldSubscription
      ? await self.registration.pushManager.subscribe(event.oldSubscription.options) : null);
    if (subscription) await withCompanion('resubscribe', { subscription: subscription.toJSON() });
  })().catch(error => console.warn(`errand: the renewed push subscription is not registered (${error.message})`)));
});
