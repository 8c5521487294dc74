"""The documentation is checked by running it.

Two kinds of checks:

* every script in ``examples/`` runs to completion as a subprocess, in a
  fresh temporary directory, with an isolated git identity;
* every code block of ``docs/`` marked as runnable is executed.

Runnable blocks
---------------
A fenced block is runnable when the line just before its opening fence is
the HTML comment ``<!-- runnable -->`` (invisible in the built site)::

    <!-- runnable -->
    ```python
    print("hello")
    ```

Fences may be indented (inside admonitions or tabs). The language decides how
a block runs: ``python`` blocks are executed in one Python namespace shared by
the whole page (like a notebook), ``sh``/``bash``/``shell`` blocks by
``bash -euo pipefail``. All blocks of a page run in order, in one session
that starts in an empty temporary directory: a ``cd`` in a shell block holds
for the blocks after it, Python blocks included, as in a terminal where the
reader types them one after the other. Environment variables set in a shell
block do not carry over. Git's identity comes from a temporary global git
config (``user.name`` "Docs Reader"), and ``git-hangar`` is on ``PATH``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
MARKER = "<!-- runnable -->"
PYTHON_LANGS = {"python", "py"}
SHELL_LANGS = {"sh", "bash", "shell"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")

#: seconds one page or one example may take before the test fails
TIMEOUT = 600


@dataclass(frozen=True)
class Block:
    """One runnable block: where it is, its language, its code."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str


def extract_runnable(text: str, page: str = "<page>") -> list[Block]:
    """The runnable blocks of a Markdown page, in order.

    Raises
    ------
    ValueError
        If a marker is not followed by a fenced block, a block is not closed,
        or its language is neither Python nor shell.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        j = i + 1
        m = _FENCE.match(lines[j]) if j < len(lines) else None
        if m is None:
            raise ValueError(f"{page}:{i + 1}: {MARKER} must be followed by a fenced code block")
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip()
        lang = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
        if lang not in PYTHON_LANGS | SHELL_LANGS:
            raise ValueError(
                f"{page}:{j + 1}: runnable block has language {lang!r}; "
                f"use one of {sorted(PYTHON_LANGS | SHELL_LANGS)}"
            )
        body: list[str] = []
        k = j + 1
        while k < len(lines):
            stripped = lines[k].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            line = lines[k]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            k += 1
        else:
            raise ValueError(f"{page}:{j + 1}: code block is not closed")
        code = "\n".join(body) + "\n"
        blocks.append(Block(page, j + 1, "python" if lang in PYTHON_LANGS else "sh", code))
        i = k + 1
    return blocks


# The driver runs one page's blocks in one interpreter: Python blocks share a
# namespace, shell blocks run through bash; the working directory carries over.
_DRIVER = r"""
import json, os, subprocess, sys, tempfile, traceback
steps = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
cwd_file = os.path.join(tempfile.mkdtemp(prefix="docs-cwd-"), "cwd")
for step in steps:
    where = f"{step['page']}:{step['line']}"
    print(f"----- {where} ({step['lang']})", flush=True)
    if step["lang"] == "python":
        try:
            exec(compile(step["code"], where, "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: python block at {where}", flush=True)
            sys.exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
    else:
        script = step["code"] + '\npwd -P > "$DOCS_CWD_FILE"\n'
        env = dict(os.environ, DOCS_CWD_FILE=cwd_file)
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=os.getcwd(),
                           env=env)
        if r.returncode != 0:
            print(f"FAILED: shell block at {where} exited {r.returncode}", flush=True)
            sys.exit(1)
        with open(cwd_file) as f:
            os.chdir(f.read().strip())
"""


def reader_env(home: Path) -> dict[str, str]:
    """Environment of a new user: a git identity in a fresh home, tools on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Docs Reader\n\temail = reader@example.org\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PYTEST_", "COV_"))}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_CONFIG_NOSYSTEM": "1",
            "PATH": os.pathsep.join(
                [str(Path(sys.executable).parent), str(ROOT), env.get("PATH", "")]
            ),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _runnable_pages() -> list[Path]:
    return [p for p in _pages() if MARKER in p.read_text()]


def _examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py"))


