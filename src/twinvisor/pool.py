"""Public path of the worker-pool library (seed 004, pagent): workers over stdin/stdout.

The implementation is `twinvisor.lib.pool`; this module is the stable import path.
"""

from twinvisor.lib.pool import (
    AsyncPool,
    Pool,
    PoolError,
    UnknownWorker,
    WorkerEnd,
    WorkerExited,
    WorkerStats,
)

__all__ = [
    "AsyncPool",
    "Pool",
    "PoolError",
    "UnknownWorker",
    "WorkerEnd",
    "WorkerExited",
    "WorkerStats",
]
