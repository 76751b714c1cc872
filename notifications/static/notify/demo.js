// The /demo page: notify-client.js driving a small notification centre.
import { NotifyClient, compareIds } from "./notify-client.js";

const root = document.getElementById("demo");
const user = root.dataset.user;
const list = document.getElementById("list");
const empty = document.getElementById("empty");
const badge = document.getElementById("badge");
const statusPill = document.getElementById("status");
const sendForm = document.getElementById("send-form");
const sendResult = document.getElementById("send-result");

async function demoPost(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const detail =
      answer && typeof answer.detail === "string"
        ? answer.detail
        : answer
          ? Object.entries(answer)
              .map(([field, errors]) => `${field}: ${[].concat(errors).join(" ")}`)
              .join("; ")
          : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return answer;
}

// Demo only: the page mints its own token (a real app gets it from its
// backend). One token serves the list, the count and the socket until a
// minute before it expires; the client asks again after that (or a 4401).
let minted = null; // the promise of { token, until }

async function demoToken() {
  const current = minted && (await minted.catch(() => null));
  if (current && Date.now() < current.until) return current.token;
  minted = demoPost("/demo/token", { user }).then((answer) => ({
    token: answer.token,
    until: Date.now() + Math.max(0, answer.expires_in - 60) * 1000,
  }));
  return (await minted).token;
}

const client = new NotifyClient({ getToken: demoToken, autoConnect: false });
window.notifyDemo = { client, user };

// ------------------------------------------------------------------ rendering

function timeOf(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour12: false });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render(n) {
  if (list.querySelector(`li[data-id="${n.id}"]`)) return;
  const item = element("li", `item ${n.read_at ? "read" : "unread"} fresh`);
  item.dataset.id = n.id;
  item.append(element("span", "dot"));
  const content = element("div", "content");
  content.append(element("div", "title", n.title || n.type));
  if (n.body) content.append(element("div", "body", n.body));
  const meta = element("div", "meta");
  meta.append(element("code", "type", n.type), ` · from ${n.source} · ${timeOf(n.created_at)} · #${n.id}`);
  content.append(meta);
  item.append(content);
  const button = element("button", "mark-read ghost", "Mark read");
  button.type = "button";
  button.addEventListener("click", () => client.markRead([n.id]).catch(showError));
  item.append(button);
  // Newest first, whatever order they arrive in.
  const after = [...list.children].find((li) => compareIds(li.dataset.id, n.id) < 0);
  list.insertBefore(item, after ?? null);
  setTimeout(() => item.classList.remove("fresh"), 800);
  empty.hidden = true;
}

function markItemsRead(ids) {
  for (const id of ids) {
    const item = list.querySelector(`li[data-id="${id}"]`);
    if (item) {
      item.classList.remove("unread");
      item.classList.add("read");
    }
  }
}

function showUnread(count) {
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.dataset.count = String(count);
  badge.classList.toggle("zero", count === 0);
  document.title = `${count ? `(${count}) ` : ""}notify-push demo · ${user}`;
}

const STATUS_TEXT = {
  idle: "idle",
  connecting: "connecting…",
  open: "live",
  reconnecting: "reconnecting…",
  closed: "offline",
};

function showStatus(status, info) {
  statusPill.dataset.status = status;
  let text = STATUS_TEXT[status] ?? status;
  if (status === "reconnecting" && info && typeof info.delay === "number") {
    text = `reconnecting in ${Math.max(1, Math.round(info.delay / 1000))}s…`;
  }
  statusPill.textContent = text;
}

function showError(err) {
  sendResult.textContent = String(err.message ?? err);
  sendResult.className = "result error";
}

client.onNotification(render);
client.onRead(markItemsRead);
client.onUnreadCount(showUnread);
client.onStatus(showStatus);
client.onError((err) => console.warn("notify:", err));

document.getElementById("mark-all").addEventListener("click", () => {
  client.markAllRead().then(() => markItemsRead([...list.children].map((li) => li.dataset.id)), showError);
});

sendForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(sendForm);
  const recipients = String(form.get("recipients"))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const button = document.getElementById("send");
  button.disabled = true;
  try {
    const answer = await demoPost("/demo/send", {
      recipients,
      type: String(form.get("type")),
      title: String(form.get("title")),
      body: String(form.get("body")),
    });
    sendResult.textContent = `Sent to ${answer.recipients} user(s).`;
    sendResult.className = "result ok";
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ Web Push
// "Enable push": notifications reach this browser while the tab is closed
// (notify-sw.js). Hidden where the browser cannot; disabled when the server
// has no VAPID key (the public key answers 404).
const pushButton = document.getElementById("push");

function showPush(on) {
  pushButton.dataset.on = on ? "1" : "";
  pushButton.textContent = on ? "Disable push" : "Enable push";
}

if ("serviceWorker" in navigator && "PushManager" in window) {
  pushButton.hidden = false;
  fetch("/api/v1/push/public-key").then((response) => {
    if (!response.ok) {
      pushButton.disabled = true;
      pushButton.title = "Web Push is off on this server (set VAPID_PRIVATE_KEY)";
    } else if (Notification.permission === "granted") {
      client.enablePush().then(() => showPush(true), () => showPush(false));
    }
  }, showError);
  pushButton.addEventListener("click", async () => {
    pushButton.disabled = true;
    try {
      if (pushButton.dataset.on) {
        await client.disablePush();
        showPush(false);
      } else {
        await client.enablePush();
        showPush(true);
      }
    } catch (err) {
      showError(err);
    } finally {
      pushButton.disabled = false;
    }
  });
}

// The latest ones first (so the list is not empty after a reload), then live,
// resuming from the newest id loaded.
try {
  await client.loadRecent(30);
} catch (err) {
  console.warn("notify: could not load recent notifications", err);
}
client.connect();
