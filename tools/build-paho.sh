#!/bin/sh
# Usage: tools/build-paho.sh PAHO_SRC OUT
# Builds paho.mqtt.c from its source (a release tarball or a source
# directory) for speed: PAHO_HIGH_PERFORMANCE=ON (no stack tracing, no heap
# tracking), with TLS (libpaho-mqtt3as), as a static, position-independent
# library, installed into OUT/install (include/, lib/libpaho-mqtt3as.a).
# The Makefile runs it for `make PAHO_SRC=...`; it builds only once per OUT.
set -e
src=$1
out=$2
if [ -z "$src" ] || [ -z "$out" ]; then
  echo "usage: tools/build-paho.sh PAHO_SRC OUT" >&2
  exit 2
fi
for tool in cmake cc; do
  command -v $tool >/dev/null 2>&1 || { echo "build-paho: $tool is missing (apt-get install cmake gcc)" >&2; exit 1; }
done
[ -f /usr/include/openssl/ssl.h ] || [ -n "$OPENSSL_ROOT_DIR" ] ||
  { echo "build-paho: OpenSSL's headers are missing (apt-get install libssl-dev)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -f "$out/install/lib/libpaho-mqtt3as.a" ]; then exit 0; fi
if [ -d "$src" ]; then
  tree=$(cd "$src" && pwd)
elif [ -f "$src" ]; then
  rm -rf "$out/src" && mkdir -p "$out/src"
  tar -xzf "$src" -C "$out/src"
  tree=$(find "$out/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
else
  echo "build-paho: $src is neither a paho.mqtt.c source directory nor a tarball" >&2
  exit 1
fi
[ -f "$tree/src/MQTTAsync.c" ] || { echo "build-paho: no src/MQTTAsync.c under $tree: not paho.mqtt.c" >&2; exit 1; }
echo "build-paho: building $(basename "$tree") into $out/install (PAHO_HIGH_PERFORMANCE, TLS, static, PIC)"
cmake -S "$tree" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$out/install" \
  -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DPAHO_HIGH_PERFORMANCE=ON -DPAHO_WITH_SSL=ON -DPAHO_BUILD_STATIC=ON -DPAHO_BUILD_SHARED=OFF \
  -DPAHO_BUILD_SAMPLES=OFF -DPAHO_BUILD_DOCUMENTATION=OFF -DPAHO_ENABLE_TESTING=OFF >"$out/cmake.log" 2>&1 ||
  { cat "$out/cmake.log" >&2; exit 1; }
cmake --build "$out/cmake" --target paho-mqtt3as-static -j 2 >"$out/build.log" 2>&1 ||
  { tail -40 "$out/build.log" >&2; exit 1; }
# install the library and the public headers (the static target alone: the
# full install would want the other libraries too)
mkdir -p "$out/install/lib" "$out/install/include"
find "$out/cmake" -name libpaho-mqtt3as.a -exec cp {} "$out/install/lib/" \;
for h in MQTTAsync.h MQTTClientPersistence.h MQTTProperties.h MQTTReasonCodes.h MQTTSubscribeOpts.h \
         MQTTExportDeclarations.h; do
  cp "$tree/src/$h" "$out/install/include/"
done
[ -f "$out/install/lib/libpaho-mqtt3as.a" ] || { echo "build-paho: no libpaho-mqtt3as.a was built" >&2; exit 1; }
echo "build-paho: $out/install/lib/libpaho-mqtt3as.a"
