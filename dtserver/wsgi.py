"""The gunicorn target (deploy/gunicorn.conf.py).

With DT_CONFIG naming dynamic_torque.conf, the API reads its [api] section and state_dir
there, as the reconciler does; otherwise DT_DB_PATH, DT_TOKEN_FILE, DT_HINT_TOKEN_FILE,
DT_WAKEUP_PATH and DT_BIND (see ApiSettings.from_process_environ).
"""
import os

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.bootstrap import build_api_store

settings = ApiSettings.from_process_environ(os.environ)
app = create_app(settings, store=build_api_store(settings))
