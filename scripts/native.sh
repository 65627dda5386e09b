#!/usr/bin/env bash
# The native libraries the jar carries: linux-x86_64 and linux-aarch64, linked against glibc 2.17
# symbols (CentOS 7, Amazon Linux 2, Debian 9+, Ubuntu 14.04+) with zig as the linker
# (cargo-zigbuild), so they load on any glibc from 2.17 on. Installs what it needs (fresh CI):
#   bash scripts/native.sh build        # both libraries into target/<triple>/release/
#   bash scripts/native.sh tools        # only the toolchain (rustup target, ziglang, cargo-zigbuild)
#   bash scripts/native.sh qemu-tools   # also qemu-user-static and Debian's arm64 glibc (aarch64 tests)
#   bash scripts/native.sh qemu-test    # the Rust core's tests built for aarch64 (glibc 2.17), run under qemu
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so a build is the same build next month (PyPI packages; see README "Native libraries").
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
GLIBC_FLOOR=2.17
TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)

ensure_tools() {
  for t in "${TARGETS[@]}"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
  done
  if ! command -v cargo-zigbuild >/dev/null || ! python3 -m ziglang version >/dev/null 2>&1; then
    pip install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  fi
}

ensure_qemu_tools() {
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross libgcc-s1-arm64-cross)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build() {
  ensure_tools
  for t in "${TARGETS[@]}"; do
    cargo zigbuild --release --lib --target "$t.$GLIBC_FLOOR"
  done
}

# The core's tests (cargo test, the same files as on x86_64) cross-built for aarch64 against
# glibc 2.17 and run by qemu-aarch64 on Debian's arm64 glibc: the core compiled for aarch64 does
# what the x86_64 build does (no JVM, no JNI: those are not emulated here). The tests that need the real servers run on x86_64 only (they are #[ignore] here). Skipped under
# emulation: assertions on wall-clock latency, which measure qemu rather than the code.
QEMU_SKIP=(a_hung_server_times_out_and_export_never_blocks)
qemu_test() {
  ensure_tools
  ensure_qemu_tools
  local skips=()
  for t in "${QEMU_SKIP[@]}"; do skips+=(--skip "$t"); done
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu" \
    cargo-zigbuild test --profile cross-test --no-fail-fast --target "aarch64-unknown-linux-gnu.$GLIBC_FLOOR" -- "${skips[@]}"
}

case "${1:-build}" in
  tools) ensure_tools ;;
  qemu-tools) ensure_tools; ensure_qemu_tools ;;
  build) build ;;
  qemu-test) qemu_test ;;
  *) echo "usage: $0 [build|tools|qemu-tools|qemu-test]" >&2; exit 2 ;;
esac
