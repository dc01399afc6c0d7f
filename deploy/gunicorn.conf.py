"""Gunicorn settings for the dynamictorque API: `gunicorn -c deploy/gunicorn.conf.py`.

The API only records hints and intents; the reconciler runs as its own systemd unit.
Its settings come from the environment (DT_DB_PATH, DT_TOKEN_FILE, ...; see dtserver/wsgi.py),
which deploy/systemd/dtserver-api.service sets.
"""

wsgi_app = "dtserver.wsgi:app"

# Loopback by default: the submit filter and dtadmin run on the TORQUE server host.
# Expose it through a TLS proxy, never by binding 0.0.0.0 here.
bind = "127.0.0.1:8080"

# One worker per core. Each worker opens its own SQLite connections after the fork, which
# is also why preload_app stays off.
workers = 2
# Threads let a worker keep answering hints while another request waits on SQLite's
# write lock (busy timeout 5 s).
worker_class = "gthread"
threads = 4

# A request never takes long: the API does no TORQUE or Nova calls. A worker stuck for
# 30 s is broken and gets replaced.
timeout = 30
graceful_timeout = 10

# Access log, gunicorn's own messages and the dtserver.* loggers all go to stdout, one
# stream for the journal. Replacing the "loggers" section detaches gunicorn's default
# stderr handler, so nothing is printed twice.
logconfig_dict = {
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    },
    "formatters": {
        "generic": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
    },
}
