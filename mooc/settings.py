"""Django settings for Mechanical MOOC, read from the environment.

Every variable is documented in `.env.example`. Defaults are safe for a developer's
machine (SQLite, an embedded broker, emails to a local outbox, all under `var/`);
production sets DEBUG off and must then name SECRET_KEY and SITE_URL itself.
"""

import datetime
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF

from mooc.environment import ConfigurationError, Environment

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# A developer's `.env` (written by `make run`) is read unless the environment says not to;
# the test suite says not to, so that a local `.env` cannot change what tests see.
if Environment().bool("DJANGO_READ_DOT_ENV", default=True):
    environ.Env.read_env(BASE_DIR / ".env")

env = Environment()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.secret_key(debug=DEBUG)
# Rotating the key: put the old one here (comma-separated) for as long as links signed with it
# should work. Every email carries signed unsubscribe and manage links, so keep old keys for
# months, not days.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# The site's own address: every link in an email is absolute and starts here. With DEBUG
# off it must be https, unless ALLOW_HTTP_SITE_URL says this production-like run is served
# over plain http on purpose (the test suite, the benchmarks, a gunicorn on one's own machine).
ALLOW_HTTP_SITE_URL = env.bool("ALLOW_HTTP_SITE_URL", default=False)
SITE_URL = env.site_url(debug=DEBUG, allow_http=ALLOW_HTTP_SITE_URL)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[urlsplit(SITE_URL).hostname, "localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "anymail",
    "axes",
    "csp",
    "django_celery_beat",
    "mooc",
    "cohorts",
    "signups",
    "scheduler",
    "groupmail",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "mooc.content_security_policy.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# The ledger's covering index (Index.include, scheduler 0014) is PostgreSQL's; SQLite, the local
# default, builds it as a plain index, which Django would otherwise warn about at every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

ROOT_URLCONF = "mooc.urls"
WSGI_APPLICATION = "mooc.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.database(default_url=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web server, the worker and beat share one SQLite file in development:
    # WAL lets them read while one writes, IMMEDIATE takes the write lock up front
    # (no "database is locked" halfway through a transaction), and the timeout waits for it.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database that accepts connections but never answers must not hang a request (or
    # /healthz) until gunicorn kills the worker: connecting gives up after this many seconds.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=2, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits and locks later on): Redis when REDIS_URL is set ---------------
REDIS_URL = env.url("REDIS_URL", default="", schemes=("redis", "rediss"))
# A Redis that is down or hangs costs a request at most these seconds (then the rate limits
# let the signup through: signups.services.signup_rate_limited).
REDIS_SOCKET_TIMEOUT = env.int("REDIS_SOCKET_TIMEOUT", default=1, minimum=1)
# Production shares its cache: a per-process cache would silently multiply the signup limits
# and the provider's send rate by the number of processes. ALLOW_LOCAL_CACHE is for a
# production-like run on one's own machine (the test suite, the benchmarks).
ALLOW_LOCAL_CACHE = env.bool("ALLOW_LOCAL_CACHE", default=False)
if not DEBUG and not REDIS_URL and not ALLOW_LOCAL_CACHE:
    raise ConfigurationError(
        "REDIS_URL", "is not set (required when DEBUG is off: every web process and worker must share the rate limits;"
        " ALLOW_LOCAL_CACHE=true only for a local production-like run)",
    )
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Logins: failed admin logins are throttled (django-axes; mooc/login_throttle.py) -------
AUTHENTICATION_BACKENDS = [
    "mooc.login_throttle.LoginThrottleBackend",  # first: refuses while locked out
    "django.contrib.auth.backends.ModelBackend",
]
ADMIN_LOGIN_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5, minimum=1)
ADMIN_LOGIN_LOCKOUT_MINUTES = env.int("ADMIN_LOGIN_LOCKOUT_MINUTES", default=15, minimum=1)
AXES_FAILURE_LIMIT = ADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = datetime.timedelta(minutes=ADMIN_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a good login forgets the typos before it
AXES_CLIENT_IP_CALLABLE = "mooc.login_throttle.login_client_ip"
AXES_LOCKOUT_CALLABLE = "mooc.login_throttle.lockout_response"
AXES_VERBOSE = False  # no banner on every manage.py command; failures and lockouts are still logged

# --- Passwords, i18n, time --------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files: shipped in the repo, served by WhiteNoise, never from a CDN ----------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            # Hashed names let browsers cache for a year; they need `collectstatic` first.
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Signups: abuse limits --------------------------------------------------------------------
SIGNUP_LIMIT_PER_IP_PER_HOUR = env.int("SIGNUP_LIMIT_PER_IP_PER_HOUR", default=20, minimum=1)
SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR = env.int("SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR", default=5, minimum=1)
# How many reverse proxies (load balancer, nginx) stand in front of the site and append to
# X-Forwarded-For; 0 trusts no such header and takes the connection's address.
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)

