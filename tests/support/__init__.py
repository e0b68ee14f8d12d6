"""Shared test support: helpers, paths and the child programs the tests run (by path)."""
