# stoker: `make demo` runs the main job on a generated dataset; `make test`
# runs every test. Both install what they need (apt packages, .venv).
SHELL := /bin/bash
VENV ?= .venv
PEER_VENV ?= .venv-peer
PY := $(VENV)/bin/python
BUILD ?= build/cpp
CMAKE := $(VENV)/bin/cmake
JOBS ?= $(shell nproc)

.PHONY: all deps venv install build test check-includes test-cpp test-python test-integration demo bench \
	bench-s3 peer-venv clean test-asan test-tsan docs-behaviour fuzz-build fuzz fuzz-smoke \
	test-torchvision

all: install build

deps:
	@bash tools/install-deps.sh

# torch 2.13.0 is the CPU build; an unpinned torch would pull a CUDA build.
$(VENV)/.ok: pyproject.toml | deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "torch==2.13.0" numpy pillow pytest nanobind scikit-build-core cmake ninja \
	  boto3 "moto[server]" uvloop cryptography webdataset
	touch $@

venv: $(VENV)/.ok

# The extension and the `stoker` command, built by scikit-build-core into
# build/python (kept between runs, so rebuilds are incremental).
install: venv
	$(VENV)/bin/pip install -q --no-build-isolation --no-deps .

build: venv
	$(CMAKE) -S . -B $(BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCMAKE_BUILD_TYPE=Release -DSTOKER_SANITIZE=$(SANITIZE) >/dev/null
	$(CMAKE) --build $(BUILD) -j $(JOBS)

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-python: install
	$(PY) -m pytest -q tests/python

# A real S3-compatible server (moto) on loopback, started by the tests.
test-integration: install build
	STOKER_TESTS_BINARY=$(BUILD)/stoker_tests $(PY) -m pytest -q tests/integration

# Every #include "stoker/<module>/..." against the directions in
# src/stoker/modules.txt; names the file and line of each one that is not allowed.
check-includes:
	python3 tools/check_includes.py

test: check-includes test-cpp test-python test-integration

# docs/behaviour.md, the table of bad inputs and faults and what stoker does,
# rendered from the rows the Python and integration tests record after their
# assertions (tests/behaviour_log.py); never edited by hand. .ci/run checks
# that the committed file matches what its own test run recorded.
BEHAVIOUR_LOG ?= build/behaviour.jsonl
docs-behaviour: install build
	@mkdir -p $(dir $(BEHAVIOUR_LOG)) && rm -f $(BEHAVIOUR_LOG)
	STOKER_BEHAVIOUR_LOG=$(abspath $(BEHAVIOUR_LOG)) $(PY) -m pytest -q tests/python
	STOKER_BEHAVIOUR_LOG=$(abspath $(BEHAVIOUR_LOG)) STOKER_TESTS_BINARY=$(BUILD)/stoker_tests \
	  $(PY) -m pytest -q tests/integration
	$(PY) tools/render_behaviour.py $(BEHAVIOUR_LOG) --out docs/behaviour.md

# The peer: PyTorch's DataLoader with torchvision. torchvision only imports
# with torch 2.14.1 (a CUDA build, used on the CPU), so it gets its own venv.
# If that cannot be installed, the demo falls back to an exact Pillow
# re-implementation of the torchvision transforms, and says so.
$(PEER_VENV)/.ok:
	python3 -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" pillow numpy pytest
	touch $@

peer-venv:
	-@$(MAKE) --no-print-directory $(PEER_VENV)/.ok

# The comparisons with torchvision the docs quote, against real torchvision
# (the peer venv's torch 2.14.1 + torchvision 0.29.1): the Pillow reference
# the Python suite uses is torchvision pixel for pixel, stoker's transform
# meets the quoted PSNR bounds against torchvision's own output, the peer's
# Pillow fallback equals torchvision, and the crop-distribution constants of
# transform_test.cc agree with torchvision's get_params
# (tools/crop_distribution.py). stoker is imported from the main venv's
# install through a folder that holds only the package, so the peer venv's
# torch is the one loaded.
PEER_PATH := build/peer-path
test-torchvision: install
	$(MAKE) --no-print-directory $(PEER_VENV)/.ok
	$(PEER_VENV)/bin/python -c "import pytest" 2>/dev/null || $(PEER_VENV)/bin/pip install -q pytest
	@mkdir -p $(PEER_PATH) && ln -sfn "$$($(PY) -c 'import os, stoker; print(os.path.dirname(stoker.__file__))')" $(PEER_PATH)/stoker
	PYTHONPATH=$(abspath $(PEER_PATH)) $(PEER_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  tests/against_torchvision tests/python/test_cli.py -k "torchvision"
	$(PEER_VENV)/bin/python tools/crop_distribution.py --torchvision --check src/stoker/transform/transform_test.cc

# Run from the checkout, `stoker demo` finds the comparison with the peer in
# bench/ (demo_compare.py, peers/); the installed command alone runs stoker only.
demo: install peer-venv
	PATH=$(abspath $(VENV))/bin:$$PATH stoker demo

bench: install peer-venv
	$(PY) bench/compare_torch.py

# The C++ suite under sanitizers (ASan + UBSan + LSan, or TSan), each in
# its own build folder. test-asan also builds the extension with ASan +
# UBSan in the same folder and runs the Python suite against it, loaded
# into the venv's CPython with libasan preloaded and LSan on at every
# process exit (tools/sanitizers/test_python.sh; suppressions for CPython's
# and torch's own memory in tools/sanitizers/lsan-python.supp).
# Not the fork tests: GCC 12's libasan has no fork interceptor (newer ones lock
# their allocator around fork), so a child forked while a stoker thread is in malloc can
# block forever on the allocator's lock (seen as an occasional hang of
# test_fork.py under ASan only), and LSan in a child that exits normally
# reports what only the parent's vanished threads referenced.
ASAN_PYTHON_TESTS ?= tests/python --ignore=tests/python/test_fork.py
test-asan: venv
	$(CMAKE) -S . -B build/asan -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOKER_SANITIZE=address -DSTOKER_BUILD_EXAMPLES=OFF \
	  -DSTOKER_BUILD_PYTHON=ON -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	$(CMAKE) --build build/asan -j $(JOBS)
	cd build/asan && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS)
	tools/sanitizers/test_python.sh address build/asan $(PY) -q $(ASAN_PYTHON_TESTS)

# test-tsan runs the in-process part of the Python suite only: child
# interpreters importing torch under TSan take ~40 s each, and TSan does
# not support fork() of a multi-threaded process (the fork tests).
TSAN_PYTHON_TESTS ?= tests/python/test_loader.py tests/python/test_shutdown.py -k \
	"not numpy_without_torch and not interpreter_exit and not kill_9 and not keyboard and not ctrl_c"
test-tsan: venv
	$(CMAKE) -S . -B build/tsan -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOKER_SANITIZE=thread -DSTOKER_BUILD_EXAMPLES=OFF \
	  -DSTOKER_BUILD_PYTHON=ON -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	$(CMAKE) --build build/tsan -j $(JOBS)
	cd build/tsan && ctest --output-on-failure -j $(JOBS)
	tools/sanitizers/test_python.sh thread build/tsan $(PY) -q $(TSAN_PYTHON_TESTS)

# libFuzzer targets (clang, ASan + UBSan) in build/fuzz; `make fuzz` runs each
# for FUZZ_SECONDS, `make fuzz-smoke` for 40 s (CI). A crash, a hang (an
# input over 10 s) or memory over 2 GB fails the target; see docs/fuzzing.md.
CLANG_VERSION ?= 14
FUZZ_BUILD ?= build/fuzz
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= decode manifest uri xml http_reply fields shard_index tar cache_entry

fuzz-build: venv
	@CLANG_VERSION=$(CLANG_VERSION) bash tools/install-deps.sh fuzz
	CC=clang-$(CLANG_VERSION) CXX=clang++-$(CLANG_VERSION) $(CMAKE) -S . -B $(FUZZ_BUILD) -G Ninja \
	  -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSTOKER_BUILD_FUZZERS=ON -DSTOKER_BUILD_TESTS=OFF -DSTOKER_BUILD_EXAMPLES=OFF >/dev/null
	$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	PATH=/usr/lib/llvm-$(CLANG_VERSION)/bin:$$PATH tools/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=40

bench-s3: install build
	$(PY) bench/s3_bench.py

clean:
	rm -rf build
