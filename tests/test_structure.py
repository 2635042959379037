"""The house's arrows point one way (issue 24): no module of the app imports, even inside a function, a module that
imports it back, directly or through others. grimp (installed with import-linter) reads every import."""
from __future__ import annotations

import grimp

PACKAGES = ("labeling", "training", "workers", "webapp")


def _cycles(adjacent: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in adjacent[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in adjacent:
        if module not in index:
            visit(module)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_module_imports_one_that_imports_it_back():
    graph = grimp.build_graph(*PACKAGES)
    modules = {module for module in graph.modules if ".migrations" not in module}
    adjacent = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if n in modules) for m in sorted(modules)}

    assert _cycles(adjacent) == []