# --- Signups: organizers' CSV imports (signups/imports.py, signups/import_jobs.py) --------------
# The largest file the admin and `import_learners` accept, in bytes (about 400,000 rows).
LEARNER_IMPORT_MAX_BYTES = env.int("LEARNER_IMPORT_MAX_BYTES", default=20 * 1024 * 1024, minimum=1)
# Rows per batch: each batch is one transaction, so this bounds how long an import holds the
# learners' and the cohort's locks (on SQLite, the database's write lock) at a time.
LEARNER_IMPORT_BATCH_SIZE = env.int("LEARNER_IMPORT_BATCH_SIZE", default=500, minimum=1)

# --- Security in production (README, "Security") ---------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG and SITE_URL.startswith("https://"):
    # TLS ends at the reverse proxy, which tells gunicorn so in X-Forwarded-Proto (it must
    # set that header itself, overwriting any a client sent).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # false when the proxy redirects http to https itself.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancers and uptime checks ask gunicorn directly, over plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 60 * 60)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # Preloading binds the whole registrable domain (example.org, not just mooc.example.org)
    # to https in browsers for months: its owner opts in; the site does not by default.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    # `check --deploy` reminds of what these settings chose not to do; the choices are made here.
    SILENCED_SYSTEM_CHECKS = [
        *SILENCED_SYSTEM_CHECKS,
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
        *([] if SECURE_SSL_REDIRECT else ["security.W008"]),
    ]

# Content-Security-Policy on every page (mooc/content_security_policy.py widens it for the
# admin and the development outbox): the public pages load only this site's own files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# --- Email ------------------------------------------------------------------------------
# Development writes every message to var/outbox/ as an .eml file (see /dev/outbox/);
# production names an Anymail backend, e.g. anymail.backends.mailgun.EmailBackend.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="scheduler.outbox.OutboxEmailBackend")
EMAIL_OUTBOX_DIR = Path(env.str("EMAIL_OUTBOX_DIR", default=str(VAR_DIR / "outbox")))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Mechanical MOOC <mooc@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# Anymail's settings, e.g. ANYMAIL_MAILGUN_API_KEY -> ANYMAIL["MAILGUN_API_KEY"].
ANYMAIL = env.prefixed("ANYMAIL_")
# The providers post their tracking events to /anymail/<esp>/tracking/ (scheduler/webhooks.py):
# without a secret anyone could post bounces and complaints there and stop learners' mail.
if not DEBUG and EMAIL_BACKEND.startswith("anymail.") and ":" not in ANYMAIL.get("WEBHOOK_SECRET", ""):
    raise ConfigurationError(
        "ANYMAIL_WEBHOOK_SECRET",
        "must be set to user:password when an Anymail backend sends (it protects the tracking webhooks; "
        "put it in the webhook URLs you give the provider: https://user:password@<site>/anymail/<esp>/tracking/)",
    )

