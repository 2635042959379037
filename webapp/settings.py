"""preftune settings: every value that differs between machines is read from the environment here.

Development defaults need no services: SQLite and kombu's filesystem broker under ``var/``.
Production sets DATABASE_URL, CELERY_BROKER_URL, DJANGO_SECRET_KEY and DJANGO_DEBUG=0.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


VAR_DIR = Path(env_str("PREFTUNE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", True)
if DEBUG:
    # Only ever used on a developer machine: production (DEBUG off) must set its own key.
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-preftune-do-not-deploy")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "webapp.apps.PreftuneAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "labeling",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.friendly_errors.FriendlyErrorPagesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "webapp.db_unavailable.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
ASGI_APPLICATION = "webapp.asgi.application"

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
            ],
        },
    },
]

_database_url = os.environ.get("DATABASE_URL", "")
if _database_url:
    # Health checks: a persistent connection killed while idle (database restart, failover) is replaced at the
    # start of the next request instead of failing it.
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "preftune.sqlite3",
            # The web server and the worker share the file: wait for a lock rather than fail.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["webapp.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploads: imports larger than this are refused with a clear message before parsing.
PREFTUNE_IMPORT_MAX_BYTES = env_int("PREFTUNE_IMPORT_MAX_BYTES", 10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# How long an annotator holds a task they were shown before another annotator may take the slot.
PREFTUNE_LEASE_SECONDS = env_int("PREFTUNE_LEASE_SECONDS", 600)
PREFTUNE_ARTIFACTS_DIR = Path(env_str("PREFTUNE_ARTIFACTS_DIR", str(VAR_DIR / "artifacts")))
PREFTUNE_MODELS_DIR = Path(env_str("PREFTUNE_MODELS_DIR", str(VAR_DIR / "models")))
# Prompts a gpu worker generates for at once: larger is faster until memory runs out (GPUs take 64 and more).
PREFTUNE_GENERATION_BATCH_SIZE = env_int("PREFTUNE_GENERATION_BATCH_SIZE", 16)
# The engine a gpu worker generates with: vLLM (CUDA, requirements-vllm.txt), transformers, or auto (vLLM where it
# can run, else transformers). Asked for by name where it cannot run, a job fails saying why.
# training.trainer.generation_backends.BACKENDS, spelled out: the settings import no app code (tests/test_settings.py
# checks the two agree).
GENERATION_BACKENDS = ("auto", "transformers", "vllm")
PREFTUNE_GENERATION_BACKEND = env_choice("PREFTUNE_GENERATION_BACKEND", "auto", GENERATION_BACKENDS)

# Celery: JSON only, late acks so a task whose worker dies is redelivered.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("gpu"))
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {"workers.run_train": {"queue": "gpu"}}
CELERY_BEAT_SCHEDULE = {
    # The watchdog threads do this without waiting on a queue; these remain for a deployment that runs beat and
    # a worker for the default queue. A message not taken within its period is dropped, not piled up behind work.
    "reap-stale-runs": {"task": "workers.runs_reap_stale", "schedule": 30.0, "options": {"expires": 30}},
    "requeue-lost-runs": {"task": "workers.runs_requeue_lost", "schedule": 60.0, "options": {"expires": 60}},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# A running run whose heartbeat is older than this is failed as "worker died" (heartbeats come every 10 s).
PREFTUNE_RUN_STALE_SECONDS = env_int("PREFTUNE_RUN_STALE_SECONDS", 120)
# The watchdog thread (training/watchdog.py) in every worker and web process; off only where a test wants no
# reaping behind its back.
PREFTUNE_WATCHDOG = env_bool("PREFTUNE_WATCHDOG", True)
# Django's debugging 404 page (every URL pattern) instead of the user's "Not found", with DEBUG on.
PREFTUNE_DEBUG_404 = env_bool("PREFTUNE_DEBUG_404", False)
PREFTUNE_WATCHDOG_SECONDS = env_int("PREFTUNE_WATCHDOG_SECONDS", 15)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "client_errors_without_traceback": {"()": "webapp.request_logging.ClientErrorsWithoutTraceback"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "mail_admins": {
            "level": "ERROR", "filters": ["require_debug_false"], "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's default config gives "django" a console handler of its own (with DEBUG on) and lets its records
        # reach the root's too, so each one was printed twice. Keep only its mail to admins.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        # A refused request (403, 404) is one line; only server errors carry a traceback.
        "django.request": {"filters": ["client_errors_without_traceback"]},
    },
}

VAR_DIR.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
