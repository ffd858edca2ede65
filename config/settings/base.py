"""Settings shared by every environment. Everything a deployment changes comes
from the environment (see .env.example); defaults give the embedded demo stack:
SQLite, a filesystem Celery broker and a file-based cache, no servers needed."""

from decimal import Decimal
from pathlib import Path

import environ

from recommender.rl.config import DQNConfig

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env", overwrite=False)

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-demo-key-change-me-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------
# Apps
# ---------------------------------------------------------------------------
DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
]
THIRD_PARTY_APPS = [
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
]
LOCAL_APPS = [
    "shop",
    "recommender",
    "recommender.dashboard",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    # /healthz, answered before the host check and the HTTPS redirect.
    "config.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every shopper has a session from the first request (cart, recommendations).
    "shop.middleware.ShopperSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.context_processors.storefront",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database: persistent connections (a connection per request costs throughput)
# ---------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the Celery worker writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
if IS_POSTGRES and env.bool("DJANGO_DB_PREPARED_STATEMENTS", default=True):
    # The carousel's two statements are planned once per connection
    # (recommender/db.py); Django's own queries are never prepared.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 0)

# ---------------------------------------------------------------------------
# Redis: broker and cache. Without REDIS_URL everything stays embedded.
# Timeouts are bounded: a paused Redis otherwise blocks requests for minutes.
# ---------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
                "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
                "retry_on_timeout": False,
            },
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="storefront"),
        }
    }
else:
    CACHES = {
        "default": {
            # Shared by the web process and the Celery worker, unlike LocMemCache.
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# ---------------------------------------------------------------------------
# Sessions, auth
# ---------------------------------------------------------------------------
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
LOGIN_URL = "shop:login"
LOGIN_REDIRECT_URL = "shop:home"
LOGOUT_REDIRECT_URL = "shop:home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# ---------------------------------------------------------------------------
# Static and media (whitenoise serves static; no CDN anywhere)
# ---------------------------------------------------------------------------
STATIC_URL = "/static/"
# An empty value (a blank line in .env) means the default, never "" (the work tree).
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default="") or str(BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_URL = "/media/"
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT", default="") or str(BASE_DIR / "media")
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=True)

# ---------------------------------------------------------------------------
# The shop: delivery fee and order receipts
# ---------------------------------------------------------------------------
# An order whose goods cost SHOP_FREE_DELIVERY_FROM or more ships free; below
# that it pays SHOP_DELIVERY_FEE (shop.selectors.DeliveryRule). An empty
# SHOP_FREE_DELIVERY_FROM means delivery is never free; a fee of 0, always.
SHOP_DELIVERY_FEE = Decimal(env.str("SHOP_DELIVERY_FEE", default="4.95"))
SHOP_FREE_DELIVERY_FROM = (
    Decimal(free_from) if (free_from := env.str("SHOP_FREE_DELIVERY_FROM", default="75")) else None
)
# Receipts go out by e-mail after checkout. EMAIL_URL is django-environ's
# form: smtp+tls://user:password@smtp.example.com:587, consolemail://, ...
vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="Larkhill <orders@larkhill.example>")

# ---------------------------------------------------------------------------
# Django REST framework and the OpenAPI schema
# ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Session auth enforces CSRF for signed-in shoppers; the shop's own
        # authentication class enforces it for anonymous shoppers as well.
        "shop.api.authentication.CsrfEnforcedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    # DRF's parsers, with a nesting limit on JSON (deep nesting was a 500).
    "DEFAULT_PARSER_CLASSES": [
        "shop.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "shop.api.exceptions.json_exception_handler",
    # Request budgets per visit and per client address (shop/throttling.py):
    # client events and carousel clicks; logged impressions (API and HTML
    # carousels); cart writes and checkout.
    "DEFAULT_THROTTLE_RATES": {
        "events": env("API_EVENTS_THROTTLE", default="120/min"),
        "events_address": env("API_EVENTS_ADDRESS_THROTTLE", default="1200/min"),
        "recommendations": env("API_RECOMMENDATIONS_THROTTLE", default="120/min"),
        "recommendations_address": env("API_RECOMMENDATIONS_ADDRESS_THROTTLE", default="1200/min"),
        "cart": env("API_CART_THROTTLE", default="60/min"),
        "cart_address": env("API_CART_ADDRESS_THROTTLE", default="600/min"),
    },
    # How many reverse proxies in front of the app append to X-Forwarded-For:
    # the per-address budgets count the address the nearest one saw. 0: use
    # REMOTE_ADDR and ignore the header (a client could forge it).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 24,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Storefront API",
    "DESCRIPTION": "Catalog, cart, checkout and learned recommendations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from static/ (the sidecar package), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ---------------------------------------------------------------------------
# Celery: Redis when REDIS_URL is set, otherwise a filesystem broker that
# needs no server (a real worker and beat still run).
# ---------------------------------------------------------------------------
CELERY_BROKER_DIR = Path(env("CELERY_BROKER_DIR", default="") or VAR_DIR / "broker")
if REDIS_URL:
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
        "visibility_timeout": 3600,
    }
