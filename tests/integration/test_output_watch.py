"""`logs -f` learns that its reader went away (a closed pipe) without writing to it."""

from __future__ import annotations

import os

from twinvisor.cli.output_watch import stop_when_closed


def test_event_set_once_the_pipe_reader_closes() -> None:
    read_end, write_end = os.pipe()
    try:
        gone = stop_when_closed(write_end)
        assert not gone.wait(0.05)  # a reader still there: nothing to say
        os.close(read_end)
        assert gone.wait(10)
    finally:
        os.close(write_end)
