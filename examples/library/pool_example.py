"""Drive workers over stdin/stdout (seed 004's pagent): an interactive bash and a python echo.

python examples/library/pool_example.py
"""

from __future__ import annotations

import sys
import threading

from twinvisor.pool import Pool, WorkerEnd

ECHO = [
    sys.executable,
    "-u",
    "-c",
    "import sys\nfor line in sys.stdin: print('echo:', line.strip())",
]


def main() -> None:
    ended, bash_done = threading.Event(), threading.Event()

    def on_output(name: str, line: str) -> None:  # called from the pool's loop thread
        print(f"[{name}] {line}")
        if line == "done":
            bash_done.set()

    def on_end(name: str, end: WorkerEnd) -> None:
        print(f"[{name}] ended: returncode={end.returncode} error={end.error}")
        if name == "uname":
            ended.set()

    with Pool(on_output, on_end) as pool:
        pool.start("bash", "bash")
        # request: the next line printed is the reply (it is not given to on_output)
        print("bash pwd ->", pool.request("bash", "pwd", timeout=5))
        pool.send("bash", "echo bash says hi from $$; ls / | head -n 3; echo done")
        bash_done.wait(5)
        pool.remove("bash")  # TERM to its whole process group

        pool.start("echo", ECHO)
        for word in ("ping", "pong"):
            print("echo reply ->", pool.request("echo", word, timeout=5))

        pool.start("uname", "uname -a")  # runs and exits: its end comes to on_end
        ended.wait(5)
    # leaving the with-block removed the echo worker and stopped the loop thread


if __name__ == "__main__":
    main()
