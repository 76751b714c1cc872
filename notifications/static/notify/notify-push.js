// notify-push.js: Web Push for NotifyClient (enablePush / disablePush).
// Imported by notify-client.js; not meant to be used on its own.

const SUBSCRIPTIONS = "/api/v1/me/push-subscriptions";
const PUBLIC_KEY = "/api/v1/push/public-key";
export const DEFAULT_SERVICE_WORKER = "/static/notify/notify-sw.js";

function base64UrlToBytes(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function supported() {
  return !!(globalThis.navigator?.serviceWorker && globalThis.PushManager && globalThis.Notification);
}

async function activeWorker(registration) {
  if (registration.active) return registration.active;
  const worker = registration.installing || registration.waiting;
  await new Promise((resolve) => {
    worker.addEventListener("statechange", function check() {
      if (worker.state === "activated") {
        worker.removeEventListener("statechange", check);
        resolve();
      }
    });
  });
  return registration.active;
}

/** The page side: tell the worker which ids were shown live; mark clicked ones read. */
function wire(client, registration) {
  if (client._pushWired) return;
  client._pushWired = true;
  client.onNotification((n) => registration.active?.postMessage({ type: "notify:shown", id: n.id }));
  globalThis.navigator.serviceWorker.addEventListener("message", (event) => {
    const message = event.data || {};
    if (message.type === "notify:clicked" && typeof message.id === "string") {
      client.markRead(message.id).catch((err) => client._emit("error", err));
    }
  });
}

/** Register the service worker and wire this page to it; no prompt, no subscription. */
export async function attachPush(client, errorClass, { serviceWorker = DEFAULT_SERVICE_WORKER, scope } = {}) {
  if (!supported()) throw new errorClass("Web Push is not supported by this browser");
  const registration = await globalThis.navigator.serviceWorker.register(serviceWorker, scope ? { scope } : undefined);
  await activeWorker(registration);
  wire(client, registration);
  return registration;
}

export async function enablePush(client, errorClass, options = {}) {
  if (!supported()) throw new errorClass("Web Push is not supported by this browser");
  const permission = await globalThis.Notification.requestPermission();
  if (permission !== "granted") throw new errorClass(`Notification permission: ${permission}`);
  const registration = await attachPush(client, errorClass, options);
  const { public_key: key } = await client._api("GET", PUBLIC_KEY);
  let subscription = await registration.pushManager.getSubscription();
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64UrlToBytes(key),
    });
  }
  const saved = await client._api("POST", SUBSCRIPTIONS, subscription.toJSON());
  client._push = { registration, id: saved.id };
  return saved;
}

export async function disablePush(client, { serviceWorker = DEFAULT_SERVICE_WORKER, scope } = {}) {
  if (!supported()) return false;
  const registration =
    client._push?.registration ??
    (await globalThis.navigator.serviceWorker.getRegistration(scope ?? new URL(".", new URL(serviceWorker, location.href)).href));
  const subscription = await registration?.pushManager.getSubscription();
  if (!subscription) return false;
  let id = client._push?.id;
  if (!id) {
    const { results } = await client._api("GET", SUBSCRIPTIONS);
    id = results.find((s) => s.endpoint === subscription.endpoint)?.id;
  }
  if (id) await client._api("DELETE", `${SUBSCRIPTIONS}/${id}`);
  await subscription.unsubscribe();
  client._push = null;
  return true;
}
