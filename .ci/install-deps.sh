#!/usr/bin/env bash
# .ci/install-deps.sh: installs what csp builds, tests and benchmarks with,
# all from Debian 12's own packages (nothing is vendored or downloaded).
#
#   g++ cmake ninja-build        the toolchain (GCC 12, CMake 3.25, Ninja)
#   libboost-context-dev         Boost.Context: coroutine stacks and switches
#   libboost-dev                 Boost.Interprocess (header-only): shm transport
#   libgtest-dev libgmock-dev    GoogleTest / GoogleMock for tests/
#   libbenchmark-dev             Google Benchmark for bench/
#   gnuplot-nox                  csp-bench --plot
#   python3                      helper scripts in tests/ and bench/
#   clang libclang-rt-14-dev     clang and its runtimes (libFuzzer, sanitizers)
#                                for tests/fuzz/run_fuzz.sh; libclang-rt-14-dev
#                                is only a Recommends of clang, and we install
#                                without recommends, so it is named here
#
# Idempotent: when every package is already installed it does nothing (not
# even `apt-get update`), so a warm CI machine loses no time here. Runs as
# root (as CI does); otherwise through sudo if there is one.
set -euo pipefail

packages=(g++ cmake ninja-build libboost-dev libboost-context-dev
          libgtest-dev libgmock-dev libbenchmark-dev gnuplot-nox python3 clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
echo "install-deps: done"
