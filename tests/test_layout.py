"""The package layout: one folder per stage, and no import that runs against the flow (read from the source, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vacnn_tf"

# docs/architecture.md's module map, bottom up: a module imports only from its own layer or the
# layers before it, and inside a layer only from its own package (training and serving never
# import each other; nor do bench and labs)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "config"),
    ("storage",),
    ("corpora",),
    ("features",),
    ("datasets",),
    ("models",),
    ("evaluation",),
    ("training", "serving"),
    ("bench", "labs"),
    ("cli",),
    ("__main__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
TOP_LEVEL_MODULES = {"__init__", "__main__", "bench", "config", "storage"}


def _part(module: str) -> str:
    """The top-level part of ``vacnn_tf`` that dotted ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every vacnn_tf import in ``path``, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vacnn_tf"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "vacnn_tf":
            if node.module == "vacnn_tf":
                found += [(node.lineno, f"vacnn_tf.{a.name}" if a.name in RANK else "vacnn_tf") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "starter" not in p.relative_to(PACKAGE).parts)


def test_top_level_holds_only_the_shared_modules():
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat == TOP_LEVEL_MODULES, f"a module of a stage belongs in its folder: {sorted(flat - TOP_LEVEL_MODULES)}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {name for names in LAYERS for name in names} - TOP_LEVEL_MODULES


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_import_runs_against_the_flow(path: Path):
    here = path.relative_to(PACKAGE).parts
    part = here[0].removesuffix(".py")
    upward = []
    for line, module in _imports(path):
        there = _part(module)
        if part == there or there in ("__init__", "config"):
            continue
        if RANK[there] > RANK[part] or (RANK[there] == RANK[part] and there != part):
            upward.append(f"line {line}: {module}")
    assert not upward, f"vacnn_tf/{'/'.join(here)} imports against the flow of docs/architecture.md: {upward}"
