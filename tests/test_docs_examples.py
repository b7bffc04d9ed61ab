"""The docs' examples run, in order, as a new user would type them: every `console` and
`python` block of every page (docs/*.md in the nav's order, and README.md) against a
real daemon, and every configuration shown passes check-config. A block that cannot
run here says so in the page, on the line before it: `<!-- not run: why -->`; a TOML
block of automations alone says `<!-- fragment: of what -->` (it is checked inside the
configuration reference's file), one that is no runhook configuration
`<!-- not a config: what it is -->`. The examples leave nothing behind that mutes or
pages later."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\b1\d{9}\b")  # or Unix seconds
ID = re.compile(r"\b(ex|si)_[0-9a-f]+\b")
MARK = re.compile(r"<!-- (not run|fragment|not a config): (\S.*?) -->")
# Pages whose examples need a daemon on a configuration of their own (the page's
# TOML block); the others run, in the nav's order, against the `make run` daemon.
OWN_DAEMON = ("remote.md",)
SECRET_VALUE = "https://hooks.example.com/services/T000/B000/XXXXXXXX"  # any secret's value
TRAINER_TOKEN = "trainer-token-0123456789"


@dataclass
class Block:
    page: str
    line: int
    language: str
    body: str
    mark: tuple[str, str] | None  # ("not run" | "fragment", why)


def pages() -> list[str]:
    """docs/ in the nav's order, then README.md (paths relative to the repository)."""
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    return [f"docs/{page}" for page in nav] + ["README.md"]


def blocks_of(page: str) -> list[Block]:
    """The page's fenced blocks, indented ones (inside a list item) dedented, each with
    the mark on the line before it, if any."""
    lines = (ROOT / page).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"( *)```(\w*).*", lines[i])
        if not opening:
            i += 1
            continue
        indent, language = opening.groups()
        end = lines.index(f"{indent}```", i + 1)
        mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
        found.append(Block(page, i + 1, language,
                           textwrap.dedent("\n".join(lines[i + 1:end])) + "\n",
                           (mark[1], mark[2]) if mark else None))
        i = end + 1
    return found


def runnable(page: str) -> list[Block]:
    return [b for b in blocks_of(page) if b.language in ("console", "python") and not b.mark]


def examples_of(blocks: list[Block]) -> list[tuple[str, list[str]]]:
    """In order: each `$ ` command of the console blocks (continuation lines joined as
    bash reads them) with the output lines printed under it, and each Python block, as
    a command that runs it with this interpreter."""
    examples: list[tuple[str, list[str]]] = []
    for block in blocks:
        if block.language == "python":
            examples.append((f"{sys.executable} - <<'PYTHON'\n{block.body}PYTHON", []))
            continue
        lines = block.body.splitlines()
        assert lines and lines[0].startswith("$ "), f"{block.page}:{block.line}: no command"
        while lines:
            line = lines.pop(0)
            if not line.startswith("$ "):
                examples[-1][1].append(line)
                continue
            command = line[2:]
            while command.rstrip().endswith("\\"):
                command += "\n" + lines.pop(0)
            here = re.search(r"<<'?(\w+)'?", command)
            while here and not command.endswith("\n" + here[1]):  # a here-document
                command += "\n" + lines.pop(0)
            examples.append((command, []))
    return examples


def normal(line: str) -> list[str]:
    return ID.sub("ID", TIME.sub("TIME", line)).split()


def same_words(want: str, have: str) -> bool:
    """Equal, or `want` ends in … (the page elides a token) and `have` starts with the rest."""
    return want == have or (want.endswith("…") and have.startswith(want[:-1]))


def same_output(expected: list[str], actual: str) -> bool:
    """As printed (blank lines aside), but for times, ids and what the page elides with
    …; a line naming an execution or a silence is held to its first five words (what it
    names and its state, not retries so far)."""
    expected = [line for line in expected if line.strip()]
    got = [line for line in actual.splitlines() if line.strip()]
    if len(got) != len(expected):
        return False
    for want, have in zip(expected, got, strict=True):
        width = 5 if ID.search(want) else None
        wants, haves = normal(want)[:width], normal(have)[:width]
        if len(wants) != len(haves) or not all(map(same_words, wants, haves)):
            return False
    return True


