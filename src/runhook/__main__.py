"""`python -m runhook` is the `runhook` command."""

from __future__ import annotations

from runhook.cli.main import main

raise SystemExit(main())
