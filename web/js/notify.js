// The page's side of notifications: permission asked from a tap, a push subscription made with
// the relay's key and registered as this device's doorbell, and answers to the service worker,
// which asks the page that holds the keys to catch up when a push arrives (docs/protocol.md
// "Doorbells"; the worker itself catches up when no page is open).
import { CompanionError } from './companion.js';
import { base64url, fromBase64url } from './bytes.js';

/** Whether this browser can show notifications from pushes to this app. */
export function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

function withTimeout(promise, milliseconds, error) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => { timer = setTimeout(() => reject(error), milliseconds); })])
    .finally(() => clearTimeout(timer));
}

function subscriptionKey(subscription) {
  const key = subscription.options?.applicationServerKey;
  return key ? base64url(new Uint8Array(key)) : null;
}

const noPushService = () => new CompanionError("the browser's push service did not answer", 'check the connection, then try again');

/** The subscription the browser holds for this app, or null (the call can hang without a push service). */
async function currentSubscription(registration) {
  return withTimeout(registration.pushManager.getSubscription(), 5000, noPushService());
}

async function serviceWorker() {
  return withTimeout(navigator.serviceWorker.ready, 10000,
    new CompanionError("the app's service worker did not start, so nothing can wake it", 'reload the page and try again'));
}

/**
 * Turns notifications on; call it from a tap (browsers ask for permission only then). Returns
 * what `Companion.enableNotifications` returns.
 */
export async function turnOn(companion) {
  if (!pushSupported()) {
    throw new CompanionError('this browser cannot show notifications from a web app',
      'on an iPhone or iPad, add Errand to the Home Screen (Share, then Add to Home Screen) and turn them on from there');
  }
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') {
    throw new CompanionError(permission === 'denied' ? 'notifications are blocked for this site' : 'notifications were not allowed',
      "allow notifications for this site in the browser's settings, then try again");
  }
  const key = await companion.pushKey();
  if (!key) {
    throw new CompanionError('the relay rings no doorbells (push is off there)',
      "ask the relay's operator to turn push on, or use 'errand notify' with ntfy on a computer");
  }
  const registration = await serviceWorker();
  let subscription = await currentSubscription(registration);
  if (subscription && subscriptionKey(subscription) !== key) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await withTimeout(registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromBase64url(key) }),
    20000, noPushService());
  return companion.enableNotifications(subscription.toJSON(), key);
}

/**
 * Turns notifications off: the relays forget the doorbells (awaited: then nothing rings), and the
 * browser its subscription (not awaited: without a reachable push service the browser may take
 * long to answer, and a subscription no relay knows is never rung).
 */
export async function turnOff(companion) {
  const failed = await companion.disableNotifications();
  if (pushSupported()) {
    serviceWorker().then(currentSubscription).then(subscription => subscription?.unsubscribe())
      .catch(error => console.warn(`errand: the browser keeps its push subscription (${error.message})`));
  }
  return failed;
}

/**
 * Answers the service worker: `errand-work` (catch up, or register a renewed subscription) when
 * `companion()` resolves to the running companion (this page holds the keys), and `errand-open`
 * (a notification was tapped) with `open(host, task)`.
 */
export function answerServiceWorker(companion, open) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', async event => {
    const message = event.data ?? {};
    if (message.type === 'errand-open') { open(message.host, message.task); return; }
    if (message.type !== 'errand-work' || !event.ports[0]) return;
    const port = event.ports[0];
    let running = null;
    try { running = await companion(); } catch { running = null; }
    if (!running) { port.postMessage({ running: false }); return; }
    try {
      if (message.work === 'catchUp') {
        port.postMessage({ running: true, result: await running.catchUp() });
      } else if (message.work === 'resubscribe') {
        await running.resubscribe(message.subscription);
        port.postMessage({ running: true, result: null });
      } else {
        port.postMessage({ running: true, error: `unknown work ${message.work}` });
      }
    } catch (error) {
      port.postMessage({ running: true, error: error.message });
    }
  });
}
