"""`make bench`: every scenario against the real daemon, one table; `--quick` for tiny sizes."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scenarios


def main() -> int:
    quick = "--quick" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("-")]
    sizes = {
        "ingest": (2_000, 1) if quick else (200_000,),
        # Rings are preallocated to their full size: 6 values a run fill the window-5
        # threshold and cost the same memory as 31.
        "memory": (1_000, 2) if quick else (100_000, 6),
        "firing": (1_000,) if quick else (100_000,),
        "delivery": (300, 16, 1) if quick else (20_000,),
        "latency": (100, 1.0) if quick else (500, 10.0),
        "many_clients": (10, 50, 1) if quick else (200, 500),
    }
    rows = []
    started = time.perf_counter()
    for name, args in sizes.items():
        if only and name not in only:
            continue
        rows.extend(getattr(scenarios, name)(*args))
    print(f"runhook benchmarks ({'quick' if quick else 'full'}), {platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.perf_counter() - started:.0f}s")
    header = ("scenario", "figure", "baseline (same run)", "ratio / note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
