// notify-sw.js: the service worker of notify-push's Web Push (docs/clients.md).
//
// Serve it from your app's origin (a service worker must be same-origin with
// the pages that register it); NotifyClient.enablePush({ serviceWorker })
// registers it. It shows each push as a notification whose tag is the
// notification id (a repeat replaces, never duplicates), skips ids a page of
// the app already showed live, and on a click focuses an open tab of the app
// (or opens data.url) and tells that tab, which marks the notification read.

const SHOWN_LIMIT = 500;
const shown = new Set(); // ids pages showed live (the "auto" race, docs/push.md)

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const message = event.data || {};
  if (message.type === "notify:shown" && typeof message.id === "string") {
    shown.add(message.id);
    if (shown.size > SHOWN_LIMIT) shown.delete(shown.values().next().value);
  }
});

function parse(event) {
  try {
    const n = event.data ? event.data.json() : null;
    return n && typeof n.id === "string" ? n : null;
  } catch {
    return null;
  }
}

async function show(n) {
  if (shown.has(n.id)) return; // the page showed it while the push was on its way
  const data = n.data && typeof n.data === "object" ? n.data : {};
  await self.registration.showNotification(n.title || n.type || "Notification", {
    body: n.body || "",
    tag: n.id,
    timestamp: Date.parse(n.created_at) || Date.now(),
    data: { id: n.id, type: n.type, url: typeof data.url === "string" ? data.url : null, truncated: !!n.truncated },
  });
}

self.addEventListener("push", (event) => {
  const n = parse(event);
  if (n) event.waitUntil(show(n));
});

function safeUrl(url) {
  try {
    const resolved = new URL(url, self.registration.scope);
    return resolved.protocol === "https:" || resolved.protocol === "http:" ? resolved.href : null;
  } catch {
    return null;
  }
}

async function open(notification) {
  const { id, url } = notification.data || {};
  const message = { type: "notify:clicked", id };
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const tab = windows.find((c) => c.focused) || windows.find((c) => c.visibilityState === "visible") || windows[0];
  if (tab) {
    tab.postMessage(message);
    try {
      await tab.focus();
    } catch {
      /* focusing needs the click's user activation */
    }
    return;
  }
  const target = (url && safeUrl(url)) || self.registration.scope;
  const opened = await self.clients.openWindow(target);
  if (opened) opened.postMessage(message); // queued until the page listens
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const done = open(event.notification);
  // Only a browser-dispatched event can be extended (one dispatched by a
  // script, e.g. a test, cannot).
  if (event.isTrusted) event.waitUntil(done);
});
