"""`python -m runhook` is the `runhook` command."""

from __future__ import annotations

from runhook.cli import main

raise SystemExit(main())