# --- Group mail (groupmail/) ---------------------------------------------------------------
# Each study group is a small mailing list at <group-slug>@GROUP_MAIL_DOMAIN: the provider's
# inbound webhook (/anymail/<esp>/inbound/), or in development the local SMTP listener
# (manage.py group_mail_smtpd, on GROUP_MAIL_SMTP_PORT), hands us what members send; a worker
# relays it to the other members. Empty: group mail is off (on by default in development). In
# production, point the domain's MX records at the provider's inbound service.
GROUP_MAIL_DOMAIN = env.str("GROUP_MAIL_DOMAIN", default="groups.localhost" if DEBUG else "")
GROUP_MAIL_SMTP_HOST = env.str("GROUP_MAIL_SMTP_HOST", default="127.0.0.1")
GROUP_MAIL_SMTP_PORT = env.int("GROUP_MAIL_SMTP_PORT", default=2525)
# A message larger than this is refused (the sender is told); an attachment larger than the
# other is replaced by a note in every copy.
GROUP_MAIL_MAX_MESSAGE_BYTES = env.int("GROUP_MAIL_MAX_MESSAGE_BYTES", default=10 * 1024 * 1024)
GROUP_MAIL_MAX_ATTACHMENT_BYTES = env.int("GROUP_MAIL_MAX_ATTACHMENT_BYTES", default=2 * 1024 * 1024)
# More than this in an hour, from one member or to one group, is held for an organizer's review.
GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR = env.int("GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR", default=10)
GROUP_MAIL_GROUP_MESSAGES_PER_HOUR = env.int("GROUP_MAIL_GROUP_MESSAGES_PER_HOUR", default=30)

