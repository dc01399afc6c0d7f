"""Session-wide test tooling: the real Nova harness behind the `live_nova` marker."""
pytest_plugins = ("tests.tooling.novastack.plugin",)
