"""The docs cannot rot: every command they quote parses, the CLI reference is current, every
teaching lab runs end to end (at a tiny size) and leaves its figures where it says, each
handout holds its assignment (and not the instructor's answers), and each lab's notebook is
what its handout and starter generate.

Conventions the docs follow (docs/labs/README.md says them to authors):

* In a lab handout, the ```bash blocks are the lab's steps: this test runs them, in order, in
  one shell. Optional or longer commands go in ```sh blocks, which are only parsed.
* Training commands in the handouts end with ``$LAB_SET``: empty for a student; here it is
  set to shrink the lab (1 epoch, 1 fold) so that all four labs run in a few minutes.
* A quoted command that needs a GPU carries a ``# GPU-only`` comment and is only parsed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from vacnn_tf.labs import LABS as LAB_SPECS, assignment_dir
from vacnn_tf.labs.handouts import FENCE, code_blocks, handout_path, lab_script
from vacnn_tf.labs.notebooks import notebook_text

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LABS = sorted((ROOT / "docs" / "labs").glob("lab*.md"))
# What instructors read (not linked from docs/index.md, not in the package); its commands are checked too.
INSTRUCTOR_DOCS = sorted((ROOT / "instructor").rglob("*.md"))
# What the test passes as $LAB_SET: the smallest run that still exercises every stage.
TINY_SET = "--set train.epochs=1 --set train.pretrain_epochs=1 --set protocol.max_folds=1"

_SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*(?:#.*)?$")
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_LEADING_WORDS = {"do", "then", "else", "time", "!"}


class Command(NamedTuple):
    """One quoted command: where it is, its words, and whether it is a whole command line."""

    where: str
    argv: list[str]
    complete: bool  # False for an inline mention such as `vacnn corpus-stats` in prose
    gpu_only: bool


def _logical_lines(body: str) -> Iterator[tuple[int, str]]:
    pending, start = "", 0
    for number, line in enumerate(body.splitlines()):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _expand(token: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), token)


def _segments(line: str, variables: dict[str, str]) -> Iterator[list[str]]:
    """Simple commands of one shell line (split on ; && || |), variables expanded, $LAB_SET dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: prose in an untagged block (a file tree, a table)
        if re.search(r"\bvacnn\b|reproduce\.", line):
            raise
        return
    for token in tokens + [";"]:
        if token and set(token) <= set(";&|"):
            while words and (_ASSIGN.match(words[0]) or words[0] in _LEADING_WORDS):
                words.pop(0)
            if words:
                yield words
            words = []
        elif token not in ("$LAB_SET", "${LAB_SET}"):
            words.append(_expand(token, variables))


def _tool(words: list[str]) -> list[str] | None:
    """``["vacnn", ...]`` or ``["reproduce.tableN", ...]`` when the words run one of ours."""
    head = words[0]
    if head == "vacnn" or head.endswith("/vacnn"):
        return ["vacnn", *words[1:]]
    if (head.startswith("python") or head.endswith("/python") or head.endswith("/python3")) and len(words) > 2 \
            and words[1] == "-m" and words[2].startswith("reproduce."):
        return words[2:]
    return None


def doc_commands(paths: list[Path] = DOCS) -> list[Command]:
    """Every ``vacnn ...`` and ``python -m reproduce...`` command quoted in ``paths``."""
    found: list[Command] = []
    for path in paths:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        variables = {"LAB_SET": "", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}  # as a job array sets them
        for lang, body, first_line in code_blocks(text):
            if lang not in _SHELL_LANGS:
                continue
            for offset, line in _logical_lines(body):
                assign = _ASSIGN.match(line.strip())
                if assign:
                    variables[assign.group(1)] = _expand(assign.group(2), variables)
                for words in _segments(line, variables):
                    argv = _tool(words)
                    if argv:
                        found.append(Command(f"{rel}:{first_line + offset}", argv, True, "gpu-only" in line.lower()))
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for match in re.finditer(r"`([^`\n]+)`", prose):
            span = match.group(1).strip()
            if span.startswith("vacnn ") or span.startswith("python -m reproduce."):
                words = shlex.split(span)
                line_no = prose.count("\n", 0, match.start()) + 1
                found.append(Command(f"{rel}:{line_no}", _tool(words) or words, False, False))
    return found


def _vacnn_subparser(words: list[str]):
    """The parser of ``vacnn WORDS...`` and the words left after the command words."""
    import argparse

    from vacnn_tf.cli import build_parser

    parser = build_parser()
    rest = list(words)
    while rest:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or rest[0] not in sub.choices:
            break
        parser = sub.choices[rest.pop(0)]
    return parser, rest


def check_command(command: Command) -> None:
    """Parse a whole command with the real parser; for an inline mention, check its words exist."""
    from reproduce.common import parser as reproduce_parser

    argv = command.argv
    if argv[0] == "vacnn":
        if command.complete:
            from vacnn_tf.cli import build_parser

            build_parser().parse_args(argv[1:])
            return
        parser, rest = _vacnn_subparser(argv[1:])
        assert parser.prog != "vacnn" or not rest or rest[0].startswith("-"), f"unknown command {' '.join(argv)}"
    else:
        import importlib.util

        assert importlib.util.find_spec(argv[0]) is not None, f"no module {argv[0]}"
        parser, rest = reproduce_parser(""), argv[1:]
        if command.complete:
            parser.parse_args(rest)
            return
    known = {s for a in parser._actions for s in a.option_strings}
    unknown = [w.split("=")[0] for w in rest if w.startswith("--") and w.split("=")[0] not in known]
    assert not unknown, f"options {unknown} are not options of {parser.prog}"