def shell(examples: list[tuple[str, list[str]]], cwd: Path,
          env: dict[str, str]) -> list[tuple[int, str]]:
    """Run the commands in one bash, so a variable one sets is there for the next."""
    script = "".join(f"printf '@@start {i}\\n'\n{command}\nprintf '\\n@@rc {i} %d\\n' $?\n"
                     for i, (command, _) in enumerate(examples))
    run = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                         check=False, timeout=120, env=env)
    results = []
    for i in range(len(examples)):
        assert f"@@start {i}\n" in run.stdout, (examples[i][0], run.stdout, run.stderr)
        chunk = run.stdout.split(f"@@start {i}\n")[1].split(f"\n@@rc {i} ")
        results.append((int(chunk[1].split()[0]), chunk[0]))
    return results


def check(examples: list[tuple[str, list[str]]], results: list[tuple[int, str]],
          addresses: dict[str, str]) -> None:
    """Each command exited as the page implies (non-zero only where the daemon's answer
    printed is a refusal) and printed what the page prints under it."""
    for (command, expected), (code, output) in zip(examples, results, strict=True):
        for printed, used in addresses.items():
            output = output.replace(used, printed)
        refused = any('"ok":false' in line for line in expected) and "curl " not in command
        assert (code != 0) == refused, f"{command}\nexited {code}:\n{output}"
        assert not expected or same_output(expected, output), \
            f"{command}\nprinted:\n{output}\nthe docs say:\n" + "\n".join(expected)


async def run_examples(blocks: list[Block], directory: Path, addresses: dict[str, str],
                       env: dict[str, str]) -> None:
    examples = examples_of(blocks)
    for printed, used in addresses.items():
        examples = [(c.replace(printed, used), out) for c, out in examples]
    shell_env = {**os.environ, **env,
                 "PATH": f"{directory / '.venv' / 'bin'}:{os.environ['PATH']}"}
    results = await asyncio.to_thread(shell, examples, directory, shell_env)
    check(examples, results, addresses)


def workplace(directory: Path, config: str | None = None) -> tuple[Path, dict[str, str]]:
    """config/ as in the repository (or `config` with config/runhook.toml's [server]), on
    free ports (nothing listens for the webhook, as with `make run`), var/ beside it,
    and .venv/bin/runhook running this tree. Returns the configuration and the
    addresses it has in place of the docs'."""
    addresses = {"127.0.0.1:8787": f"127.0.0.1:{free_port()}",
                 "127.0.0.1:8788": f"127.0.0.1:{free_port()}"}
    (directory / "config").mkdir()
    (directory / "var").mkdir()
    text = (ROOT / "config" / "runhook.toml").read_text()
    if config is not None:
        text = text[text.index("[server]"):text.index("[secrets]")] + config
    for printed, used in addresses.items():
        text = text.replace(printed, used)
    (directory / "config" / "runhook.toml").write_text(text)
    shutil.copy(ROOT / "config" / "dev-signing.key", directory / "config")
    (directory / ".venv" / "bin").mkdir(parents=True)
    shim = directory / ".venv" / "bin" / "runhook"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m runhook "$@"\n')
    shim.chmod(0o755)
    return directory / "config" / "runhook.toml", addresses


def client(directory: Path, *args: str) -> str:
    """A client command as the docs type it, from the workplace; its output."""
    return subprocess.run([str(directory / ".venv/bin/runhook"), *args, "--config",
                           "config/runhook.toml"], cwd=directory, check=True,
                          capture_output=True, text=True).stdout


def secrets_for(config: str, directory: Path) -> dict[str, str]:
    """Every secret the configuration declares, made to exist: `env` ones in the
    returned environment, `credential` ones as files in a $CREDENTIALS_DIRECTORY (TLS
    ones a certificate for 127.0.0.1 and localhost, its CA in ca.pem)."""
    credentials = directory / "credentials"
    credentials.mkdir(exist_ok=True)
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    for name in re.findall(r'\{ *env *= *"(\w+)" *\}', config):
        env[name] = TRAINER_TOKEN if name == "TRAINER_TOKEN" else SECRET_VALUE
    for name in re.findall(r'\{ *credential *= *"([\w.]+)" *\}', config):
        (credentials / name).write_text(SECRET_VALUE)
    if "tls.crt" in config:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(credentials / "tls.key"))
        cert.cert_chain_pems[0].write_to_path(str(credentials / "tls.crt"))
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return env


