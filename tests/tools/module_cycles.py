"""Fails when two top-level modules of a Rust crate use each other (`use crate::a` in b and
`use crate::b` in a): the layout must show which concept builds on which. Test modules and
comments are left out. Usage: python3 tests/tools/module_cycles.py CRATE_SRC_DIR..."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod tests \{.*", re.DOTALL)
COMMENT = re.compile(r"//.*")


def top_module(src: Path, file: Path) -> str:
    parts = file.relative_to(src).with_suffix("").parts
    return "crate" if parts[0] in ("lib", "main") else parts[0]


def uses(src: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        code = COMMENT.sub("", TESTS.sub("", file.read_text()))
        module = top_module(src, file)
        graph.setdefault(module, set()).update(m for m in USE.findall(code) if m != module)
    return graph


def cycles(src: Path) -> list[str]:
    graph = uses(src)
    return [
        f"{src}: {a} and {b} use each other"
        for a, b in itertools.combinations(sorted(graph), 2)
        if b in graph[a] and a in graph.get(b, set())
    ]


def main(dirs: list[str]) -> int:
    found = [c for d in dirs for c in cycles(Path(d))]
    print("\n".join(found) or f"no module cycles in {', '.join(dirs)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
