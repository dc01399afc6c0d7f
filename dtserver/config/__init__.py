"""dynamic_torque.conf: one frozen Settings value, and the Policy built from it.

schema.py declares the settings and their keys, legacy.py Dynamic Torque's keys,
sections.py gathers both per section, load.py reads a file, describe.py writes one back,
build.py turns Settings into the planner's Policy. The names below are the package's
interface; the modules are its parts.
"""
from dtserver.config.build import build_policy
from dtserver.config.describe import describe
from dtserver.config.errors import ConfigError
from dtserver.config.legacy import OBSOLETE_KEYS
from dtserver.config.load import load_settings, parse_settings
from dtserver.config.schema import EventCommands, PoolSettings, Settings
from dtserver.config.sections import SECTION_KEYS

__all__ = ["OBSOLETE_KEYS", "SECTION_KEYS", "ConfigError", "EventCommands", "PoolSettings",
           "Settings", "build_policy", "describe", "load_settings", "parse_settings"]
