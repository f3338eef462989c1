#!/usr/bin/env python3
"""Checks the include directions between stoker's C++ modules.

src/stoker/modules.txt lists the modules bottom to top, each with the
modules it may include. Every `#include "stoker/<module>/..."` in
src/stoker/<m>/ (sources, headers, tests, benchmarks and fuzz targets) must
name <m> itself or one of those; `#include "stoker/<header>.h"` (the public
API in include/stoker/) is allowed everywhere. Public headers must include
only public headers. Prints each offending file:line with the reason and
exits 1; exits 0 when every include is allowed.

    tools/check_includes.py [REPO]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

INCLUDE = re.compile(r'^\s*#\s*include\s*"stoker/([^"]+)"')
SOURCE_SUFFIXES = {".h", ".hh", ".hpp", ".cc", ".cpp", ".c", ".inc"}

# Files allowed to include a module their own may not, with the reason.
# Keep this short: each entry is a program, not library code.
EXCEPTIONS: Dict[str, Tuple[Set[str], str]] = {
    "src/stoker/decode/decode_fuzz.cc": (
        {"pipeline"}, "fuzzes the decode entry as the loader calls it (pipeline/sample.h)"),
}


def read_modules(path: Path) -> Dict[str, List[str]]:
    """modules.txt -> {module: modules it may include}, in file order.
    Raises ValueError naming the line for a malformed line, a repeated
    module, or a dependency not listed above it (which would allow a cycle)."""
    modules: Dict[str, List[str]] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, deps = line.partition(":")
        name = name.strip()
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"{path}:{n}: expected 'module: deps...', got {raw!r}")
        if name in modules:
            raise ValueError(f"{path}:{n}: module {name!r} listed twice")
        for d in deps.split():
            if d not in modules:
                raise ValueError(f"{path}:{n}: {name!r} may include {d!r}, which is not listed "
                                 f"above it")
        modules[name] = deps.split()
    return modules


def check(repo: Path) -> List[str]:
    """Every offending include as 'file:line: reason'."""
    modules = read_modules(repo / "src" / "stoker" / "modules.txt")
    public = {p.name for p in (repo / "include" / "stoker").glob("*") if p.is_file()}
    errors: List[str] = []

    def files(root: Path):
        return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)

    for f in files(repo / "include" / "stoker"):
        rel = f.relative_to(repo).as_posix()
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m and "/" in m.group(1):
                errors.append(f"{rel}:{n}: public header includes src/ (stoker/{m.group(1)}); "
                              f"include/stoker may include only include/stoker")

    src = repo / "src" / "stoker"
    for f in files(src):
        rel = f.relative_to(repo).as_posix()
        parts = f.relative_to(src).parts
        if len(parts) < 2:
            errors.append(f"{rel}:1: file outside any module folder of src/stoker")
            continue
        own = parts[0]
        if own not in modules:
            errors.append(f"{rel}:1: module folder {own!r} is not in src/stoker/modules.txt")
            continue
        allowed = {own, *modules[own]}
        extra, why = EXCEPTIONS.get(rel, (set(), ""))
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            if "/" not in target:
                if target not in public:
                    errors.append(f"{rel}:{n}: stoker/{target} is not a public header "
                                  f"(include/stoker)")
                continue
            dep = target.split("/", 1)[0]
            if dep not in modules:
                errors.append(f"{rel}:{n}: includes stoker/{target}: {dep!r} is not a module "
                              f"in src/stoker/modules.txt")
            elif dep not in allowed and dep not in extra:
                may = ", ".join(modules[own]) or "no other module"
                errors.append(f"{rel}:{n}: {own} may not include {dep} (stoker/{target}); "
                              f"{own} may include {may} (src/stoker/modules.txt)")
    return errors


def main(argv: List[str]) -> int:
    repo = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    try:
        errors = check(repo)
    except (OSError, ValueError) as e:
        print(f"check_includes: {e}", file=sys.stderr)
        return 1
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_includes: {len(errors)} include(s) against the module directions",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
