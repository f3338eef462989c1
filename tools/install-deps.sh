#!/usr/bin/env bash
# Installs the system libraries stoker builds against (Debian packages).
# Idempotent: does nothing when they are already there.
#
#   tools/install-deps.sh         what the library, tests and Python package need
#   tools/install-deps.sh fuzz    also clang, libFuzzer (compiler-rt) and
#                                 llvm-symbolizer, for make fuzz; version
#                                 CLANG_VERSION (default 14, Debian 12's)
set -euo pipefail
pkgs=(pkg-config libjpeg62-turbo-dev libspng-dev libopencv-imgproc-dev libgtest-dev libgmock-dev
      libjpeg-turbo-progs  # cjpeg -arithmetic: the arithmetic-coded JPEG in tests/python
      libcurl4-openssl-dev libssl-dev)
if [ "${1:-}" = fuzz ]; then
  v=${CLANG_VERSION:-14}
  pkgs+=("clang-$v" "libclang-rt-$v-dev" "llvm-$v")
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