def test_every_block_is_run_checked_or_marked():
    """A shell session is a `console` block (so it runs); a mark says why, and marks
    only what it can mark."""
    for page in pages():
        for block in blocks_of(page):
            where = f"{page}:{block.line}"
            if block.language not in ("console", "python"):
                assert not re.search(r"^\$ ", block.body, re.MULTILINE), \
                    f"{where}: a shell session in a `{block.language}` block is not run"
            if block.mark:
                kind, _ = block.mark
                allowed = ("console", "python") if kind == "not run" else ("toml",)
                assert block.language in allowed, f"{where}: `{kind}` on a {block.language} block"


@pytest.mark.parametrize("page", [p for p in pages()
                                  if any(b.language == "toml" for b in blocks_of(p))])
def test_every_whole_configuration_passes_check_config(page, tmp_path):
    """A whole file as shown; automations shown alone, as the configuration reference's
    walk-through with them added (their integrations are its `alerts` and `ci`)."""
    walk_through = next(b.body for b in blocks_of("docs/configuration.md") if b.language == "toml")
    for block in blocks_of(page):
        if block.language != "toml" or (block.mark and block.mark[0] != "fragment"):
            continue
        text = block.body
        if block.mark:
            assert text.startswith("[[automations]]"), f"{page}:{block.line}: a fragment of what?"
            text = walk_through + "\n" + text
        config = tmp_path / "runhook.toml"
        config.write_text(text)
        env = {**os.environ, **secrets_for(text, tmp_path)}
        run = subprocess.run([sys.executable, "-m", "runhook", "check-config", str(config)],
                             capture_output=True, text=True, check=False, env=env)
        assert run.returncode == 0, f"{page}:{block.line}\n{run.stdout}{run.stderr}"


async def test_the_pages_run_in_order_against_the_make_run_daemon(start_daemon, short_dir):
    """The tour, then every page after it in the nav, as one user at one `make run`."""
    config, addresses = workplace(short_dir)
    daemon = await start_daemon(config=config)
    blocks = [b for page in pages()[:-1] if page.removeprefix("docs/") not in OWN_DAEMON
              for b in runnable(page)]
    assert {"docs/tour.md", "docs/alert-fatigue.md", "docs/integrations.md",
            "docs/operations.md"} <= {b.page for b in blocks}
    await run_examples(blocks, short_dir, addresses, {})

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

    # Every run the examples started ended as they say (the tour's r1, the training
    # script's prod-7 at its exit), so none is called crashed "no heartbeat for 5m"
    # five minutes on.
    assert await daemon.stop() == 0
    with sqlite3.connect(short_dir / "var" / "runhook.db") as db:
        rows = dict(db.execute("SELECT run_name, state FROM runs").fetchall())
    assert rows == {"prod-1": "finished", "prod-7": "finished"}


async def test_the_readme_runs_against_its_own_daemon(start_daemon, short_dir):
    config, addresses = workplace(short_dir)
    await start_daemon(config=config)
    blocks = runnable("README.md")
    assert blocks
    await run_examples(blocks, short_dir, addresses, {})


async def test_remote_sources_run_against_the_pages_configuration(start_daemon, short_dir):
    """The page's own configuration, with config/runhook.toml's [server], its secrets
    made to exist, its listener on a free loopback port instead of 0.0.0.0:8443."""
    page = "docs/remote.md"
    (shown,) = [b.body for b in blocks_of(page) if b.language == "toml" and not b.mark]
    port = free_port()
    config, addresses = workplace(short_dir, shown.replace("0.0.0.0:8443", f"127.0.0.1:{port}"))
    addresses["runhook:8443"] = f"localhost:{port}"
    env = secrets_for(shown, short_dir)
    await start_daemon(config=config, env=env)
    blocks = runnable(page)
    assert blocks
    await run_examples(blocks, short_dir, addresses, env)
