// Keeps the app's own files so it opens offline. Network first (an update applies at once when
// online), the cached copy when the network fails.
const cacheName = 'errand-app-v2';
const files = ['./', 'index.html', 'app.css', 'manifest.webmanifest', 'icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png',
  'js/app.js', 'js/bytes.js', 'js/companion.js', 'js/envelope.js', 'js/offer.js', 'js/padding.js', 'js/pairing.js',
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
