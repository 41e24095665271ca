"""Run a command and report its peak RSS: ``python -m benchmarks.measure CMD...``.

The command's output passes through; a last line ``{"peak_rss": BYTES}`` follows. Measuring from
this small process matters: a child forked from a large one (the benchmark process, holding its
test matrices) starts with the parent's pages resident, and its ``ru_maxrss`` says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> None:
    proc = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    print(json.dumps({"peak_rss": usage.ru_maxrss * 1024}), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
