"""TorqueEmulator (server.py) and what runs on it: EmulatorBatch (batch.py) and the CLI
emulator (cli.py, persistence.py). server.py's docstring lists the modules of the emulator
itself, one per job."""
