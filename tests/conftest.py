"""Session-wide test tooling: the real Nova harness behind the `live_nova` marker, real
TORQUE behind `live_torque`, and the clock and store fixtures most folders share
(tests/fixtures.py)."""
pytest_plugins = ("tests.tooling.novastack.plugin", "tests.tooling.realtorque.plugin",
                  "tests.fixtures")
