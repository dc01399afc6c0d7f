"""The gunicorn target (deploy/gunicorn.conf.py).

With DT_CONFIG naming dynamic_torque.conf, the API reads its [api] section and state_dir
there, as the reconciler does; otherwise DT_DB_PATH, DT_TOKEN_FILE, DT_HINT_TOKEN_FILE and
DT_WAKEUP_PATH (see ApiSettings).
"""
import os

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings
from dtserver.config import load_settings

app = create_app(ApiSettings.from_config(load_settings(os.environ["DT_CONFIG"]))
                 if os.environ.get("DT_CONFIG") else ApiSettings.from_environ(os.environ))
