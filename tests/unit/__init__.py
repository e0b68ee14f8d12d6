"""Tests of pure code: no processes, no daemon."""