def _fail_with_output(what: str, r: subprocess.CompletedProcess[str]) -> None:
    out = (r.stdout or "")[-12000:]
    err = (r.stderr or "")[-12000:]
    pytest.fail(f"{what} exited {r.returncode}\n--- stdout\n{out}\n--- stderr\n{err}")


# ---- the extractor itself --------------------------------------------------------
def test_extract_runnable_finds_marked_blocks_only() -> None:
    text = (
        "# Page\n"
        "```python\nprint('not marked')\n```\n"
        f"{MARKER}\n```python\nx = 1\n```\n"
        "!!! note\n"
        f"    {MARKER}\n    ```sh\n    echo indented\n      kept\n    ```\n"
    )
    blocks = extract_runnable(text, "p.md")
    assert [(b.lang, b.code, b.line) for b in blocks] == [
        ("python", "x = 1\n", 6),
        ("sh", "echo indented\n  kept\n", 11),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        (f"{MARKER}\nplain text\n", "must be followed by a fenced code block"),
        (f"{MARKER}\n```text\nx\n```\n", "language 'text'"),
        (f"{MARKER}\n```python\nx = 1\n", "not closed"),
        (f"{MARKER}\n", "must be followed"),
    ],
)
def test_extract_runnable_rejects_malformed_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_runnable(text, "p.md")


def test_driver_reports_the_failing_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        f"{MARKER}\n```sh\nmkdir sub && cd sub\n```\n"
        f"{MARKER}\n```python\nimport os\nassert os.path.basename(os.getcwd()) == 'sub'\n```\n"
        f"{MARKER}\n```python\nraise SystemExit(3)\n```\n"
    )
    r = _run_page(page, tmp_path / "session")
    # the cd of the first block held for the second; the third one failed
    assert r.returncode != 0
    assert r.stdout.rstrip().endswith("page.md:11"), r.stdout
    assert "FAILED: python block" in r.stdout and "SystemExit: 3" in r.stderr


# ---- the documentation -------------------------------------------------------------
def test_docs_have_runnable_blocks() -> None:
    """Guard against a marker typo silently turning every check off."""
    blocks = [b for p in _pages() for b in extract_runnable(p.read_text(), p.name)]
    assert len(blocks) >= 10, "the docs should hold runnable examples"
    assert {b.lang for b in blocks} == {"python", "sh"}


def test_every_example_is_shown_in_a_tutorial() -> None:
    """Each example script is included (pymdownx.snippets) by some docs page."""
    text = "\n".join(p.read_text() for p in _pages())
    missing = [e.name for e in _examples() if f'--8<-- "examples/{e.name}' not in text]
    assert not missing, f"examples not included in any docs page: {missing}"


