"""Tests of the real `twinvisor` command, end to end (support.helpers.Daemon)."""
