"""Installing runhook: an adapter whose framework is missing names the extra to install
(checked in a child process where the framework cannot be imported), and the wheel
carries the command, the systemd unit and the example configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def child(code: str, hidden: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a Python where the `hidden` packages cannot be imported: a None
    in sys.modules makes `import name` fail as a missing package does."""
    hide = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    return subprocess.run([sys.executable, "-c", hide + code], check=False,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("adapter", "hidden", "message"), [
    ("from runhook.training.lightning import RunhookLogger",
     ("lightning", "pytorch_lightning"),
     ("runhook.training.lightning needs PyTorch Lightning, and neither `lightning` nor "
     "`pytorch_lightning` is installed: pip install 'runhook[lightning]'")),
    ("from runhook.training.transformers import RunhookCallback", ("transformers",),
     ("runhook.training.transformers needs Hugging Face Transformers, and "
     "`transformers` is not installed: pip install 'runhook[transformers]'")),
    ("from runhook.training.keras import RunhookCallback", ("keras",),
     ("runhook.training.keras needs Keras 3, and `keras` is not installed: "
     "pip install 'runhook[keras]'")),
    ("from runhook.training.wandb import forward\nforward()", ("wandb",),
     ("runhook.training.wandb needs the W&B SDK, and `wandb` is not installed: "
     "pip install 'runhook[wandb]'")),
])
def test_a_missing_framework_names_the_extra_to_install(adapter, hidden, message):
    result = child(adapter, hidden)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    # Still a ModuleNotFoundError (a subclass), so `except ImportError` keeps working.
    assert last == f"runhook.training.frameworks.MissingFramework: {message}"


def test_still_an_import_error_to_catch():
    result = child("try:\n    import runhook.training.keras\n"
                   "except ImportError as exc:\n    print(type(exc).__mro__[1].__name__, "
                   "exc.name)", ("keras",))
    assert result.stdout.split() == ["ModuleNotFoundError", "keras"]


def test_lightning_under_its_old_name_is_used_when_the_new_one_is_missing():
    pytest.importorskip("pytorch_lightning")
    result = child("from runhook.training import lightning\nprint(lightning._pl.__name__)",
                   ("lightning",))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pytorch_lightning"


def test_the_wheel_carries_the_command_the_unit_and_the_example_config(tmp_path):
    # Built from a copy of the tree, so the build leaves nothing in the worktree.
    tree = tmp_path / "tree"
    for part in ("src", "systemd", "config"):
        shutil.copytree(ROOT / part, tree / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(tree)],
                           check=False, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("runhook-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
        # The files themselves, not the tree's symlinks to them.
        assert archive.read("runhook/share/runhook.service") == \
            (ROOT / "systemd/runhook.service").read_bytes()
        assert archive.read("runhook/share/runhook.toml") == \
            (ROOT / "config/runhook.toml").read_bytes()
        archive.extractall(tmp_path / "site")
    assert {"runhook/share/runhook.service", "runhook/share/runhook.sysusers",
            "runhook/share/runhook.tmpfiles", "runhook/share/runhook.toml",
            "runhook/cli/main.py"} <= names
    # Every console template, or a page of the installed console is a 500.
    templates = {f"runhook/web/templates/{p.name}"
                 for p in (ROOT / "src/runhook/web/templates").iterdir()}
    assert templates and templates <= names
    assert "runhook = runhook.cli.main:main" in entry_points
    # The installed package runs, and `runhook share` points into it.
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    version = subprocess.run([sys.executable, "-m", "runhook", "--version"], env=env,
                             check=True, capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "runhook 0.1.0"
    page = subprocess.run([sys.executable, "-c", ("from runhook.web.html import page\n"
                           "print(page('not_found.html', 'Not found', '', what='<x>'))")],
                          env=env, check=True, capture_output=True, text=True, timeout=60)
    assert "<title>Not found · runhook</title>" in page.stdout and "<p>&lt;x&gt;</p>" in page.stdout
    shown = subprocess.run([sys.executable, "-m", "runhook", "share"], env=env,
                           check=True, capture_output=True, text=True, timeout=60)
    assert shown.stdout.splitlines() == [
        str(tmp_path / "site/runhook/share" / name) for name in
        ("dev-signing.key", "runhook.service", "runhook.sysusers", "runhook.tmpfiles",
         "runhook.toml")]
    # The installed example checks clean as it is (its signing key is beside it).
    checked = subprocess.run([sys.executable, "-m", "runhook", "check-config",
                              str(tmp_path / "site/runhook/share/runhook.toml")], env=env,
                             check=False, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
