"""The test suite, one folder per layer of the code under test.

unit/         pure code: the core, config, policy, importers; no processes
integration/  one layer against the real OS in-process: the Runtime with real children, the
              control server, logs, discovery, the daemon and pool libraries
e2e/          the real `twinvisor` command (support.helpers.Daemon)
support/      shared helpers and the child programs the tests run
conftest.py   the leak checks every test gets (children, zombies, fds)
"""