COMMANDS = doc_commands(DOCS + INSTRUCTOR_DOCS)


def test_the_docs_quote_commands():
    """The collector works: it finds the commands we know are there."""
    text = " ".join(" ".join(c.argv) for c in COMMANDS)
    for expected in ("vacnn synth", "vacnn finetune", "vacnn figures attention", "vacnn export", "reproduce.table10"):
        assert expected in text


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where} {' '.join(c.argv[:3])}" for c in COMMANDS])
def test_every_quoted_command_parses(command: Command):
    try:
        check_command(command)
    except SystemExit as exit_:
        if exit_.code == 0:  # `vacnn --version`, `--help`
            return
        pytest.fail(f"{command.where}: `{' '.join(command.argv)}` does not parse (exit {exit_.code})")


def test_cli_reference_is_current():
    from vacnn_tf.cli.reference import reference_markdown

    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == reference_markdown(), "docs/cli.md is stale: python -m vacnn_tf.cli.reference > docs/cli.md"


def test_every_doc_is_linked_from_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    for path in DOCS:
        if path.parent == ROOT or path.name == "index.md":
            continue
        rel = path.relative_to(ROOT / "docs").as_posix()
        assert f"({rel})" in index, f"docs/index.md does not link {rel}"


def test_lab_scripts_are_found():
    assert [p.name for p in LABS] == ["lab1-features.md", "lab2-attention.md", "lab3-transfer.md", "lab4-deployment.md"]
    for path in LABS:
        assert "labs-out/" in lab_script(path), f"{path.name} should write under labs-out/"


def _training_lines_have_lab_set(path: Path) -> list[str]:
    missing = []
    for _, line in _logical_lines(lab_script(path)):
        if re.search(r"\bvacnn (pretrain|finetune)\b", line) and "$LAB_SET" not in line:
            missing.append(line.strip())
    return missing


def test_training_commands_in_labs_take_lab_set():
    for path in LABS:
        assert not _training_lines_have_lab_set(path), f"{path.name}: add $LAB_SET"


def test_lab_scripts_close_no_pipe_early():
    # The timing benchmark runs a handout under `bash -euo pipefail`: `| head` ends the pipe before
    # the writer finishes, which fails the lab (exit 32, a broken pipe) whenever the output is long.
    for path in LABS:
        early = [line.strip() for _, line in _logical_lines(lab_script(path)) if re.search(r"\|\s*head\b", line)]
        assert not early, f"{path.name}: {early} (use sed -n 1,Np, which reads to the end)"


LAB_NUMBERS = sorted(LAB_SPECS)


@pytest.mark.parametrize("number", LAB_NUMBERS)
def test_notebooks_match_their_handout_and_starter(number: int):
    spec = LAB_SPECS[number]
    path = ROOT / "docs" / "labs" / f"{spec.stem}.ipynb"
    assert path.is_file() and path.read_text() == notebook_text(number), (
        f"{path.name} is stale: python -m vacnn_tf.labs.notebooks docs/labs")
    doc = json.loads(path.read_text())
    assert doc["nbformat"] == 4 and doc["nbformat_minor"] >= 5
    ids = [cell["id"] for cell in doc["cells"]]
    assert len(set(ids)) == len(ids)
    sources = ["".join(cell["source"]) for cell in doc["cells"] if cell["cell_type"] == "code"]
    bash_blocks = [body for lang, body, _ in code_blocks(handout_path(number).read_text()) if lang == "bash"]
    assert all(any(block.strip() in source for source in sources) for block in bash_blocks)
    assert f"%%writefile {assignment_dir(number)}/{spec.module}" in "\n".join(sources)


@pytest.mark.parametrize("number", LAB_NUMBERS)
def test_handouts_hold_the_assignment_not_the_answers(number: int):
    text = handout_path(number).read_text()
    assert "For the instructor" not in text and "## Assignment" in text
    commands = "\n".join(body for lang, body, _ in code_blocks(text) if lang == "sh")
    folder = assignment_dir(number)
    assert f"vacnn lab start {number} {folder}" in commands and f"vacnn lab grade {number} {folder}" in commands
    answers = ROOT / "instructor" / "answers" / LAB_SPECS[number].handout
    assert answers.is_file() and "## The assignment" in answers.read_text()


def run_lab(path: Path, workdir: Path, lab_set: str = TINY_SET, timeout: int = 1800) -> tuple[float, str]:
    """Run a handout's ```bash blocks in ``workdir`` as a student would (``--config configs/...``
    names the configs the package ships, from any folder); returns (seconds, output)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"  # `python -m reproduce...` as from the repo root
    env["LAB_SET"] = lab_set
    env["MPLBACKEND"] = "Agg"
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", lab_script(path)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{path.name} failed (exit {proc.returncode}):\n{output[-4000:]}"
    return elapsed, output


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_lab_runs_and_leaves_its_figures(lab: Path, tmp_path_factory):
    workdir = tmp_path_factory.getbasetemp() / "labs"  # shared: later labs reuse the corpus and caches
    run_lab(lab, workdir)
    text = lab.read_text()
    promised = sorted(set(re.findall(r"labs-out/lab\d/[\w./-]+\.(?:png|csv|md|json)\b", text)))
    assert promised, f"{lab.name} names no output file"
    missing = [p for p in promised if not (workdir / p).is_file()]
    assert not missing, f"{lab.name} promises files it did not write: {missing}"
