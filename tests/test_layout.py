"""The house's rooms: each module imports only from its own room or the rooms below
it, so a reader finds a change's room by its name and no room reaches upward."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "runhook"
# Bottom to top. Top-level modules are rooms of their own.
ROOMS = ["__init__", "core", "triggers", "store", "config", "delivery", "evaluate", "ingest",
         "sources", "cluster", "web", "systemd", "app", "client", "training", "cli",
         "__main__"]
# The one reference upward: `runhook.init` is looked up from the package's __init__ on
# first use (PEP 562), never at `import runhook` (tests/test_run_client.py checks that).
ON_DEMAND = {("__init__", "training")}


def room(module: str) -> str:
    """`runhook.core.events` -> `core`; `runhook` itself -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "runhook":
                out.extend((node.lineno, f"runhook.{a.name}") for a in node.names)
            elif node.module.startswith("runhook."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names
                       if a.name.startswith("runhook."))
    return out


def test_no_module_imports_from_a_room_above_its_own():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).with_suffix("")
        own = relative.parts[0] if len(relative.parts) > 1 else relative.name
        assert own in ROOMS, f"{relative}: not in any room of {ROOMS}"
        for line, module in imports(path):
            target = room(module)
            if target == "__version__":
                continue
            if ROOMS.index(target) > ROOMS.index(own) and (own, target) not in ON_DEMAND:
                upward.append(f"{relative}:{line} imports {module}")
    assert upward == []


def test_every_room_says_what_it_holds_and_may_import():
    # A folder without Python is package data (share/: the systemd unit, the example
    # configuration), not a room.
    for folder in sorted(p for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"
                         and any(p.glob("*.py"))):
        init = folder / "__init__.py"
        assert init.exists(), folder
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{folder.name}/__init__.py: say what it may import"


def test_the_top_level_holds_only_the_lifecycle():
    top = sorted(p.stem for p in SRC.glob("*.py"))
    assert top == ["__init__", "__main__", "client", "systemd"]
