#!/usr/bin/env bash
# Compiles the kernel programs in ebpf/ into the objects committed beside them (ebpf/*.o), so
# building wanlb needs no clang. Run it after changing a program or ebpf/wanlb.h.
#
#   scripts/build-ebpf.sh            regenerate ebpf/*.o
#   scripts/build-ebpf.sh --check    fail if the committed objects differ from what the
#                                    sources compile to (CI runs this)
#
# The compiler is pinned to Debian 12's clang-16 (the objects were made with 1:16.0.6-15~deb12u1,
# kernel headers from linux-libc-dev 6.1), and nothing of where the checkout lives ends up in an
# object: sources are compiled by relative name and the DWARF debug info is stripped (the BTF
# the loader needs stays).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_tools clang-16:clang-16 llvm-strip-16:llvm-16 dpkg-architecture:dpkg-dev
[ -f /usr/include/bpf/bpf_helpers.h ] || ensure_packages libbpf-dev
[ -f /usr/include/linux/bpf.h ] || ensure_packages linux-libc-dev

check=false
[ "${1:-}" = --check ] && check=true
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

cd ebpf
for src in *.c; do
  obj="${src%.c}.o"
  clang-16 -O2 -g -target bpfel -Wall -Werror -I "/usr/include/$multiarch" \
    -fdebug-prefix-map="$PWD"=. -c "$src" -o "$out/$obj"
  llvm-strip-16 --strip-debug "$out/$obj"
  if $check; then
    if ! cmp -s "$out/$obj" "$obj"; then
      echo "ebpf/$obj differs from what ebpf/$src compiles to with $(clang-16 --version | head -1): run scripts/build-ebpf.sh and commit the result" >&2
      exit 1
    fi
  else
    cp "$out/$obj" "$obj"
    echo "ebpf/$obj"
  fi
done
$check && echo "ebpf objects match their sources" || true
