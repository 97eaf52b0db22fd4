"""Run every test file in its own pytest process and print one closing tally.

Why: in one interpreter the whole suite used to crash with SIGSEGV. The cause, found at stop 8:
torch's DataLoader with workers installs a process-wide Python SIGCHLD handler (any Python SIGCHLD
handler does it); after OpenVINO async requests had run Python callbacks on OpenVINO's threads, a
child process exiting could crash the interpreter. ``tests/conftest.py`` now restores SIGCHLD after every test and ``pytest tests/``
passes in one process too; one process per file stays as defence in depth against native state
(thread pools, signal handlers) leaking from one file into the next, for a few seconds of imports.

  python tests/run_by_file.py [pytest args...]     # e.g. -m "not slow"
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent
    files = sorted(root.glob("test_*.py"))
    totals: dict[str, int] = {}
    broken: list[str] = []
    start = time.perf_counter()
    for path in files:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path), *argv],
                              capture_output=True, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        last = lines[-1] if lines else ""
        for n, kind in COUNTS.findall(last):
            kind = "errors" if kind.startswith("error") else kind
            totals[kind] = totals.get(kind, 0) + int(n)
        ok = proc.returncode in (0, 5)  # 5: every test of the file deselected
        print(f"{'ok  ' if ok else 'FAIL'} {path.name}: {last or proc.stderr.strip()[-200:]}", flush=True)
        if not ok:
            broken.append(path.name)
            sys.stdout.write(proc.stdout[-6000:] + proc.stderr[-3000:] + "\n")
            if proc.returncode < 0:
                print(f"     {path.name}: pytest killed by signal {-proc.returncode}")
    failed = totals.get("failed", 0) + totals.get("errors", 0)
    if broken and not failed:  # a file that crashed reports no counts of its own
        failed = len(broken)
    print(f"\n{len(files)} files in {time.perf_counter() - start:.0f} s; failing files: {', '.join(broken) or 'none'}")
    print(f"{totals.get('passed', 0)} passed, {failed} failed, {totals.get('skipped', 0)} skipped")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
