"""Local development and `make demo`: debug on, everything embedded by default."""

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK, VAR_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
# Serve collected files without `collectstatic` while developing.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Receipts are written as files under var/mail/ unless EMAIL_URL says otherwise.
if not env("EMAIL_URL", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")

# The demo should visibly learn within minutes of `simulate_traffic`: close
# attribution windows and sessions sooner and train more often than production.
RECOMMENDER_ATTRIBUTION_WINDOW = env.int("RECOMMENDER_ATTRIBUTION_WINDOW", default=120)
RECOMMENDER_SESSION_IDLE = env.int("RECOMMENDER_SESSION_IDLE", default=180)
RECOMMENDER_SCHEDULE_TRAIN = env.int("RECOMMENDER_SCHEDULE_TRAIN", default=120)
RECOMMENDER_SCHEDULE_SYNC_TARGET = env.int("RECOMMENDER_SCHEDULE_SYNC_TARGET", default=240)

# The demo's terminal (honcho) shows what the store and its learning loop do,
# not every request and task: request lines only for errors, Celery's per-task
# "received"/"succeeded" lines off, and kombu's notice that the filesystem
# broker has no host name silenced. DJANGO_LOG_LEVEL=DEBUG shows everything.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
if env("DJANGO_LOG_LEVEL", default="INFO") != "DEBUG":
    LOGGING["loggers"].update(  # noqa: F405
        {
            "django.server": {"level": "WARNING"},
            "celery.app.trace": {"level": "WARNING"},
            "celery.worker.strategy": {"level": "WARNING"},
            "kombu.connection": {"level": "ERROR"},
        }
    )

# `simulate_traffic` sends every simulated shopper from 127.0.0.1: the
# per-address budgets must leave room for all of them (per-visit ones still hold).
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
        "events_address": env("API_EVENTS_ADDRESS_THROTTLE", default="60000/min"),
        "recommendations_address": env("API_RECOMMENDATIONS_ADDRESS_THROTTLE", default="60000/min"),
        "cart_address": env("API_CART_ADDRESS_THROTTLE", default="60000/min"),
    },
}
