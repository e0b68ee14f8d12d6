"""Tests of one layer against the real OS, in-process: real children, sockets, files."""
