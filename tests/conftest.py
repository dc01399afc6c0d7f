"""Session-wide test tooling: the real Nova harness behind the `live_nova` marker, and the
clock and store fixtures most folders share (tests/fixtures.py)."""
pytest_plugins = ("tests.tooling.novastack.plugin", "tests.fixtures")
