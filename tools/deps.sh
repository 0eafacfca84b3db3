#!/bin/sh
# Installs the Debian packages this project needs, when missing.
# As root: apt-get install -y. Otherwise: prints the exact command and fails.
lua=${1:-lua5.4}
pkgs="lua5.4 liblua5.4-dev luarocks lua-busted lua-check libpaho-mqtt-dev mosquitto mosquitto-clients make gcc"
# event loops the adapters are tested with (spec/adapters_spec.lua,
# spec/nginx_spec.lua); nginx gets Lua from libnginx-mod-http-lua, and curl
# is the spec's HTTP client; nginx loads the LuaJIT build of the core, which
# that spec builds whatever Lua runs the suite
pkgs="$pkgs lua-cqueues lua-luv lua-copas nginx libnginx-mod-http-lua curl luajit2 libluajit2-5.1-dev"
# LÖVE, the game engine examples/love runs in (spec/examples_spec.lua), under Xvfb
pkgs="$pkgs love xvfb xauth"
# openssl makes the TLS specs' PKI; node runs aedes for spec/websocket_spec.lua (npm: Debian's, unless node brings its own)
pkgs="$pkgs openssl nodejs"; command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
case "$lua" in
  lua5.3) pkgs="$pkgs lua5.3 liblua5.3-dev" ;;
  lua5.1) pkgs="$pkgs lua5.1 liblua5.1-0-dev" ;;
  luajit*) pkgs="$pkgs luajit2 libluajit2-5.1-dev" ;;
esac
[ -n "$PMQ_VALGRIND" ] && pkgs="$pkgs valgrind"
# make bench: the race's peers (bench/race.lua) and the source build of paho
[ -n "$PMQ_BENCH" ] && pkgs="$pkgs lua-socket python3-paho-mqtt cmake libssl-dev"
# make fuzz: clang with its libFuzzer runtime
[ -n "$PMQ_FUZZ" ] && pkgs="$pkgs clang libclang-rt-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null || {
    echo "apt-get install failed for:$missing" >&2; exit 1; }
  # Debian starts the packaged mosquitto service on 1883 (and nginx on 80,
  # where an init system runs); the tests use their own brokers and nginx
  # on free ports and need neither.
else
  echo "These Debian packages are missing:$missing" >&2
  echo "Install them with:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
