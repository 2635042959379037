"""A newcomer finds a rule without reading an 800-line file (issue 24): no module of the app or the benches over
500 lines and no function over 80, migrations and tests aside. A file or function that must stay longer is named
in ALLOWED with the reason."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labeling", "training", "workers", "webapp", "bench", "scripts")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
# "path" or "path:function" -> why it stays longer.
ALLOWED: dict[str, str] = {}


def _sources() -> list[Path]:
    files = [ROOT / "manage.py"]
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def _long_functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.name, length))
    return found


def test_the_checks_see_a_long_function(tmp_path):
    source = tmp_path / "long.py"
    source.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert _long_functions(source) == [("f", MAX_FUNCTION_LINES + 1)]


def test_no_module_over_500_lines():
    too_long = {
        str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert {k: v for k, v in too_long.items() if k not in ALLOWED} == {}


def test_no_function_over_80_lines():
    too_long = {}
    for path in _sources():
        relative = str(path.relative_to(ROOT))
        for name, length in _long_functions(path):
            if f"{relative}:{name}" not in ALLOWED:
                too_long[f"{relative}:{name}"] = length
    assert too_long == {}
