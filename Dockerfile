# syntax=docker/dockerfile:1
#
# notify-push production image (docs/deploy.md).
#
#   docker build -t notify-push:0.1.0 .
#   docker run --read-only --tmpfs /tmp -p 8000:8000 --env-file prod.env notify-push:0.1.0
#
# The default command serves HTTP + WebSocket on :8000 (one uvicorn process;
# scale with replicas). Migrations never run at start: run them as a separate
# step, e.g. the migrate Job: `python manage.py migrate --noinput`.
# The image defaults to DEBUG=false, so it refuses to start until
# DJANGO_SECRET_KEY, JWT_SECRET (or JWT_PUBLIC_KEY) and friends are set
# (docs/configuration.md).
#
# Both stages use the same base, pinned by exact version (BASE). Where no
# registry is reachable, build on a base made from Debian's own packages:
# `--build-arg BASE=localhost/notify-push-base:bookworm`, made by
# scripts/build-image.sh (docs/deploy.md, "Building the image without Docker").
ARG BASE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${BASE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# The runtime dependencies of pyproject.toml (not the dev or bench extras),
# each at the version requirements.lock pins (the lock pins every transitive
# dependency too). Wheels only: the final image has no compiler, and neither
# does this stage. One exception: http-ece (Web Push's RFC 8291 encryption)
# publishes no wheel; its sdist is one pure-Python module, built without a
# compiler.
COPY pyproject.toml requirements.lock /build/
RUN python -c "import tomllib; deps = tomllib.load(open('/build/pyproject.toml', 'rb'))['project']['dependencies']; open('/build/runtime.txt', 'w').write(chr(10).join(deps) + chr(10))" \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=http-ece \
        -r /build/runtime.txt -c /build/requirements.lock \
    && /opt/venv/bin/pip check

# The application is not pip-installed: it runs from /app (BASE_DIR), where
# manage.py and `uvicorn service.asgi:application` find it.
COPY manage.py ./
COPY service ./service
COPY notifications ./notifications
COPY api ./api
COPY realtime ./realtime

# Bake STATIC_ROOT (/app/staticfiles) and the bytecode in at build time: the
# root filesystem is read-only at run time. DEBUG=true only so that settings
# load without production secrets; nothing of it reaches the final image.
RUN DEBUG=true /opt/venv/bin/python manage.py collectstatic --noinput --verbosity 0 \
    && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash \
        service notifications api

# ---------------------------------------------------------------- runtime
FROM ${BASE} AS runtime

LABEL org.opencontainers.image.title="notify-push" \
      org.opencontainers.image.description="Notification push service: publish over REST, push over WebSocket." \
      org.opencontainers.image.licenses="MIT"

# A fixed, non-root UID/GID (the manifests' runAsUser/runAsGroup).
RUN groupadd --system --gid 10001 notify \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin notify

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# The app turns SIGTERM into a drain (readyz 503, sockets closed with 1012 over
# NOTIFY_DRAIN_SECONDS) before uvicorn finishes requests in flight and exits.
STOPSIGNAL SIGTERM

# Kubernetes ignores this (it uses the probes); for docker / compose. It sends
# Host: localhost, so ALLOWED_HOSTS must allow localhost (or be *).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=3); sys.exit(0 if r.status == 200 else 1)"]

# One process per container. --proxy-headers: the scheme (https/wss) and the
# client address come from the ingress's X-Forwarded-* headers (the
# NetworkPolicy only lets the ingress controller and in-namespace clients in).
# Keep-alive above ingress-nginx's upstream keep-alive (60 s) so the proxy
# never reuses a connection uvicorn is closing. Graceful shutdown (after the
# drain) is bounded: terminationGracePeriodSeconds covers preStop + drain + it.
# --ws: uvicorn's websockets-sansio with less state per open socket
# (service/ws_protocol.py; docs/performance.md, Memory per idle socket).
CMD ["uvicorn", "service.asgi:application", \
     "--host", "0.0.0.0", "--port", "8000", \
     "--loop", "uvloop", "--http", "httptools", "--ws", "service.ws_protocol:LeanWebSocketProtocol", \
     "--ws-max-size", "65536", \
     "--lifespan", "on", \
     "--proxy-headers", "--forwarded-allow-ips", "*", \
     "--timeout-keep-alive", "75", \
     "--timeout-graceful-shutdown", "10", \
     "--no-server-header"]
