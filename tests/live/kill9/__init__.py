"""The kill -9 harness: the reconciler as a real process, SIGKILLed at chosen steps of node
lives and restarted, against the real Nova API (tests/tooling/novastack) and the TORQUE CLI
emulator; after every kill and at the end it checks Nova's and TORQUE's own state.
bench/bench_kill9.py runs it; tests/live/test_kill9_smoke.py tests its checks.

One module per job:
- reconciler.py: the site (configuration, TORQUE emulator, state directory) and each start
  of the reconciler, as production runs it;
- points.py: the steps of a node's life it is killed at, and the plan arming each start;
- nova.py: Nova as the harness sees it, through its API and its cell databases;
- world.py: what happens around the reconciler: the instances' moms, the users' jobs;
- checks.py: what must hold after every kill and at the end;
- run.py: the kill loop, the final settle, and the results.
"""
