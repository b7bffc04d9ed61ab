"""docs/architecture.md stays true to the tree: its rooms are tests/test_layout.py's, every
file it names exists, and the code cites pages that exist, never an absent DESIGN."""

from __future__ import annotations

import re
from pathlib import Path

from test_layout import ROOMS

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "runhook"
PAGE = ROOT / "docs" / "architecture.md"


def cited_files(root: Path) -> list[Path]:
    return [*sorted(root.rglob("*.py")), ROOT / "pyproject.toml"]


def test_the_rooms_table_is_the_layout_order():
    rows = re.findall(r"^\| `(\w+)` \|", PAGE.read_text(), re.MULTILINE)
    assert rows == [r for r in ROOMS if r not in ("__init__", "__main__")]


def test_every_module_the_page_names_exists():
    named = set(re.findall(r"\b([a-z_]+/[a-z_/]*[a-z_]+\.py)\b", PAGE.read_text()))
    assert "ingest/session.py" in named and "delivery/core.py" in named
    missing = sorted(n for n in named if not (SRC / n).exists() and not (ROOT / n).exists())
    assert missing == []


def test_no_code_cites_the_absent_design_document():
    cites = [f"{path.relative_to(ROOT)}:{n}" for path in cited_files(SRC)
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if "DESIGN" in line or "§" in line]
    assert cites == []


def test_every_docs_page_the_code_cites_exists():
    cited = {page for path in cited_files(SRC)
             for page in re.findall(r"docs/([\w-]+\.md)", path.read_text())}
    assert {"architecture.md", "run-health.md", "alert-fatigue.md", "cluster.md",
            "mlflow.md", "wandb.md", "integrations.md"} <= cited
    assert sorted(p for p in cited if not (ROOT / "docs" / p).exists()) == []
