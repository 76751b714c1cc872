"""The docs as a newcomer uses them: every Python snippet runs, the README's curl
commands work pasted into a fresh terminal, every file named exists.

Each fenced ``python`` block of README.md and docs/*.md runs, as written, in
its own interpreter against a live dev-mode server (real uvicorn, the dev
publisher key), with only the address ``http://127.0.0.1:8000`` replaced by the
server's. A block that is not meant to run is marked by the line
``<!-- docs-test: skip (why) -->`` right above its fence (README.md,
"Development").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import LiveServer

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOC_ADDRESS = "http://127.0.0.1:8000"
SKIP = re.compile(r"<!-- docs-test: skip \(.+\) -->\s*\n\Z")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of every python block not marked to skip."""
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            if SKIP.search(text[: match.start()]):
                continue
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{doc.relative_to(REPO)}:{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("docs") / "db.sqlite3"
    # Dev mode with its defaults: the dev publisher key and dev JWT secret.
    server = LiveServer({"DEBUG": "1", "DATABASE_URL": f"sqlite:///{db}"}, startup_timeout=30.0)
    yield server
    server.close()


def test_the_docs_have_python_snippets() -> None:
    # The clients doc has the sync and the asyncio publisher, the README one.
    assert len(BLOCKS) >= 3, BLOCKS


@pytest.mark.live
@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_python_snippet_runs(where: str, code: str, dev_server: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code.replace(DOC_ADDRESS, dev_server.url))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{code}\n{result.stderr}"


SH_FENCE = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_shell_blocks() -> list[str]:
    """The README's shell blocks that call the API (each one terminal's paste)."""
    text = (REPO / "README.md").read_text()
    return [block for block in SH_FENCE.findall(text) if "curl " in block]


def test_each_shell_block_defines_the_variables_it_uses() -> None:
    # Each block is pasted into its own terminal: nothing carries over.
    for block in SH_FENCE.findall((REPO / "README.md").read_text()):
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", block))
        defined = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", block, re.MULTILINE))
        assert used <= defined, f"uses {used - defined} it does not set:\n{block}"


def json_documents(text: str) -> list[Any]:
    """The JSON documents in ``text``, one after another (curl -s adds no newline)."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while at < len(text.rstrip()):
        document, end = decoder.raw_decode(text, at)
        found.append(document)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return found


@pytest.mark.live
def test_the_readme_curl_blocks_work_pasted_into_a_fresh_shell(dev_server: LiveServer) -> None:
    blocks = readme_shell_blocks()
    assert len(blocks) >= 2, "the publish and the user API blocks"
    env = {k: v for k, v in os.environ.items() if k not in ("TOKEN", "DATABASE_URL", "REDIS_URL")}
    for block in blocks:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.replace(DOC_ADDRESS, dev_server.url)],
            cwd=REPO,
            env={**env, "DEBUG": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{block}\n{result.stderr}"
        answers = json_documents(result.stdout)
        assert answers, block
        assert all("detail" not in answer for answer in answers), (block, answers)


# A relative link [x](path) or a backticked file name ending in .md.
MD_REFERENCE = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)|`([\w./-]+\.md)`")


def test_every_file_the_docs_name_exists() -> None:
    missing = []
    for doc in DOCS:
        for match in MD_REFERENCE.finditer(doc.read_text()):
            target = match.group(1) or match.group(2)
            candidates = [doc.parent / target, REPO / target]
            if not any(path.exists() for path in candidates):
                missing.append(f"{doc.relative_to(REPO)}: {target}")
    assert not missing, "\n".join(missing)
