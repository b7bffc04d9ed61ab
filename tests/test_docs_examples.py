"""The docs' examples run, in order, as a new user would type them: the tour's commands
and Python client example and the silences' commands, against a real daemon started on
config/runhook.toml, and they leave nothing behind that mutes or pages later."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\b1\d{9}\b")  # or Unix seconds
ID = re.compile(r"\b(ex|si)_[0-9a-f]+\b")


def examples_of(page: str) -> list[tuple[str, list[str]]]:
    """In the page's order: each `$ ` command of its console blocks (continuation lines
    joined as bash reads them) with the output lines printed under it, and each Python
    block, as a command that runs it with this interpreter."""
    text = (ROOT / "docs" / page).read_text()
    examples: list[tuple[str, list[str]]] = []
    for language, block in re.findall(r"^```(console|python)\n(.*?)^```", text,
                                      re.DOTALL | re.MULTILINE):
        if language == "python":
            examples.append((f"{sys.executable} - <<'PYTHON'\n{block}PYTHON", []))
            continue
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            if not line.startswith("$ "):
                examples[-1][1].append(line)
                continue
            command = line[2:]
            while command.rstrip().endswith("\\"):
                command += "\n" + lines.pop(0)
            examples.append((command, []))
    return [(c, out) for c, out in examples if not c.startswith("make ")]


def normal(line: str) -> list[str]:
    return ID.sub("ID", TIME.sub("TIME", line)).split()


def same_output(expected: list[str], actual: str) -> bool:
    """As printed (blank lines aside), but for times and ids; a line naming an execution or a silence is
    held to its first five words (what it names and its state, not retries so far)."""
    expected = [line for line in expected if line.strip()]
    got = [line for line in actual.splitlines() if line.strip()]
    if len(got) != len(expected):
        return False
    for want, have in zip(expected, got, strict=True):
        width = 5 if ID.search(want) else None
        if normal(want)[:width] != normal(have)[:width]:
            return False
    return True


def shell(examples: list[tuple[str, list[str]]], cwd: Path) -> list[tuple[int, str]]:
    """Run the commands in one bash, so a variable one sets is there for the next."""
    script = "".join(f"printf '@@start {i}\\n'\n{command}\nprintf '\\n@@rc {i} %d\\n' $?\n"
                     for i, (command, _) in enumerate(examples))
    run = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                         check=False, timeout=120)
    results = []
    for i in range(len(examples)):
        chunk = run.stdout.split(f"@@start {i}\n")[1].split(f"\n@@rc {i} ")
        results.append((int(chunk[1].split()[0]), chunk[0]))
    return results


def client(directory: Path, *args: str) -> str:
    """A client command as the docs type it, from the workplace; its output."""
    return subprocess.run([str(directory / ".venv/bin/runhook"), *args, "--config",
                           "config/runhook.toml"], cwd=directory, check=True,
                          capture_output=True, text=True).stdout


def workplace(directory: Path) -> tuple[Path, dict[str, str]]:
    """config/ as in the repository, on free ports (nothing listens for the webhook,
    as with `make run`), var/ beside it, and .venv/bin/runhook running this tree.
    Returns the configuration and the addresses it has in place of the docs'."""
    ports = {"127.0.0.1:8787": f"127.0.0.1:{free_port()}",
             "127.0.0.1:8788": f"127.0.0.1:{free_port()}"}
    (directory / "config").mkdir()
    (directory / "var").mkdir()
    text = (ROOT / "config" / "runhook.toml").read_text()
    for printed, used in ports.items():
        text = text.replace(printed, used)
    (directory / "config" / "runhook.toml").write_text(text)
    shutil.copy(ROOT / "config" / "dev-signing.key", directory / "config")
    (directory / ".venv" / "bin").mkdir(parents=True)
    shim = directory / ".venv" / "bin" / "runhook"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m runhook "$@"\n')
    shim.chmod(0o755)
    return directory / "config" / "runhook.toml", ports


async def test_the_tour_and_the_silences_run_in_order(start_daemon, short_dir):
    config, ports = workplace(short_dir)
    daemon = await start_daemon(config=config)
    examples = examples_of("tour.md") + examples_of("alert-fatigue.md")
    for printed, used in ports.items():
        examples = [(c.replace(printed, used), out) for c, out in examples]
    assert any("silence expire" in c for c, _ in examples)
    assert sum("Client(" in c for c, _ in examples) == 1  # the Python client example
    results = await asyncio.to_thread(shell, examples, short_dir)
    for (command, expected), (code, output) in zip(examples, results, strict=True):
        for printed, used in ports.items():
            output = output.replace(used, printed)
        refused = any('"ok":false' in line for line in expected)
        assert (code != 0) == refused, f"{command}\nexited {code}:\n{output}"
        assert not expected or same_output(expected, output), \
            f"{command}\nprinted:\n{output}\nthe docs say:\n" + "\n".join(expected)

    # Nothing left muting the examples that follow: the only silence still in force is
    # the first one, on loss-diverged runs named sweep-12-..., and a new resnet version
    # is recorded, not SKIPPED.
    listed = await asyncio.to_thread(client, short_dir, "silence", "list", "--json")
    active = [(s["automation"], s["run_name"]) for s in json.loads(listed) if s["active"]]
    assert active == [("loss-diverged", "^sweep-12-")]
    event = {"type": "artifact.created", "entity": "acme", "project": "vision",
             "collection": "resnet", "version": 8}
    sent = await asyncio.to_thread(client, short_dir, "send", json.dumps(event))
    assert sent.strip() == '{"ok":true}'
    history = await asyncio.to_thread(client, short_dir, "history", "--automation",
                                      "record-new-versions", "--json")
    states = [e["state"] for e in json.loads(history)]
    assert "SKIPPED" not in states and len(states) == 2, history  # version 7 and 8

    # Run r1 ended as the example says, so no "no heartbeat for 5m" five minutes on.
    assert await daemon.stop() == 0
    with sqlite3.connect(short_dir / "var" / "runhook.db") as db:
        rows = db.execute("SELECT state FROM runs WHERE run_id = 'r1'").fetchall()
    assert rows == [("finished",)]
