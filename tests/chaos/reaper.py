"""``python -m tests.chaos.reaper BASE``: removes a private cluster its test process left.

Started by :meth:`tests.chaos.cluster.Cluster.start` in a session of its own, with a pipe
on its standard input that only the test process holds. It waits for the end of that
pipe: when the test process closes it (after removing the cluster itself) or dies, even
by SIGKILL, the reaper kills every node still running under BASE and removes BASE.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.chaos.cluster import remove


def main(base: str) -> None:
    sys.stdin.buffer.read()  # returns at the end of the pipe, however it came
    folder = Path(base)
    if folder.exists():
        remove(folder)


if __name__ == "__main__":
    main(sys.argv[1])
