"""No shell pipeline that can fail by SIGPIPE under ``set -o pipefail``.

``cmd | grep -q x`` and ``cmd | head`` stop reading early; ``cmd`` then dies
of SIGPIPE and pipefail (which the Makefile and every script set) turns that
into a failure, at random. Capture the output first, then test it
(scripts/ensure-deploy-tools.sh shows how).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EARLY_EXIT = re.compile(r"\|\s*(grep\s+(-[A-Za-z]*q|--quiet|--silent)|head\b)")


def candidates() -> list[Path]:
    files = [REPO / "Makefile", *(REPO / ".ci").iterdir(), *(REPO / "scripts").glob("*.sh")]
    for folder in ("tests", "bench", "scripts"):
        files += (REPO / folder).rglob("*.py")
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def test_no_early_exit_reader_in_a_pipeline() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in candidates()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if EARLY_EXIT.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, "\n".join(found)


def test_the_scan_sees_the_pattern() -> None:
    assert EARLY_EXIT.search('kubectl version --client | grep -q "v1"')
    assert EARLY_EXIT.search("ls | head -1")
    assert not EARLY_EXIT.search('out="$(kubectl version)"')
