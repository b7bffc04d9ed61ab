"""`make bench`: every scenario against the real daemon, one table; `--quick` for tiny sizes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scenarios
from harness import report


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
    report(f"runhook benchmarks ({'quick' if quick else 'full'})", rows, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
