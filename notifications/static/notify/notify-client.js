// notify-client.js: browser client for the notify-push service.
//
// A plain ES module (no build step), served by the service at
// /static/notify/notify-client.js; types in notify-client.d.ts beside it.
//
//   import { NotifyClient } from "/static/notify/notify-client.js";
//   const client = new NotifyClient({ getToken: async () => (await fetch("/my/token")).text() });
//   client.onNotification((n) => console.log(n.title));
//   client.onUnreadCount((n) => (badge.textContent = n));
//
// What it does for you: authenticates the socket with the subprotocol
// ["notifications.v1", "bearer." + token], asking getToken() for a fresh token
// on every (re)connect; reconnects with exponential backoff and full jitter;
// resumes with ?since=<last id seen> so nothing is missed; refetches over the
// user API when the server says its replay was incomplete; drops duplicate
// ids; tracks the unread count; pings to notice dead connections.
//
// Transports: a WebSocket first. When its handshake cannot complete (a proxy
// that strips `Upgrade`, a network that blocks WebSockets: `fallbackAfter`
// attempts in a row close before `ready`), the client switches by itself to
// Server-Sent Events at /api/v1/me/stream, read with fetch() streaming so
// that the token travels in the Authorization header, never in the URL, and
// a fresh token can be used on every reconnect (EventSource can do neither).
// Same API, same resume (Last-Event-ID), same dedupe. It tries the WebSocket
// again on a reconnect after `wsRetryAfter` ms.

import { attachPush, disablePush, enablePush } from "./notify-push.js";

const SUBPROTOCOL = "notifications.v1";
const ME = "/api/v1/me/notifications";
const STREAM = "/api/v1/me/stream";
// Close codes that say "the handshake did not complete" (no close frame at all).
const HANDSHAKE_FAILED = new Set([1002, 1006, 1015]);
const MAX_READ_IDS = 1000;

/** An HTTP error of the user API: `status` and the decoded `body`. */
export class NotifyError extends Error {
  constructor(message, { status = 0, body = null } = {}) {
    super(message);
    this.name = "NotifyError";
    this.status = status;
    this.body = body;
  }
}

function isId(value) {
  return typeof value === "string" && /^\d{1,18}$/.test(value);
}

