"""The CPU a benchmark ran on (qt_core/machine.py): every benchmark prints this line first, and
results are kept in one table per CPU class, never mixed.

  python bench/machine.py          # prints the one-line description every benchmark prints
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qt_core.machine import cpu_class, describe_machine, read_cpu  # noqa: E402

__all__ = ["cpu_class", "describe_machine", "read_cpu"]

if __name__ == "__main__":
    print(describe_machine())