# --- Celery -----------------------------------------------------------------------------
# Our tasks are idempotent (the delivery ledger decides what is sent), so a task is
# acknowledged only after it ran, and re-queued if its worker dies mid-way.
CELERY_BROKER_URL = env.broker_url(default_url="filesystem://")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(60, CELERY_TASK_TIME_LIMIT // 10)
# The longest delay a task waits before a retry. Redis re-delivers any message not acknowledged
# within the visibility timeout, and a task waiting for its retry holds its message unacknowledged,
# so the timeout must outlast the longest retry delay plus a run: otherwise a retry runs twice.
TASK_RETRY_MAX_DELAY = env.int("TASK_RETRY_MAX_DELAY", default=60 * 60, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": TASK_RETRY_MAX_DELAY + 2 * CELERY_TASK_TIME_LIMIT}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Web requests queue tasks: a Redis that accepts connections and never answers must cost a
    # request seconds (then the sweeper queues its email), not gunicorn's timeout. Longer than
    # the one second a worker's BRPOP waits.
    BROKER_SOCKET_TIMEOUT = env.int("BROKER_SOCKET_TIMEOUT", default=3, minimum=2)
    CELERY_BROKER_TRANSPORT_OPTIONS |= {"socket_timeout": BROKER_SOCKET_TIMEOUT, "socket_connect_timeout": BROKER_SOCKET_TIMEOUT}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded development broker: messages are files in one folder under var/.
    BROKER_DIR = VAR_DIR / "broker"
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
    }
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The test suite runs tasks in its own process, at once (pytest.ini); tests that start real
# workers turn it off for themselves (mooc/testing/fixtures.py). Never in production: a web
# request would send the email itself again.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER  # a task's bug fails the test that ran it

# Three queues, one worker each (README): periodic jobs on the default queue, `celery`; the
# weekly send chunks on DELIVERY_QUEUE; and on TRANSACTIONAL_QUEUE the emails someone is waiting
# for (a learner's confirmation or manage link, a staff member's test send), which must not wait
# behind a week's backlog of chunks, nor hold up the periodic jobs while a provider hangs.
CELERY_TASK_DEFAULT_QUEUE = "celery"  # Celery's own default, named: the heartbeats and the README use it
DELIVERY_QUEUE = env.str("DELIVERY_QUEUE", default="mail")
TRANSACTIONAL_QUEUE = env.str("TRANSACTIONAL_QUEUE", default="transactional")
# Applying the providers' tracking events: short tasks, with the periodic jobs by default.
TRACKING_EVENTS_QUEUE = env.str("TRACKING_EVENTS_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)
# Screening members' messages to their groups (groupmail): short tasks, likewise. Their relayed
# copies go out on DELIVERY_QUEUE, like the weekly emails; the notices to refused senders on
# TRANSACTIONAL_QUEUE.
GROUP_MAIL_QUEUE = env.str("GROUP_MAIL_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)
# Every queue some worker must serve. Beat sends each its own heartbeat (mooc/celery.py), so a
# stopped `mail` worker shows on /healthz and in the admin as plainly as a stopped jobs worker.
WORKER_QUEUES = list(dict.fromkeys([CELERY_TASK_DEFAULT_QUEUE, DELIVERY_QUEUE, TRANSACTIONAL_QUEUE, TRACKING_EVENTS_QUEUE, GROUP_MAIL_QUEUE]))
# How long a web process gathers the tracking events it stores before asking for the apply task
# once for all of them (scheduler/events.py, ApplyGatherer); 0 asks at every request.
TRACKING_APPLY_GATHER_MS = env.int("TRACKING_APPLY_GATHER_MS", default=200)
CELERY_TASK_ROUTES = {
    # What sends many emails goes to the mail queue, behind no periodic job and holding none up;
    # organizers' imports and bulk actions too (long, and they mail many confirmations).
    "scheduler.tasks.deliveries_send_chunk": {"queue": DELIVERY_QUEUE},
    "signups.tasks.waitlist_invite_cohort": {"queue": DELIVERY_QUEUE},
    "signups.tasks.learner_import_preview": {"queue": DELIVERY_QUEUE},
    "signups.tasks.learner_import_apply": {"queue": DELIVERY_QUEUE},
    "signups.tasks.learner_bulk_action_run": {"queue": DELIVERY_QUEUE},
    "signups.tasks.learner_email_send": {"queue": TRANSACTIONAL_QUEUE},
    "scheduler.tasks.email_test_send": {"queue": TRANSACTIONAL_QUEUE},
    # A call to AWS an operator waits for (confirming an SNS subscription): not behind the periodic jobs.
    "scheduler.tasks.sns_subscription_confirm": {"queue": TRANSACTIONAL_QUEUE},
    "groupmail.tasks.sender_notice_send": {"queue": TRANSACTIONAL_QUEUE},
}

# --- Learners' own emails: confirmation, manage link (signups/emails.py) ----------------------
# Attempts on any failure but a refused address before such an email is failed (the backoff
# between them: 30 s, 2 min, 8 min, 32 min, then every hour). Default: 8, about four hours.
LEARNER_EMAIL_MAX_ATTEMPTS = env.int("LEARNER_EMAIL_MAX_ATTEMPTS", default=8, minimum=1)

# --- Sending the course's emails (scheduler/planning.py, sending.py) ---------------------------------
DELIVERY_CHUNK_SIZE = env.int("DELIVERY_CHUNK_SIZE", default=200, minimum=1)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=6, minimum=1)
# Dispatch plans only what changed since its last pass, and everything again this often (a safety net).
DISPATCH_FULL_PASS_MINUTES = env.int("DISPATCH_FULL_PASS_MINUTES", default=30, minimum=1)
DELIVERY_CATCH_UP_LIMIT = datetime.timedelta(hours=env.int("DELIVERY_CATCH_UP_HOURS", default=72, minimum=1))
DELIVERY_SENDING_TIMEOUT = datetime.timedelta(minutes=env.int("DELIVERY_SENDING_TIMEOUT_MINUTES", default=15, minimum=1))
EMAIL_SEND_RATE_PER_SECOND = env.int("EMAIL_SEND_RATE_PER_SECOND", default=50)
# How many sends may go at once after a quiet spell; 1 spaces every send evenly.
EMAIL_SEND_BURST = env.int("EMAIL_SEND_BURST", default=1, minimum=1)
# How long the worker may go without a heartbeat before /healthz calls it stale.
WORKER_HEARTBEAT_STALE_AFTER = env.int("WORKER_HEARTBEAT_STALE_AFTER", default=5 * 60, minimum=60)

# --- Logging: one line per event on stderr, which the process supervisor collects --------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": env.str("LOG_LEVEL", default="INFO").upper()},
}