/** Compare two decimal id strings as integers (ids may exceed 2**53). */
export function compareIds(a, b) {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function defaultSocketUrl() {
  const loc = globalThis.location;
  if (!loc) throw new TypeError("NotifyClient: `url` is required outside a browser page");
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws/notifications`;
}

function httpBaseOf(socketUrl) {
  const url = new URL(socketUrl, globalThis.location?.href);
  url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  return url.origin;
}

export class NotifyClient {
  /**
   * @param {import("./notify-client").NotifyClientOptions} options
   */
  constructor(options = {}) {
    const {
      url,
      getToken,
      apiBase,
      lastId = null,
      autoConnect = true,
      minDelay = 500,
      maxDelay = 15000,
      pingInterval = 25000,
      pongTimeout = 10000,
      refetchPages = 4,
      transport = "auto",
      streamUrl,
      fallbackAfter = 2,
      wsRetryAfter = 300000,
      streamIdleTimeout = 35000,
      WebSocket: SocketImpl = globalThis.WebSocket,
      fetch: fetchImpl = globalThis.fetch?.bind(globalThis),
    } = options;
    if (typeof getToken !== "function") {
      throw new TypeError("NotifyClient: `getToken` (an async function returning a JWT) is required");
    }
    if (lastId !== null && !isId(String(lastId))) {
      throw new TypeError("NotifyClient: `lastId` must be a notification id (digits)");
    }
    this._url = url ?? defaultSocketUrl();
    this._apiBase = String(apiBase ?? httpBaseOf(this._url)).replace(/\/+$/, "");
    this._getToken = getToken;
    this._SocketImpl = SocketImpl;
    this._fetch = fetchImpl;
    this._minDelay = minDelay;
    this._maxDelay = maxDelay;
    this._pingInterval = pingInterval;
    this._pongTimeout = pongTimeout;
    this._refetchPages = refetchPages;
    if (!["auto", "websocket", "sse"].includes(transport)) {
      throw new TypeError('NotifyClient: `transport` is "auto", "websocket" or "sse"');
    }
    this._transportMode = transport;
    this._streamUrl = streamUrl ?? `${this._apiBase}${STREAM}`;
    this._fallbackAfter = fallbackAfter;
    this._wsRetryAfter = wsRetryAfter;
    this._streamIdleTimeout = streamIdleTimeout;
    this._useSse = transport === "sse";
    this._wsFailures = 0;
    this._sseSince = 0; // when the client fell back to SSE (Date.now())
    this._sse = null; // the open stream's AbortController
    this._idleTimer = null;

    this._lastId = lastId === null ? null : String(lastId);
    this._seen = new Map(); // id -> read (bool), insertion order, bounded
    this._maxTracked = 5000;
    this._unread = null;
    // Moves of the count by frames (ready, notification, read): a REST count
    // asked before one of them may not include it (unreadCount).
    this._unreadMoves = 0;
    this._token = null;

    this._ws = null;
    this._status = "idle";
    this._stopped = true;
    this._attempt = 0;
    this._timer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._readyOnSocket = false;
    this._unreadRefresh = null;
    this._listeners = {
      notification: new Set(),
      read: new Set(),
      unread: new Set(),
      status: new Set(),
      ready: new Set(),
      error: new Set(),
    };
    this._onOnline = () => {
      if (!this._stopped && this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
        this._open();
      }
    };
    if (autoConnect) queueMicrotask(() => this.connect());
  }

  // ------------------------------------------------------------------ state

  /** "idle" | "connecting" | "open" | "reconnecting" | "closed" */
  get status() {
    return this._status;
  }

  /** The highest notification id this client has covered (resume point), or null. */
  get lastId() {
    return this._lastId;
  }

  /** The tracked unread count (from `ready`, frames and REST), or null before the first. */
  get unread() {
    return this._unread;
  }

  /** The transport of the current (or next) connection: "websocket" or "sse". */
  get transport() {
    return this._useSse ? "sse" : "websocket";
  }

  // -------------------------------------------------------------- listeners

  /** cb(notification) for each new notification, once per id. Returns an unsubscribe function. */
  onNotification(cb) {
    return this._on("notification", cb);
  }

  /** cb(ids) when notifications were marked read (here, in another tab or device, or over REST). */
  onRead(cb) {
    return this._on("read", cb);
  }

  /** cb(count) whenever the tracked unread count changes. */
  onUnreadCount(cb) {
    return this._on("unread", cb);
  }

  /** cb(status, info) on every status change; info has `code` and `delay` when reconnecting. */
  onStatus(cb) {
    return this._on("status", cb);
  }

  /** cb(readyFrame) once per connection, after the replay. */
  onReady(cb) {
    return this._on("ready", cb);
  }

  /** cb(error) for errors the client recovers from by itself (token, socket, refetch). */
  onError(cb) {
    return this._on("error", cb);
  }

  _on(kind, cb) {
    if (typeof cb !== "function") throw new TypeError("callback must be a function");
    this._listeners[kind].add(cb);
    return () => this._listeners[kind].delete(cb);
  }

  _emit(kind, ...args) {
    for (const cb of [...this._listeners[kind]]) {
      try {
        cb(...args);
      } catch (err) {
        console.error(`NotifyClient: ${kind} listener failed`, err);
      }
    }
  }

  _setStatus(status, info = {}) {
    if (this._status === status && status !== "reconnecting") return;
    this._status = status;
    this._emit("status", status, info);
  }

  _setUnread(count) {
    const value = Math.max(0, count);
    if (value === this._unread) return;
    this._unread = value;
    this._emit("unread", value);
  }

  // ------------------------------------------------------------- lifecycle

  /** Open the socket (done by the constructor unless autoConnect is false). Idempotent. */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
  }

  /** Close the socket and stop reconnecting. `connect()` starts again. */
  close() {
    this._stopped = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    clearTimeout(this._timer);
    this._timer = null;
    clearTimeout(this._unreadRefresh);
    this._stopHeartbeat();
    this._stopStream();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    this._setStatus("closed");
  }

  async _open() {
    if (this._stopped || this._ws || this._sse) return;
    if (this._status !== "reconnecting") this._setStatus("connecting");
    let token;
    try {
      token = await this._freshToken();
    } catch (err) {
      this._emit("error", err);
      this._scheduleReconnect(null);
      return;
    }
    if (this._stopped || this._ws || this._sse) return;
    if (this._useSse && this._transportMode === "auto" && Date.now() - this._sseSince >= this._wsRetryAfter) {
      this._useSse = false; // a later reconnect: try the WebSocket again, once
      this._wsFailures = this._fallbackAfter - 1;
    }
    if (this._useSse) {
      this._openStream(token);
      return;
    }
    const url = new URL(this._url, globalThis.location?.href);
    if (this._lastId !== null) url.searchParams.set("since", this._lastId);
    else url.searchParams.delete("since");
    let ws;
    try {
      ws = new this._SocketImpl(url.toString(), [SUBPROTOCOL, `bearer.${token}`]);
    } catch (err) {
      this._emit("error", err);
      this._scheduleReconnect(null);
      return;
    }
    this._ws = ws;
    this._readyOnSocket = false;
    let opened = false;
    ws.onmessage = (event) => {
      if (ws === this._ws) this._onMessage(event.data);
    };
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      if (!this._readyOnSocket && (!opened || HANDSHAKE_FAILED.has(event.code))) this._wsFailed();
      this._onClose(event.code, event.reason);
    };
    ws.onopen = () => {
      opened = true;
      if (ws === this._ws) this._startHeartbeat();
    };
  }

  _wsFailed() {
    this._wsFailures += 1;
    if (this._transportMode === "auto" && this._wsFailures >= this._fallbackAfter) {
      this._useSse = true;
      this._sseSince = Date.now();
      this._attempt = 0; // a different transport: no reason to wait long
    }
  }

  _onClose(code, reason) {
    this._ws = null;
    this._sse = null;
    this._readyOnSocket = false;
    this._stopHeartbeat();
    clearTimeout(this._idleTimer);
    this._idleTimer = null;
    if (this._stopped) return;
    if (code === 4401) this._token = null; // expired: getToken() is asked again anyway
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason = "") {
    if (this._stopped || this._timer !== null) return;
    const rand = Math.random();
    let delay;
    if (code === 4401 || code === 4008) {
      delay = rand * 250; // fresh token / resume at once
    } else if (code === 1012) {
      delay = 250 + rand * 2250; // the process is restarting: spread the herd
    } else {
      if (code === 1008 || code === 1009) this._attempt = Math.max(this._attempt, 4);
      const cap = Math.min(this._maxDelay, this._minDelay * 2 ** this._attempt);
      delay = Math.max(100, rand * cap); // full jitter
    }
    this._attempt += 1;
    this._setStatus("reconnecting", { code, reason, delay, attempt: this._attempt });
    this._timer = setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
  }

  _dropSocket() {
    // A socket that stopped answering: forget it now, reconnect, let it close in the background.
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(4000, "no pong");
    } catch {
      /* ignore */
    }
    this._onClose(4000, "no pong");
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    if (!this._pingInterval) return;
    this._pingTimer = setInterval(() => {
      if (!this._ws || this._ws.readyState !== 1 || this._pongTimer !== null) return;
      this._send({ type: "ping" });
      this._pongTimer = setTimeout(() => this._dropSocket(), this._pongTimeout);
    }, this._pingInterval);
  }

  _stopHeartbeat() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pingTimer = null;
    this._pongTimer = null;
  }

  _send(frame) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  // ---------------------------------------------------------- SSE (fallback)

  async _openStream(token) {
    const controller = new AbortController();
    this._sse = controller;
    this._readyOnSocket = false;
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (this._lastId !== null) headers["Last-Event-ID"] = this._lastId;
    let closeCode = null;
    try {
      const response = await this._fetch(this._streamUrl, {
        headers,
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok || !response.body) {
        if (response.status === 401) this._token = null; // the next attempt asks getToken()
        closeCode = response.status === 503 ? 1013 : null;
        throw new NotifyError(`GET ${STREAM}: ${response.status}`, { status: response.status });
      }
      this._touchStream(controller);
      closeCode = await this._readStream(response.body, controller);
    } catch (err) {
      if (controller.signal.aborted) return; // closed here (close(), idle timeout)
      this._emit("error", err);
    }
    if (this._sse === controller) this._onClose(closeCode ?? 1006, "stream ended");
  }

  async _readStream(body, controller) {
    // text/event-stream: events end with a blank line; "field: value" lines;
    // ": ..." lines are comments (the server's keep-alive pings).
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let closeCode = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this._sse !== controller) return closeCode;
      this._touchStream(controller);
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const code = this._onEvent(block);
        if (code !== null) closeCode = code;
      }
    }
  }

  _onEvent(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch {
      return null;
    }
    if (kind === "close") return typeof payload?.code === "number" ? payload.code : null;
    if (kind === "notification") this._onFrame({ type: "notification", notification: payload });
    else this._onFrame({ ...payload, type: kind });
    return null;
  }

  _touchStream(controller) {
    // The server writes at least every 15 s; silence for longer is a dead stream.
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => {
      if (this._sse !== controller) return;
      controller.abort();
      this._onClose(4000, "stream silent");
    }, this._streamIdleTimeout);
  }

  _stopStream() {
    clearTimeout(this._idleTimer);
    this._idleTimer = null;
    const controller = this._sse;
    this._sse = null;
    controller?.abort();
  }

  // ----------------------------------------------------------------- frames

  _onMessage(data) {
    // Any frame proves the connection is alive.
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    this._onFrame(frame);
  }

  _onFrame(frame) {
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "notification":
        if (frame.notification && isId(frame.notification.id)) {
          this._accept(frame.notification, { countUnread: this._readyOnSocket, checkLast: true });
        }
        break;
      case "read":
        if (Array.isArray(frame.ids)) this._applyRead(frame.ids.map(String), true);
        break;
      case "ready":
        this._onReady(frame);
        break;
      case "error":
        this._emit("error", new NotifyError(`server: ${frame.code}: ${frame.detail}`, { body: frame }));
        break;
      default:
        break; // pong, and frame types this version does not know
    }
  }

  _accept(n, { countUnread, checkLast }) {
    const id = String(n.id);
    if (this._seen.has(id)) return false;
    if (checkLast && this._lastId !== null && compareIds(id, this._lastId) <= 0) return false;
    this._remember(id, n.read_at != null);
    if (this._lastId === null || compareIds(id, this._lastId) > 0) this._lastId = id;
    if (countUnread && n.read_at == null && this._unread !== null) {
      this._unreadMoves += 1;
      this._setUnread(this._unread + 1);
    }
    this._emit("notification", n);
    return true;
  }

  _remember(id, read) {
    this._seen.set(id, read);
    if (this._seen.size > this._maxTracked) {
      const oldest = this._seen.keys().next().value;
      this._seen.delete(oldest);
    }
  }

  _onReady(frame) {
    this._readyOnSocket = true;
    this._attempt = 0;
    if (!this._useSse) this._wsFailures = 0;
    const serverLast = isId(frame.last_id) ? frame.last_id : null;
    const previous = this._lastId;
    let reset = false;
    if (frame.complete === false && previous !== null && serverLast !== null) {
      // The server has fewer ids than we saw: its data was reset. Start over from its ids.
      reset = compareIds(serverLast, previous) < 0;
    }
    if (reset) {
      this._seen.clear();
      this._lastId = serverLast;
    } else if (serverLast !== null && (this._lastId === null || compareIds(serverLast, this._lastId) > 0)) {
      this._lastId = serverLast;
    }
    if (typeof frame.unread === "number") {
      this._unread = null; // force an emit even when equal: a fresh authoritative count
      this._unreadMoves += 1;
      this._setUnread(frame.unread);
    }
    this._setStatus("open");
    this._emit("ready", frame);
    if (frame.complete === false) {
      this._refetch(reset ? null : previous).catch((err) => this._emit("error", err));
    }
  }

  _applyRead(ids, fromServer) {
    const changed = [];
    let decrement = 0;
    for (const id of ids) {
      if (!isId(id)) continue;
      const known = this._seen.has(id);
      if (known && this._seen.get(id) === true) continue; // already read here
      if (known) this._seen.set(id, true);
      if (known || fromServer) {
        decrement += 1;
        changed.push(id);
      }
    }
    if (this._unread !== null && decrement) {
      if (fromServer) this._unreadMoves += 1;
      this._setUnread(this._unread - decrement);
    }
    if (changed.length) this._emit("read", changed);
    return changed;
  }

  // --------------------------------------------------------------- user API

  async _freshToken() {
    const token = await this._getToken();
    if (typeof token !== "string" || !token) throw new NotifyError("getToken() returned no token");
    this._token = token;
    return token;
  }

  async _api(method, path, body) {
    let token = this._token ?? (await this._freshToken());
    for (let attempt = 0; ; attempt += 1) {
      const response = await this._fetch(this._apiBase + path, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          Accept: "application/json",
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (response.status === 401 && attempt === 0) {
        token = await this._freshToken();
        continue;
      }
      let answer = null;
      try {
        answer = await response.json();
      } catch {
        answer = null;
      }
      if (!response.ok) {
        const detail = answer && typeof answer.detail === "string" ? answer.detail : response.statusText;
        throw new NotifyError(`${method} ${path}: ${response.status} ${detail}`, {
          status: response.status,
          body: answer,
        });
      }
      return answer;
    }
  }

  /** GET /api/v1/me/notifications: `{results, next}`, newest first. */
  async list({ unread = false, limit = 50, cursor = null } = {}) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (unread) params.set("unread", "true");
    if (cursor) params.set("cursor", cursor);
    return this._api("GET", `${ME}?${params}`);
  }

  /**
   * Fetch the newest `limit` notifications and deliver the ones not seen yet
   * to onNotification (oldest first), e.g. to fill a list on page load.
   * Returns them, newest first.
   */
  async loadRecent(limit = 20) {
    const page = await this.list({ limit });
    const results = Array.isArray(page?.results) ? page.results : [];
    for (const n of [...results].reverse()) this._accept(n, { countUnread: false, checkLast: false });
    return results;
  }

  async _refetch(after) {
    // The server could not replay everything since our last id: read the user
    // API, newest first, back to `after` (or a few pages), and deliver what is new.
    const missed = [];
    let cursor = null;
    for (let page = 0; page < this._refetchPages; page += 1) {
      const answer = await this.list({ limit: 100, cursor });
      let reached = false;
      for (const n of answer.results ?? []) {
        if (after !== null && compareIds(n.id, after) <= 0) {
          reached = true;
          break;
        }
        missed.push(n);
      }
      if (reached || !answer.next) break;
      cursor = new URL(answer.next, this._apiBase).searchParams.get("cursor");
      if (!cursor) break;
    }
    for (const n of missed.reverse()) this._accept(n, { countUnread: false, checkLast: false });
    await this.unreadCount().catch(() => undefined);
  }

  /** GET /api/v1/me/notifications/unread-count; also updates the tracked count. */
  async unreadCount() {
    const moves = this._unreadMoves;
    const answer = await this._api("GET", `${ME}/unread-count`);
    const count = Number(answer?.unread ?? 0);
    if (this._unreadMoves === moves) {
      this._setUnread(count);
    } else {
      // A frame moved the count while this answer was on its way, and the
      // server may have counted before it: keep the frames' count, ask again.
      this._scheduleUnreadRefresh();
    }
    return count;
  }

  /**
   * Mark ids read: over the socket (a `read` frame) when it is open, else over
   * REST (always, on SSE). The user's other tabs and devices get a `read` frame. Listeners here
   * are told at once.
   */
  async markRead(ids) {
    const wanted = [...new Set((Array.isArray(ids) ? ids : [ids]).map(String))];
    if (!wanted.length) return;
    if (!wanted.every(isId)) throw new TypeError("markRead: ids are notification id strings");
    const unknown = wanted.some((id) => !this._seen.has(id));
    this._applyRead(wanted, false);
    let viaSocket = this._ws !== null && this._ws.readyState === 1 && this._readyOnSocket;
    for (let i = 0; i < wanted.length; i += MAX_READ_IDS) {
      const chunk = wanted.slice(i, i + MAX_READ_IDS);
      if (viaSocket && this._send({ type: "read", ids: chunk })) continue;
      viaSocket = false;
      await this._api("POST", `${ME}/read`, { ids: chunk });
    }
    // Ids this client never saw may have changed the count: ask the server.
    if (unknown) this._scheduleUnreadRefresh();
  }

  /** Mark every notification of the user read (REST); returns how many changed. */
  async markAllRead() {
    const known = [...this._seen].filter(([, read]) => !read).map(([id]) => id);
    this._applyRead(known, false);
    const answer = await this._api("POST", `${ME}/read`, { all: true });
    this._setUnread(0);
    return Number(answer?.updated ?? 0);
  }

  // -------------------------------------------------------------- Web Push

  /**
   * Ask permission, register the service worker (notify-sw.js, served from
   * your origin), subscribe with the service's VAPID key and register the
   * subscription. Resolves to `{id, endpoint, created_at}`. Call it on every
   * page load once enabled (no prompt then): it also wires the page so that a
   * click on a notification marks it read here.
   */
  enablePush(options = {}) {
    return enablePush(this, NotifyError, options);
  }

  /**
   * Register the service worker and wire this page to it (ids shown live are
   * not shown again by a push; a click on a notification marks it read here),
   * without asking permission or subscribing. enablePush() does this too.
   */
  attachPush(options = {}) {
    return attachPush(this, NotifyError, options);
  }

  /** Unregister this browser's subscription here and at the push service. */
  disablePush(options = {}) {
    return disablePush(this, options);
  }

  _scheduleUnreadRefresh() {
    clearTimeout(this._unreadRefresh);
    this._unreadRefresh = setTimeout(() => {
      this._unreadRefresh = null;
      this.unreadCount().catch((err) => this._emit("error", err));
    }, 300);
  }
}

export default NotifyClient;
