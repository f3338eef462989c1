"""tools/check_includes.py: the include directions between C++ modules
(src/stoker/modules.txt), on a small tree of its own and on this one."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "check_includes.py"
_spec = importlib.util.spec_from_file_location("check_includes", SCRIPT)
check_includes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_includes)

MODULES = """\
# bottom to top
base:
image:
decode: base image   # a comment
transform: base image
"""


def make_tree(root: Path, files: dict, modules: str = MODULES) -> Path:
    (root / "include" / "stoker").mkdir(parents=True)
    (root / "include" / "stoker" / "status.h").write_text("#pragma once\n")
    (root / "src" / "stoker").mkdir(parents=True)
    (root / "src" / "stoker" / "modules.txt").write_text(modules)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_allowed_includes_pass(tmp_path):
    root = make_tree(tmp_path, {
        "src/stoker/base/status.cc": '#include "stoker/status.h"\n',
        "src/stoker/image/geometry.h": "#pragma once\n",
        "src/stoker/decode/decode.h": '#include "stoker/image/geometry.h"\n'
                                      '#include "stoker/base/x.h"\n#include <vector>\n',
        "src/stoker/decode/decode.cc": '#include "stoker/decode/decode.h"\n',
        "src/stoker/transform/t.cc": '  #  include "stoker/image/geometry.h"\n',
    })
    assert check_includes.check(root) == []


def test_each_offending_include_is_named_with_file_and_line(tmp_path):
    root = make_tree(tmp_path, {
        "src/stoker/transform/resize.h": '#pragma once\n\n#include "stoker/decode/decode.h"\n',
        "src/stoker/base/log.cc": '#include "stoker/status.h"\n#include "stoker/image/geometry.h"\n',
        "include/stoker/loader.h": '#pragma once\n#include "stoker/base/x.h"\n',
        "src/stoker/decode/d.cc": '#include "stoker/nope/n.h"\n#include "stoker/private.h"\n',
        "src/stoker/extra/e.cc": "\n",
    })
    errors = check_includes.check(root)
    assert errors == [
        "include/stoker/loader.h:2: public header includes src/ (stoker/base/x.h); "
        "include/stoker may include only include/stoker",
        "src/stoker/base/log.cc:2: base may not include image (stoker/image/geometry.h); "
        "base may include no other module (src/stoker/modules.txt)",
        "src/stoker/decode/d.cc:1: includes stoker/nope/n.h: 'nope' is not a module in "
        "src/stoker/modules.txt",
        "src/stoker/decode/d.cc:2: stoker/private.h is not a public header (include/stoker)",
        "src/stoker/extra/e.cc:1: module folder 'extra' is not in src/stoker/modules.txt",
        "src/stoker/transform/resize.h:3: transform may not include decode "
        "(stoker/decode/decode.h); transform may include base, image (src/stoker/modules.txt)",
    ]
    p = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "src/stoker/transform/resize.h:3: transform may not include decode" in p.stderr


@pytest.mark.parametrize("modules, why", [
    ("base:\ndecode: base image\nimage:\n", "'decode' may include 'image', which is not listed above it"),
    ("base:\nbase:\n", "module 'base' listed twice"),
    ("base\n", "expected 'module: deps...'"),
])
def test_a_bad_module_list_is_refused(tmp_path, modules, why):
    root = make_tree(tmp_path, {}, modules)
    p = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)
    assert p.returncode == 1 and why in p.stderr and "modules.txt:" in p.stderr


def test_this_tree_follows_its_module_directions():
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
