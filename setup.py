# Kept because the layout requires it; all configuration lives in setup.cfg.
from setuptools import setup

setup()
