"""Gunicorn settings for the dynamictorque API: `gunicorn -c deploy/gunicorn.conf.py`.

The API only records hints and intents; the reconciler runs as its own systemd unit.
Its settings, the listen address included, come from dynamic_torque.conf when DT_CONFIG
names it ([api] bind, token_file, ...), else from DT_* variables (DT_BIND, DT_DB_PATH, ...;
see dtserver/wsgi.py). deploy/systemd/dtserver-api.service sets DT_CONFIG.
"""
import subprocess
import sys

wsgi_app = "dtserver.wsgi:app"

# Worked out by dtserver in a child process: workers are forked from this arbiter and run
# whatever it imported, so importing dtserver here would keep old code running after
# `systemctl reload` (HUP) had brought new code.
_PRINT_BIND = ("import os; from dtserver.api.settings import ApiSettings; "
               "print(ApiSettings.from_process_environ(os.environ).bind)")


def _configured_bind() -> str:
    try:
        result = subprocess.run([sys.executable, "-c", _PRINT_BIND], capture_output=True,
                                text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise SystemExit("dtserver-api: reading the configuration took over 60 s") from None
    if result.returncode != 0:
        # The error's last line names the file, the line and the key.
        lines = result.stderr.strip().splitlines() or ["cannot read the configuration"]
        raise SystemExit(f"dtserver-api: {lines[-1]}")
    return result.stdout.strip()


# [api] bind, loopback (127.0.0.1:8080) unless configured otherwise: the submit filter and
# dtadmin run on the TORQUE server host. Expose it through a TLS proxy rather than on all
# addresses. A -b on the command line still wins (gunicorn's precedence).
bind = [_configured_bind()]

# One worker per core. Each worker opens its own SQLite connections after the fork, which
# is also why preload_app stays off.
workers = 2
# Threads let a worker keep answering hints while another request waits on SQLite's
# write lock (busy timeout 5 s).
worker_class = "gthread"
threads = 4

# No control socket (recent gunicorn makes one by default): systemctl reload and stop
# manage the server, and nothing should listen for commands in the service user's home.
control_socket_disable = True

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
        # One line per record: values from requests are escaped (dtserver.redact).
        "generic": {
            "class": "dtserver.redact.EscapingFormatter",
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
    },
}
