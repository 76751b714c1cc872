"""Settings, read once from the environment and validated at start-up.

Every knob is an environment variable (12-factor); see docs/configuration.md.
A misconfiguration raises ``ImproperlyConfigured`` while Django loads this
module, so ``uvicorn`` refuses to start with a message that says what to change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import environ

from notifications.credentials import PublisherKey
from notifications.push import config as push_config
from notifications.redis_clients import RedisSettings
from service import config, config_auth, config_redis

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Dev mode is the default so that a laptop needs no setup; production sets
# DEBUG=false and then every dev default below is refused.
DEBUG: bool = env.bool("DEBUG", default=True)

SECRET_KEY: str = config.secret_key(env, debug=DEBUG)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=config.DEV_HOSTS)
config.check_debug_hosts(debug=DEBUG, hosts=ALLOWED_HOSTS)
NOTIFY_ALLOWED_ORIGINS: list[str] | None = config.allowed_origins(env)

INSTALLED_APPS = [
    # The admin's apps are always installed, so `migrate` and `createsuperuser`
    # work whether or not the admin is served (NOTIFY_ADMIN_ENABLED below).
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "notifications.apps.NotificationsConfig",
    "api.apps.ApiConfig",
    "notifications.push.apps.PushConfig",
    "realtime.apps.RealtimeConfig",
]

# Only middleware that is async-capable: a sync one would push every request
# through a thread hop (measured: ~40 % fewer publishes/s).
MIDDLEWARE = [
    # Outermost, so that every response (also Django's own 400/404/500) gets the headers.
    "service.middleware.security_headers_middleware",
    "service.middleware.request_id_middleware",
    # CORS on every answer of the user API, errors included (realtime/cors.py).
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "service.urls"
ASGI_APPLICATION = "service.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": config.database(env, base_dir=BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

NOTIFY_REDIS: RedisSettings | None = config_redis.redis_settings(env)
CHANNEL_LAYERS = {"default": config_redis.channel_layer(env, NOTIFY_REDIS)}

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The request body limit is enforced by the publish parser (413), not by
# Django's generic 400.
# 6 MiB: the largest body the contract allows in compact JSON with raw UTF-8
# (10,000 recipients of 128 four-byte characters, 64 KiB of data) is 5.3 MB.
NOTIFY_MAX_BODY_BYTES: int = env.int("NOTIFY_MAX_BODY_BYTES", default=6 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = NOTIFY_MAX_BODY_BYTES

# name -> its PublisherKey entries (SHA-256 digests only, never the secret).
NOTIFY_API_KEYS: dict[str, tuple[PublisherKey, ...]] = config_auth.api_keys(env, debug=DEBUG)
NOTIFY_JWT = config_auth.jwt_settings(env, debug=DEBUG)
NOTIFY_PUBLISH_RATE: tuple[float, float] = config.rate(
    env.str("NOTIFY_PUBLISH_RATE", default="1000/s"), "NOTIFY_PUBLISH_RATE"
)
# Recipients per second per publisher key, beside the request rate: a publish
# costs one request and one token per recipient (docs/configuration.md).
NOTIFY_PUBLISH_RECIPIENT_RATE: tuple[float, float] = config.recipient_rate(
    env.str("NOTIFY_PUBLISH_RECIPIENT_RATE", default="10000/s")
)
NOTIFY_RETENTION_DAYS: int = env.int("NOTIFY_RETENTION_DAYS", default=30)
NOTIFY_WS_MAX_FRAME_BYTES: int = env.int("NOTIFY_WS_MAX_FRAME_BYTES", default=64 * 1024)
NOTIFY_WS_FRAME_RATE: tuple[float, float] = config.rate(
    env.str("NOTIFY_WS_FRAME_RATE", default="20/s"), "NOTIFY_WS_FRAME_RATE"
)
NOTIFY_WS_SEND_QUEUE: int = env.int("NOTIFY_WS_SEND_QUEUE", default=1000)
NOTIFY_DRAIN_SECONDS: float = env.float("NOTIFY_DRAIN_SECONDS", default=5.0)
# /demo (api/demo.py): a page that mints user tokens; dev mode only by default.
NOTIFY_DEMO_ENABLED: bool = env.bool("DEMO_ENABLED", default=DEBUG)

config_redis.check_single_process_layer(CHANNEL_LAYERS["default"])

# Web Push (notifications/push/, docs/push.md): None = off, no VAPID_PRIVATE_KEY.
NOTIFY_PUSH: push_config.PushSettings | None = push_config.push_settings(env)
# The push worker inside every service process (off when a separate
# `manage.py push_worker` Deployment does the sending).
NOTIFY_PUSH_WORKER_IN_PROCESS: bool = env.bool("NOTIFY_PUSH_WORKER_IN_PROCESS", default=True)

# The Django admin at /admin/ for staff users (docs/operations.md, "Admin"): on
# in dev mode, off in production unless enabled. Its middleware runs for
# /admin/ only; its cookies are scoped to /admin/.
NOTIFY_ADMIN_ENABLED: bool = env.bool("NOTIFY_ADMIN_ENABLED", default=DEBUG)
if NOTIFY_ADMIN_ENABLED:
    MIDDLEWARE.append("service.admin_middleware.admin_only_middleware")
# The admin's checks look for its middleware in MIDDLEWARE; it runs in the above.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]
SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = "/admin/"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Strict"
SESSION_COOKIE_AGE = 8 * 3600

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# CORS (django-cors-headers) for the user API and push subscriptions: which
# origin may call is decided by realtime.cors.django_check (ALLOWED_ORIGINS,
# the socket's rule), so the library's own origin list stays empty.
CORS_URLS_REGEX = r"^/api/v1/(me|push)/"
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = ("authorization", "content-type", "last-event-id")
CORS_EXPOSE_HEADERS = ("Retry-After", "X-Request-ID")
CORS_ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
    ],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Notification push service",
    "DESCRIPTION": "Publish notifications over REST; receive them over WebSocket "
    "at /ws/notifications (see docs/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # POST /api/v1/notifications is served outside the URLconf (api/publish_asgi.py).
    "PREPROCESSING_HOOKS": ["api.schema.add_asgi_operations"],
}

# Log lines go to stderr (logging.StreamHandler's default).
NOTIFY_LOG_FORMAT: str = config.log_format(env, debug=DEBUG, at_terminal=sys.stderr.isatty())
LOGGING = config.logging_config(env, log_format=NOTIFY_LOG_FORMAT)
