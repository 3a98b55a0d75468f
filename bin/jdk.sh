# Sourced by the launchers: finds a JDK 25 or newer and Maven, and knows the JVM flags Ropeway needs.
# shellcheck shell=bash

# Tensors live outside the Java heap; what the heap holds is short-lived (kernels' scratch, vectors the JIT has not
# yet compiled away), and an uncapped young generation grew to 2 GB of garbage on a 300 MB model (RSS 2.4 GB against
# 0.7 GB capped, at the same speed).
ROPEWAY_JVM_FLAGS=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC -XX:MaxNewSize=256m)
# HotSpot stays on 256-bit vectors on Intel AVX-512 parts unless told otherwise; the Vector API kernels are faster
# with 512-bit ones (attention about 1.8x).
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  ROPEWAY_JVM_FLAGS+=(-XX:UseAVX=3)
fi

# Prints the feature release (e.g. 25) of the JDK at $1, or nothing.
ropeway_jdk_major() {
  local home="$1" v=""
  [ -x "$home/bin/java" ] && [ -x "$home/bin/javac" ] || return 0
  if [ -f "$home/release" ]; then
    v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")
  fi
  if [ -z "$v" ]; then
    v=$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  fi
  echo "$v"
}

# Prints the home of the first JDK >= 25: $ROPEWAY_JAVA_HOME, $JAVA_HOME, the java on PATH, then the usual folders.
ropeway_find_jdk() {
  local c candidates=()
  [ -n "${ROPEWAY_JAVA_HOME:-}" ] && candidates+=("$ROPEWAY_JAVA_HOME")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/* /opt/java/* /opt/jdk* /usr/local/jdk* /usr/java/* \
           "$HOME"/.sdkman/candidates/java/* "$HOME"/.jdks/* "$HOME"/.local/jdk* \
           /Library/Java/JavaVirtualMachines/*/Contents/Home; do
    [ -d "$c" ] && candidates+=("$c")
  done
  for c in "${candidates[@]}"; do
    local major
    major=$(ropeway_jdk_major "$c")
    if [ -n "$major" ] && [ "$major" -ge 25 ] 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  {
    echo "ropeway: no JDK 25 or newer found (looked at ROPEWAY_JAVA_HOME, JAVA_HOME, the java on PATH,"
    echo "  /usr/lib/jvm, /opt/java, ~/.sdkman and ~/.jdks)."
    echo "  Install one (for example Eclipse Temurin 25) and set JAVA_HOME to it."
  } >&2
  return 1
}

ropeway_require_maven() {
  if ! command -v mvn >/dev/null 2>&1; then
    echo "ropeway: Maven 3.8 or newer is needed to build Ropeway (Debian/Ubuntu: apt-get install maven)." >&2
    return 1
  fi
}

# Writes the AOT cache $2 for the class path $3 with the JDK at $1, unless it is newer than the jar $4 and the jars
# in folder $5. The training run is a short CPU decode benchmark on a tiny random model: startup, model building, prefill
# and decode. A failure leaves no cache (and a note beside it, so that it is not retried until the next build).
ropeway_aot_cache() {
  local jdk="$1" aot="$2" cp="$3" jar="$4" lib="$5"
  if [ -f "$aot" ] && [ ! "$jar" -nt "$aot" ] && [ -z "$(find "$lib" -newer "$aot" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  [ -f "$aot.failed" ] && [ ! "$jar" -nt "$aot.failed" ] && return 0
  rm -f "$aot" "$aot.failed"
  echo "ropeway: writing the JVM's startup cache for this build (once)..." >&2
  local tmp="$aot.$$.tmp" log="$aot.$$.log"
  if (cd "$(dirname "$aot")" && "$jdk/bin/java" "${ROPEWAY_JVM_FLAGS[@]}" -XX:AOTCacheOutput="$tmp" '-Xlog:aot*=off' \
        '-Xlog:cds*=off' -cp "$cp" dev.ropeway.cli.Main bench decode --preset tiny --fill prefill --contexts 64 \
        --tokens 16 --threads 1 --device cpu) >"$log" 2>&1 && [ -s "$tmp" ]; then
    mv -f "$tmp" "$aot"
    rm -f "$log"
  else
    rm -f "$tmp"
    mv -f "$log" "$aot.failed"
    echo "ropeway: no startup cache (the JVM could not write one; its output is in $aot.failed); going on without." >&2
  fi
}
