#!/usr/bin/env bash
# Builds the QEMU instruction-counting plugin (icount.c) into OUT (default
# target/qemu-icount/libicount.so at the repository root); rebuilds only when the source
# is newer. Used by scripts/setup, and by spikenas-host when the plugin is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../target/qemu-icount/libicount.so}"
mkdir -p "$(dirname "$out")"
if [ ! -f "$out" ] || [ "$here/icount.c" -nt "$out" ]; then
    gcc -O2 -shared -fPIC -Wall -o "$out.tmp" "$here/icount.c"
    mv "$out.tmp" "$out"
fi
echo "$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
