"""The gunicorn target (deploy/gunicorn.conf.py): settings from the environment.

DT_DB_PATH, DT_TOKEN_FILE, DT_HINT_TOKEN_FILE and DT_WAKEUP_PATH; see ApiSettings.
"""
import os

from dtserver.api import create_app
from dtserver.api.settings import ApiSettings

app = create_app(ApiSettings.from_environ(os.environ))
