"""What the scripts in bench/ share: the checkout's root, tests/integration
on sys.path (s3_servers, tls_certs, the fault proxy), whether uvloop is
installed, log() to stderr, and the choice of in-memory S3 stub.

    from _common import REPO, UVLOOP, log  # a script in bench/ runs with bench/ on sys.path
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_INTEGRATION = str(REPO / "tests" / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

# The fault proxy and the Python stub run on uvloop when it is installed
# (make venv installs it): it takes less of a small machine's cores per
# request.
try:
    import uvloop  # noqa: F401
    UVLOOP = True
except ImportError:
    UVLOOP = False


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_stub(choice: str | None = None) -> str:
    """The in-memory S3 stub to use: `choice` when given, else "cpp"
    (build/cpp/s3_stub, bench/s3_stub.cc) where `make build` built it, else
    "python" (the fault proxy's stub mode), saying so."""
    from s3_servers import stub_binary

    if choice:
        return choice
    if stub_binary() is not None:
        return "cpp"
    log("the C++ S3 stub is not built (make build): using the Python one")
    return "python"
