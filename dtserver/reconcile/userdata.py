"""A worker's cloud-init user-data: the pool's template, filled in for one node."""
from __future__ import annotations

import string

from dtserver.policy import Pool


def render_user_data(pool: Pool, hostname: str, torque_server: str) -> str | None:
    """The pool's cloud-init template with $hostname, $pool and $torque_server filled in.

    safe_substitute: a template is a shell script too, and its other `$` must stay as
    written."""
    if pool.user_data_template is None:
        return None
    return string.Template(pool.user_data_template).safe_substitute(
        hostname=hostname, pool=pool.name, torque_server=torque_server)
