// Types for notify-client.js (the browser client of the notify-push service).

/** A notification, as the socket and the user API send it. */
export interface Notification {
  /** Decimal digits; unique per user and increasing (compare as integers, see compareIds). */
  id: string;
  type: string;
  title: string;
  body: string;
  data: Record<string, unknown>;
  /** The publisher key's name. */
  source: string;
  /** ISO 8601, UTC. */
  created_at: string;
  read_at: string | null;
}

/** The `ready` frame: once per connection, after the replay. */
export interface ReadyFrame {
  type: "ready";
  user: string;
  replayed: number;
  /** false: the replay could not cover everything since `since`; the client refetches. */
  complete: boolean;
  unread: number;
  /** The highest id this socket covered. */
  last_id: string;
}

export type Status = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StatusInfo {
  /** The close code that caused a reconnect (null when the token or socket could not be had). */
  code?: number | null;
  reason?: string;
  /** Milliseconds until the next attempt. */
  delay?: number;
  attempt?: number;
}

export interface NotificationPage {
  results: Notification[];
  next: string | null;
}

export interface NotifyClientOptions {
  /** Returns a user JWT; called before every (re)connect, and again when the API answers 401. */
  getToken: () => Promise<string> | string;
  /** Socket URL. Default: ws(s)://<this page's host>/ws/notifications. */
  url?: string;
  /** Base URL of the user API. Default: the socket URL's origin, over http(s). */
  apiBase?: string;
  /** Resume point, e.g. saved from `client.lastId` in a previous session. */
  lastId?: string | null;
  /** Connect from the constructor (default true); otherwise call connect(). */
  autoConnect?: boolean;
  /** Backoff: the first retry waits up to minDelay ms, doubling up to maxDelay (full jitter). */
  minDelay?: number;
  maxDelay?: number;
  /** ms between pings (0: none); a socket silent pongTimeout ms after a ping is replaced. */
  pingInterval?: number;
  pongTimeout?: number;
  /** Pages of 100 read over the user API when a replay was incomplete (default 4). */
  refetchPages?: number;
  /**
   * "auto" (default): a WebSocket first, Server-Sent Events when `fallbackAfter`
   * WebSocket attempts in a row cannot complete their handshake (a proxy that
   * strips Upgrade); "websocket" or "sse": that transport only.
   */
  transport?: "auto" | "websocket" | "sse";
  /** SSE URL. Default: `${apiBase}/api/v1/me/stream`. Read with fetch() streaming (token in a header). */
  streamUrl?: string;
  /** WebSocket attempts that fail before `ready`, in a row, before switching to SSE (default 2). */
  fallbackAfter?: number;
  /** ms on SSE after which a reconnect tries the WebSocket again (default 300000). */
  wsRetryAfter?: number;
  /** ms of silence after which an SSE stream counts as dead and is replaced (default 35000). */
  streamIdleTimeout?: number;
  /** For non-browser runtimes or tests. */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

/** An HTTP error of the user API. */
export class NotifyError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(message: string, init?: { status?: number; body?: unknown });
}

/** -1, 0 or 1: two decimal id strings compared as integers. */
export function compareIds(a: string, b: string): -1 | 0 | 1;

type Unsubscribe = () => void;

export class NotifyClient {
  constructor(options: NotifyClientOptions);

  readonly status: Status;
  /** The highest id covered so far: the `since` of the next connection. */
  readonly lastId: string | null;
  /** Tracked unread count (from `ready`, frames and REST), null before the first. */
  readonly unread: number | null;
  /** The transport of the current (or next) connection. */
  readonly transport: "websocket" | "sse";

  /** Each new notification, once per id (live, replayed after a reconnect, or refetched). */
  onNotification(cb: (notification: Notification) => void): Unsubscribe;
  /** Ids marked read, here, in another tab or device, or over REST. */
  onRead(cb: (ids: string[]) => void): Unsubscribe;
  onUnreadCount(cb: (count: number) => void): Unsubscribe;
  onStatus(cb: (status: Status, info: StatusInfo) => void): Unsubscribe;
  onReady(cb: (frame: ReadyFrame) => void): Unsubscribe;
  /** Errors the client recovers from by itself (token provider, server `error` frames, refetch). */
  onError(cb: (error: unknown) => void): Unsubscribe;

  connect(): void;
  close(): void;

  /** Sends a `read` frame when the WebSocket is open, else (and always on SSE) POSTs to the user API. */
  markRead(ids: string | string[]): Promise<void>;
  /**
   * Web Push: ask permission, register the service worker, subscribe with the
   * service's VAPID key and register the subscription (docs/clients.md).
   * Rejects with NotifyError when unsupported, denied, or Web Push is off (404).
   */
  enablePush(options?: PushOptions): Promise<PushSubscriptionInfo>;
  /** Register the service worker and wire this page to it, without a prompt or a subscription. */
  attachPush(options?: PushOptions): Promise<ServiceWorkerRegistration>;
  /** Unregister this browser's push subscription; false when there was none. */
  disablePush(options?: PushOptions): Promise<boolean>;
  /** POST {"all": true}; resolves to how many changed. */
  markAllRead(): Promise<number>;
  /** GET /api/v1/me/notifications/unread-count (also updates `unread`). */
  unreadCount(): Promise<number>;
  /** GET /api/v1/me/notifications, newest first. */
  list(options?: { unread?: boolean; limit?: number; cursor?: string | null }): Promise<NotificationPage>;
  /** Fetch the newest `limit` and deliver the unseen ones to onNotification; newest first. */
  loadRecent(limit?: number): Promise<Notification[]>;
}

export default NotifyClient;

export interface PushOptions {
  /** URL of notify-sw.js on your origin; default "/static/notify/notify-sw.js". */
  serviceWorker?: string;
  /** The service worker's scope; default: its directory. */
  scope?: string;
}

/** A registered push subscription (POST /api/v1/me/push-subscriptions). */
export interface PushSubscriptionInfo {
  id: string;
  endpoint: string;
  created_at: string;
}

/** What notify-sw.js receives in each push (the encrypted payload). */
export interface PushPayload {
  id: string;
  type: string;
  title: string;
  body: string;
  data: Record<string, unknown>;
  created_at: string;
  /** Set when data was dropped and body shortened to fit 4 KiB: fetch the notification by id. */
  truncated?: true;
}
