"""The fakes: one faithful stand-in per external system, TORQUE and Nova, that the demo,
the simulator and the tests run on.

- `torque/`: TorqueEmulator, an in-memory TORQUE 6.1 server that answers the real commands'
  argv with their captured output, its command-line executables (`dt-torque-emulator`)
  and EmulatorBatch, the Batch port read straight from its state.
- `nova.py`, `nova_resources.py`: FakeNova, shaped as the python-novaclient subset
  NovaCloud uses.
- `world.py`: both on one clock, played together as a cluster's VMs would.
- `incremental_nova.py`: IncrementalNovaCloud, a NovaCloud that reads FakeNova cheaply
  for long simulations.

No production module imports this package (setup.cfg, contract
fakes-stay-out-of-production); the composition root (dtserver/bootstrap.py) loads it only
when asked for the emulated world.
"""
