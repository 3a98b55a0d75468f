#!/bin/sh
# Ropeway, self-contained: runs on the Java runtime in ../runtime, so the machine needs no JDK.
set -e
self=$(readlink -f "$0" 2>/dev/null || echo "$0")
root=$(cd "$(dirname "$self")/.." && pwd)

# The flags of bin/jdk.sh in a Ropeway checkout. HotSpot stays on 256-bit vectors on Intel AVX-512 parts unless
# told otherwise; the Vector API kernels are faster with 512-bit ones.
avx=
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  avx=-XX:UseAVX=3
fi

DJL_OFFLINE="${DJL_OFFLINE:-true}"
export DJL_OFFLINE
# shellcheck disable=SC2086  # ROPEWAY_JAVA_OPTS and avx are lists of options
exec "$root/runtime/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC \
  -XX:MaxNewSize=256m $avx ${ROPEWAY_JAVA_OPTS:-} -cp "$root/lib/*" dev.ropeway.cli.Main "$@"