else:
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # kombu's default is "control" in the working directory (the project root).
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem"):
        # kombu's filesystem transport expects its folders to exist; web,
        # worker and beat all import these settings, so whichever starts first
        # creates them.
        for folder in ("queue", "processed", "control"):
            (CELERY_BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# ---------------------------------------------------------------------------
# Recommender: serving, rewards, the learning loop and its schedules.
# Every value can be set from the environment under the same name.
# ---------------------------------------------------------------------------
RECOMMENDER_DEFAULT_K = env.int("RECOMMENDER_DEFAULT_K", default=8)
RECOMMENDER_EPSILON = env.float("RECOMMENDER_EPSILON", default=0.1)
RECOMMENDER_RELOAD_SECONDS = env.float("RECOMMENDER_RELOAD_SECONDS", default=10.0)
# Each web process reports the version it serves (the dashboard lists them) when
# that changes, and at least this often.
RECOMMENDER_HEARTBEAT_SECONDS = env.float("RECOMMENDER_HEARTBEAT_SECONDS", default=30.0)
RECOMMENDER_ELIGIBILITY_TTL = env.float("RECOMMENDER_ELIGIBILITY_TTL", default=5.0)
# A carousel item says "Because you viewed X" when X alone raises the item's Q
# over an empty session by more than this (in reward units; a click earns 1).
RECOMMENDER_REASON_MIN_CONTRIBUTION = env.float("RECOMMENDER_REASON_MIN_CONTRIBUTION", default=0.05)
RECOMMENDER_ATTRIBUTION_WINDOW = env.int("RECOMMENDER_ATTRIBUTION_WINDOW", default=600)
RECOMMENDER_SESSION_IDLE = env.int("RECOMMENDER_SESSION_IDLE", default=900)
RECOMMENDER_REWARD_CLICK = env.float("RECOMMENDER_REWARD_CLICK", default=1.0)
RECOMMENDER_REWARD_ADD_TO_CART = env.float("RECOMMENDER_REWARD_ADD_TO_CART", default=3.0)
RECOMMENDER_REWARD_PURCHASE = env.float("RECOMMENDER_REWARD_PURCHASE", default=5.0)
RECOMMENDER_REWARD_PURCHASE_PER_UNIT_PRICE = env.float(
    "RECOMMENDER_REWARD_PURCHASE_PER_UNIT_PRICE", default=0.02
)
# Clicks on more items of one carousel are kept but earn nothing (README:
# "Security and reliability" has every reward rule).
RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION = env.int(
    "RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION", default=2
)
# "per_item": Q per shown item, slates filled greedily by it (recommender/rl/agent.py);
# "slateq": slates valued with a learned click model (recommender/rl/slateq.py).
# per_item is the default: it learns more from the first few hundred sessions
# (see the README's "Slates" note).
RECOMMENDER_AGENT = env.str("RECOMMENDER_AGENT", default="per_item")
# The learner's hyperparameters default to DQNConfig's (recommender/rl/config.py), so
# the RL core used on its own trains as the store does.
_dqn_defaults = DQNConfig()
RECOMMENDER_GAMMA = env.float("RECOMMENDER_GAMMA", default=_dqn_defaults.gamma)
RECOMMENDER_TRAIN_STEPS = env.int("RECOMMENDER_TRAIN_STEPS", default=300)
# Seed of each training run's random draws (replay sampling, exploration);
# unset, each run draws one. Either way the run records it.
RECOMMENDER_TRAIN_SEED = env.int("RECOMMENDER_TRAIN_SEED", default=None)
RECOMMENDER_REPLAY_WINDOW = env.int("RECOMMENDER_REPLAY_WINDOW", default=50_000)
RECOMMENDER_MIN_TRANSITIONS = env.int("RECOMMENDER_MIN_TRANSITIONS", default=500)
RECOMMENDER_MAX_ABS_REWARD = env.float(
    "RECOMMENDER_MAX_ABS_REWARD", default=_dqn_defaults.max_abs_reward
)
RECOMMENDER_OPE_MARGIN = env.float("RECOMMENDER_OPE_MARGIN", default=0.05)
# Below this effective sample size an off-policy estimate rests on too few logged
# impressions to reject a version on (the guard passes and says so).
RECOMMENDER_OPE_MIN_ESS = env.float("RECOMMENDER_OPE_MIN_ESS", default=30.0)
RECOMMENDER_OPE_IMPRESSIONS = env.int("RECOMMENDER_OPE_IMPRESSIONS", default=5_000)
# A candidate whose top-k, over recent logged states with context, is on average
# at least this similar (Jaccard) to the top-k it gives a session with no context
# ignores its state: it is kept, not activated (recommender/learning/publishing.py). One item
# of eight swapped gives 7/9: below 0.8, the state changes about an item or more.
RECOMMENDER_PERSONALISATION_MAX_JACCARD = env.float(
    "RECOMMENDER_PERSONALISATION_MAX_JACCARD", default=0.8
)
RECOMMENDER_PERSONALISATION_STATES = env.int("RECOMMENDER_PERSONALISATION_STATES", default=300)
RECOMMENDER_AUTO_ACTIVATE = env.bool("RECOMMENDER_AUTO_ACTIVATE", default=True)
# Where the database has no session locks (SQLite), the trainer lock is a lease
# its holder renews every third of this; a dead holder's lease lapses after it.
RECOMMENDER_TRAINER_LEASE_SECONDS = env.int("RECOMMENDER_TRAINER_LEASE_SECONDS", default=60)
# Seconds between runs of each beat task (stored in django-celery-beat on
# migrate; admins edit them in the admin afterwards).
RECOMMENDER_SCHEDULE_BUILD_TRANSITIONS = env.int(
    "RECOMMENDER_SCHEDULE_BUILD_TRANSITIONS", default=60
)
RECOMMENDER_SCHEDULE_TRAIN = env.int("RECOMMENDER_SCHEDULE_TRAIN", default=300)
RECOMMENDER_SCHEDULE_SYNC_TARGET = env.int("RECOMMENDER_SCHEDULE_SYNC_TARGET", default=600)
RECOMMENDER_SCHEDULE_ROLLUP = env.int("RECOMMENDER_SCHEDULE_ROLLUP", default=120)
SHOP_CAROUSEL_PROVIDER = env(
    "SHOP_CAROUSEL_PROVIDER", default="recommender.serving.carousels.carousel_provider"
)