def _run_page(page: Path, session: Path) -> subprocess.CompletedProcess[str]:
    rel = page.relative_to(DOCS) if page.is_relative_to(DOCS) else page
    blocks = extract_runnable(page.read_text(), str(rel))
    work = session / "work"
    work.mkdir(parents=True)
    steps = session / "steps.json"
    steps.write_text(json.dumps([b.__dict__ for b in blocks]))
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, str(steps)],
        cwd=work,
        env=reader_env(session / "home"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_runnable_blocks_of_page(page: Path, tmp_path: Path) -> None:
    r = _run_page(page, tmp_path)
    if r.returncode != 0:
        _fail_with_output(f"runnable blocks of docs/{page.relative_to(DOCS)}", r)


#: optional frameworks an example may import: the pip command that brings each
OPTIONAL = {"torch": 'pip install -e ".[torch]"', "tensorflow": 'pip install -e ".[tensorflow]"'}


def _skip_unless_installed(
    script: Path, installed=lambda name: find_spec(name) is not None
) -> None:
    """An example of an optional loader skips, saying why, without its framework
    (unless ``HANGAR_REQUIRE_FRAMEWORKS`` is set, as CI does: then it runs and fails)."""
    if os.environ.get("HANGAR_REQUIRE_FRAMEWORKS"):
        return
    text = script.read_text()
    for module, command in OPTIONAL.items():
        if re.search(rf"^(import|from) {module}\b", text, re.M) and not installed(module):
            pytest.skip(f"examples/{script.name} needs {module}: {command}")


@pytest.mark.slow
@pytest.mark.parametrize("script", _examples(), ids=lambda p: p.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    """Each example runs as the README says (no arguments) and leaves nothing
    behind in the temporary directory it worked in."""
    _skip_unless_installed(script)
    work = tmp_path / "work"
    work.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = reader_env(tmp_path / "home")
    env["TMPDIR"] = str(tmp)
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if r.returncode != 0:
        _fail_with_output(f"examples/{script.name}", r)
    assert "Warning" not in r.stderr, r.stderr
    # torch keeps a kernel cache there (torchinductor_USER): its own, not the example's
    left = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_"))
    assert not left, f"examples/{script.name} left {left} in its temporary directory"
    assert not any(work.iterdir()), "an example writes nothing where it is run from"


def test_optional_examples_say_what_they_need(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch, the torch example skips with the command that installs it."""
    monkeypatch.delenv("HANGAR_REQUIRE_FRAMEWORKS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs torch: pip install"):
        _skip_unless_installed(EXAMPLES / "train_pytorch.py", installed=lambda name: False)
    # an example that needs nothing optional runs anywhere
    _skip_unless_installed(EXAMPLES / "mnist_walkthrough.py", installed=lambda name: False)


@pytest.mark.slow
def test_readme_example_runs(tmp_path: Path) -> None:
    """The README's code is marked runnable and runs, like a docs page."""
    readme = ROOT / "README.md"
    assert extract_runnable(readme.read_text(), "README.md"), "mark the README's example runnable"
    r = _run_page(readme, tmp_path)
    if r.returncode != 0:
        _fail_with_output("runnable blocks of README.md", r)
    assert "Warning" not in r.stderr, r.stderr  # the first lines a newcomer runs


def test_comparison_facts_have_sources() -> None:
    """Every fact about another tool on the comparison page carries a footnote
    whose definition links to a source."""
    text = (DOCS / "comparison.md").read_text()
    defs = dict(re.findall(r"^\[\^([\w-]+)\]:(.*)$", text, re.M))
    used = set(re.findall(r"\[\^([\w-]+)\](?!:)", text))
    assert used, "the comparison page should cite its sources"
    assert not used - defs.keys(), f"footnotes used but not defined: {sorted(used - defs.keys())}"
    assert not defs.keys() - used, f"footnotes defined but not used: {sorted(defs.keys() - used)}"
    unlinked = [k for k, v in defs.items() if not re.search(r"<https://[^>\s]+>", v)]
    assert not unlinked, f"footnotes without a link: {unlinked}"

    unsourced: list[str] = []
    lines = text.splitlines()
    # the table: every cell about another tool (all columns after hangar-git)
    header = next(i for i, line in enumerate(lines) if line.startswith("| |"))
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        unsourced += [f"table, {cells[0]}: {c}" for c in cells[2:] if "[^" not in c]
    # the sections on the other tools: every bullet (bullets may wrap)
    section = ""
    bullet: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("- ") or not line.startswith("  "):
            if bullet and section != "hangar-git" and "[^" not in " ".join(bullet):
                unsourced.append(f"{section}: {' '.join(bullet)}")
            bullet = [line] if line.startswith("- ") else []
        elif bullet:
            bullet.append(line.strip())
        if line.startswith("## "):
            section = line[3:].strip()
    assert not unsourced, "facts without a source:\n" + "\n".join(unsourced)


def test_readme_links_resolve() -> None:
    """The README's relative links point at files that exist."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README should link into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_ci_runs_the_readme_commands_as_written() -> None:
    """``.ci/run`` takes its commands from the README, so the two cannot drift:
    the extractor finds the install, test and slow-test commands, in order."""
    r = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "readme_commands.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    install, tests, slow = r.stdout.splitlines()
    assert install.startswith('pip install -e ".[test]" && python examples/')
    assert tests == "python -m pytest -q"
    assert slow == "python -m pytest -q -m slow"
    readme = (ROOT / "README.md").read_text()
    assert all(f"```sh\n{c}\n```" in readme for c in (install, tests, slow))
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_commands.py" in ci and 'bash -euo pipefail -c "$tests"' in ci
