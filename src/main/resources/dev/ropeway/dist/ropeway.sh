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

# The jars in the order the startup cache was written with.
cp=
for j in {classpath}; do cp="$cp${cp:+:}$root/lib/$j"; done
# lib/ropeway.aot, the JVM's AOT cache written when the bundle was built (classes loaded and linked, method profiles):
# commands start sooner and compile their kernels sooner. One the JVM cannot use (a jar replaced since) is skipped;
# its messages would otherwise go to standard output. ROPEWAY_AOT=off goes without.
if [ -f "$root/lib/ropeway.aot" ] && [ "${ROPEWAY_AOT:-on}" != off ]; then
  set -- -XX:AOTCache="$root/lib/ropeway.aot" '-Xlog:aot*=off' '-Xlog:cds*=off' -cp "$cp" dev.ropeway.cli.Main "$@"
else
  set -- -cp "$cp" dev.ropeway.cli.Main "$@"
fi
# shellcheck disable=SC2086  # ROPEWAY_JAVA_OPTS and avx are lists of options
exec "$root/runtime/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC \
  -XX:MaxNewSize=256m $avx ${ROPEWAY_JAVA_OPTS:-} "$@"
