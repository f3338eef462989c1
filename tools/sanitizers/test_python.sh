#!/usr/bin/env bash
# Runs pytest against a sanitizer build of the extension, loaded into the
# ordinary (uninstrumented) CPython of the venv.
#
#   tools/sanitizers/test_python.sh address|thread BUILD_DIR PYTHON [pytest args...]
#
# BUILD_DIR holds the _core extension built with STOKER_SANITIZE=address
# (ASan + UBSan + LSan) or thread (TSan). It is staged next to a copy of the pure-Python
# package in BUILD_DIR/pkg, which goes first on PYTHONPATH, so the tests and
# every child interpreter they start import the sanitized build. The
# sanitizer runtime must be the process's first library: it is preloaded.
# UBSan halts on the first error; LSan checks at each process's exit, with
# tools/sanitizers/lsan-python.supp for CPython's and torch's own memory.
set -euo pipefail
kind=$1 build=$(cd "$2" && pwd) python=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

so=$(ls "$build"/_core*.so)
pkg=$build/pkg
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r "$root/python/stoker" "$pkg/stoker"
find "$pkg" -name __pycache__ -prune -exec rm -rf {} +
cp "$so" "$pkg/stoker/"

case $kind in
  address)
    # libstdc++ too: ASan resolves its __cxa_throw interceptor when it
    # starts, and CPython itself does not load libstdc++.
    runtime=$(${CXX:-c++} -print-file-name=libasan.so)
    export LD_PRELOAD="$runtime $(${CXX:-c++} -print-file-name=libstdc++.so)"
    # detect_leaks: LSan at exit. Python leaves threads it never joins and
    # memory it never frees; the suppressions cover the interpreter's and
    # torch's allocators, not stoker's.
    # allocator_may_return_null: an allocation too large to satisfy throws
    # std::bad_alloc, as without ASan (stoker turns it into a per-sample
    # error; test_file_too_large_to_hold checks that) instead of aborting.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:allocator_may_return_null=1:${ASAN_OPTIONS:-}
    export LSAN_OPTIONS=suppressions=$here/lsan-python.supp:print_suppressions=0:${LSAN_OPTIONS:-}
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}
    ;;
  thread)
    runtime=$(${CXX:-c++} -print-file-name=libtsan.so)
    export LD_PRELOAD="$runtime $(${CXX:-c++} -print-file-name=libstdc++.so)"
    # CPython's GIL is a pthread mutex + condition variable, which TSan
    # intercepts, so hand-offs through the GIL are seen. CPython and torch
    # are not instrumented: races are found in stoker's code (and where it
    # meets intercepted calls such as free), not inside them.
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}
    ;;
  *)
    echo "unknown sanitizer '$kind' (address, thread)" >&2
    exit 2
    ;;
esac

export PYTHONPATH=$pkg${PYTHONPATH:+:$PYTHONPATH}
# The staged package, not the one installed in the venv.
"$python" -c "import stoker, sys; p = stoker.__file__; sys.exit(0 if p.startswith('$pkg') else 'not the sanitized build: ' + p)"
cd "$root"
exec "$python" -m pytest "$@"
