"""Print the commands of the README's "Two commands" section, one per line.

CI runs these lines as they are written in README.md, so the README and CI
cannot drift apart: ``.ci/run`` takes its install and test commands from here.
Each command is the single line of one ``sh`` block of that section, in order
(install, tests, slow tests).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SECTION = "## Two commands"


def commands(readme: str) -> list[str]:
    """The one-line ``sh`` blocks of the section, in order."""
    start = readme.index(SECTION) + len(SECTION)
    end = readme.find("\n## ", start)
    body = readme[start : end if end >= 0 else None]
    blocks = re.findall(r"^```sh\n(.*?)^```$", body, re.M | re.S)
    out = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        if len(lines) != 1:
            raise SystemExit(f"README {SECTION}: a block of {len(lines)} lines, expected one")
        out.append(lines[0])
    return out


if __name__ == "__main__":
    readme = Path(__file__).resolve().parent.parent / "README.md"
    print("\n".join(commands(readme.read_text())))
    sys.exit(0)
