"""Prometheus metrics (prometheus-client). Names are part of the contract."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

SOCKETS_OPEN = Gauge(
    "notify_sockets_open", "WebSocket connections and SSE streams open", multiprocess_mode="livesum"
)
ACCEPTED = Counter(
    "notify_notifications_accepted_total", "Notifications committed (one per recipient)"
)
DELIVERED = Counter(
    "notify_notifications_delivered_total", "Notification frames written to sockets"
)
DROPPED = Counter(
    "notify_notifications_dropped_total",
    "Live pushes lost (layer error, send buffer overflow); recovered through since",
)
REPLAYED = Counter(
    "notify_notifications_replayed_total", "Notification frames sent from the database"
)
RATE_LIMITED = Counter(
    "notify_rate_limited_total", "Requests or sockets refused by a rate limit", ["scope"]
)
PUBLISH_SECONDS = Histogram(
    "notify_publish_seconds", "Publish request time", buckets=_LATENCY_BUCKETS
)
DELIVERY_SECONDS = Histogram(
    "notify_delivery_seconds",
    "From commit to frame handed to the socket",
    buckets=_LATENCY_BUCKETS,
)

# Web Push (notifications/push/, docs/operations.md)
PUSH_SENT = Counter(
    "notify_push_sent_total",
    "Web Push outcomes: delivered (2xx), gone (404/410, subscription deleted), dropped "
    "(other 4xx, or out of TTL), retry (429/5xx/network, tried again), expired, "
    "online (auto: recipient connected), muted",
    ["result"],
)
PUSH_OUTBOX_DEPTH = Gauge(
    "notify_push_outbox_depth", "Pushes owed (outbox rows)", multiprocess_mode="livemax"
)
PUSH_OLDEST_OWED = Gauge(
    "notify_push_oldest_owed_seconds",
    "Age of the oldest owed push (since its notification was committed)",
    multiprocess_mode="livemax",
)
PUSH_HELD = Counter(
    "notify_push_held_seconds_total",
    "Time the push worker held back sends for live traffic (the event loop "
    "lagged while live frames were written, or live deliveries were late)",
)
PUSH_LATENCY = Histogram(
    "notify_push_latency_seconds",
    "From commit to the push service's 201",
    buckets=(*_LATENCY_BUCKETS, 30.0, 60.0, 300.0, 3600.0),
)

# Operator views (deploy/observability): what the contract's counters do not
# say. Label values are few and fixed, so the series count stays bounded.
PUBLISH_RESPONSES = Counter(
    "notify_publish_responses_total", "Publish answers by HTTP status", ["status"]
)
SOCKET_CLOSES = Counter(
    "notify_socket_closes_total",
    "Sockets the server closed, by close code (4008: too slow, 4401: token expired, "
    "1012: restart, 1008/1009: abuse, 1013: channel layer unavailable)",
    ["code"],
)
HANDSHAKES_REFUSED = Counter(
    "notify_handshakes_refused_total",
    "WebSocket handshakes refused, by reason (origin, token, path, shutting_down, unavailable)",
    ["reason"],
)

# The last /readyz answer (1: 200, 0: 503), as the kubelet's probe saw it; with
# several workers the most recent answer of any of them (the probe's view).
READY = Gauge(
    "notify_ready",
    "1 when the last /readyz answered 200, else 0",
    multiprocess_mode="livemostrecent",
)

# Zero series from the start, so rate() and alerts see them before the first event.
# The publish answers' series by status code, looked up once: ``labels()``
# takes a lock and builds its key on every call (1.6 us, where the
# series' own inc() is a fraction of that).
_publish_responses = {
    int(status): PUBLISH_RESPONSES.labels(status=status)
    for status in ("202", "400", "401", "413", "429", "500", "503")
}


def count_publish_response(status: int) -> None:
    series = _publish_responses.get(status)
    if series is None:
        series = _publish_responses[status] = PUBLISH_RESPONSES.labels(status=str(status))
    series.inc()


for _code in ("1008", "1009", "1011", "1012", "1013", "4008", "4401"):
    SOCKET_CLOSES.labels(code=_code)
for _reason in ("origin", "token", "path", "shutting_down", "unavailable"):
    HANDSHAKES_REFUSED.labels(reason=_reason)
