"""The code's own size rules (docs/layout.md): a function of the package and the models fits
on a screen, 50 lines with its docstring, argparse tables aside; a module stays under 400
lines. Read from the source alone (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "lars_hvd").rglob("*.py"), *(REPO / "models").rglob("*.py")])
FUNCTION_LINES, MODULE_LINES = 50, 400
# Functions that are a table of argparse options, one call per option.
ARGPARSE_TABLES = {"lars_hvd/bench/__main__.py:parser"}


def long_functions(path: Path, limit: int, root: Path = REPO) -> list[str]:
    """``file:function (N lines)`` for each function of ``path`` over ``limit`` lines (the
    file named from ``root``)."""
    name = path.relative_to(root).as_posix()
    return [f"{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit
            and f"{name}:{node.name}" not in ARGPARSE_TABLES]


def test_no_function_is_over_50_lines():
    assert SOURCES
    found = [entry for path in SOURCES for entry in long_functions(path, FUNCTION_LINES)]
    assert not found, f"over {FUNCTION_LINES} lines (split them): {found}"


def test_the_check_sees_a_long_function_and_passes_a_table(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    (tmp_path / "lars_hvd" / "bench").mkdir(parents=True)
    path = tmp_path / "lars_hvd" / "bench" / "__main__.py"
    path.write_text(f"def too_long():\n{body}\n\n\ndef parser():\n{body}\n")
    assert long_functions(path, FUNCTION_LINES, tmp_path) == [
        f"lars_hvd/bench/__main__.py:too_long ({FUNCTION_LINES + 1} lines)"]


def test_no_module_is_over_400_lines():
    found = {path.relative_to(REPO).as_posix(): lines for path in SOURCES
             if (lines := len(path.read_text().splitlines())) > MODULE_LINES}
    assert not found, f"over {MODULE_LINES} lines (split them by idea): {found}"
