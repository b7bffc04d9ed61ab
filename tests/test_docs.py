"""The documentation: the site builds with warnings as errors, the README's links land,
and the configuration walk-through passes check-config as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + "A" * 43 + "="


def toml_blocks(page: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", (ROOT / "docs" / page).read_text(), re.DOTALL | re.MULTILINE)


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    # As `make docs`: a link to a missing page or heading, or a page left out of the
    # nav, is a warning, and --strict makes it a failure. mkdocs comes with the docs
    # extra, which `make test` installs.
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                          "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "variables" / "index.html").exists()


def pins(lock: str) -> dict[str, str]:
    """A lock file's `name==version`, each with its hashes."""
    text = (ROOT / "requirements" / lock).read_text()
    return {m.group(1): m.group(0) for m in re.finditer(
        r"^([a-z0-9._-]+)==\S+ \\\n(?:    --hash=\S+(?: \\)?\n)+", text, re.MULTILINE)}


def test_make_docs_installs_the_docs_lock_only():
    # The site needs mkdocs-material and what it pulls in, not the 1.4 GB test install
    # (torch and the rest) nor runhook's own dependencies.
    run = subprocess.run(["make", "-n", "-B", "docs"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    installs = [line for line in run.stdout.splitlines() if "pip install" in line]
    assert installs and all(line.endswith("-r requirements/docs.txt") for line in installs), \
        run.stdout
    docs, test = pins("docs.txt"), pins("test.txt")
    assert "mkdocs-material" in docs
    # The same versions and hashes as `make test` builds the site with (test_docs).
    assert {name: test.get(name) for name in docs} == docs


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}\n" in nav, page.name


def test_the_readme_links_land_and_it_stays_short():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert "docs/mlflow.md" in targets
    for target in targets:
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_configuration_walk_through_passes_check_config(tmp_path):
    """The first TOML block of docs/configuration.md, as printed, with its secrets set."""
    walk_through = toml_blocks("configuration.md")[0]
    assert "[integrations.alerts]" in walk_through
    config = tmp_path / "runhook.toml"
    config.write_text(walk_through)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "signing").write_text(SECRET)
    env = {**os.environ, "GH_TOKEN": "ghp_0123456789abcdef",
           "SLACK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
           "CREDENTIALS_DIRECTORY": str(credentials)}
    run = subprocess.run([sys.executable, "-m", "runhook", "check-config", str(config)],
                         capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("ok, 1 automation, 2 integrations")


def test_the_readme_tour_is_the_docs_tour():
    """The README's commands are the tour's, which test_docs_examples runs."""
    tour = (ROOT / "docs" / "tour.md").read_text()
    blocks = re.findall(r"^```console\n.*?^```", (ROOT / "README.md").read_text(),
                        re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2
    for block in blocks:
        assert block in tour, block


def test_the_readme_tables_are_the_docs_tables():
    """The README's CLI and benchmark tables are copies: held to the pages that own them."""
    readme = (ROOT / "README.md").read_text().replace("](docs/", "](")
    for page, header in (("cli.md", "| command | what it does |"),
                         ("benchmarks.md", "| scenario | figure |")):
        table = readme[readme.index(header):].split("\n\n")[0]
        assert table in (ROOT / "docs" / page).read_text().replace("](docs/", "]("), page
