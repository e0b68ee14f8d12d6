"""`with suppress(OSError): ...`: contextlib.suppress for the light processes.

contextlib brings collections and functools: 0.4 MiB the guard would keep for the life of
the daemon, for a five-line context manager.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


class suppress:
    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)
