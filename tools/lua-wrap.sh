#!/bin/sh
# tools/lua-wrap.sh - stands in for the Lua interpreter during `make tsan` and
# `make gc-stress`: the Makefile links build/<target>-<lua>/bin/<lua> to this
# file and puts that directory first in PATH, so tools/run-tests.sh (and its
# PMQ_LUA), busted and every Lua program the specs start (examples, a second
# client process) run the way the target wants, with nothing else changed.
#
#   PMQ_WRAP_LUA      the real interpreter (an absolute path)
#   PMQ_WRAP=tsan     run it with $PMQ_TSAN_PRELOAD (the TSan runtime and
#                     tools/tsan-preload.c) in LD_PRELOAD, for this process only
#   PMQ_WRAP=gc-stress  run Lua scripts through tools/gc-stress.lua
#                     ($PMQ_GC_STRESS); `lua -e ...`, `lua -v` and the like run as usual
if [ -z "$PMQ_WRAP_LUA" ]; then
  echo "lua-wrap.sh: PMQ_WRAP_LUA is not set" >&2
  exit 127
fi
case "$PMQ_WRAP" in
tsan)
  LD_PRELOAD="$PMQ_TSAN_PRELOAD"
  export LD_PRELOAD
  exec "$PMQ_WRAP_LUA" "$@"
  ;;
gc-stress)
  case "$1" in
  -* | "") exec "$PMQ_WRAP_LUA" "$@" ;;
  esac
  PMQ_GC_QUIET=1
  export PMQ_GC_QUIET
  exec "$PMQ_WRAP_LUA" "$PMQ_GC_STRESS" "$@"
  ;;
*)
  exec "$PMQ_WRAP_LUA" "$@"
  ;;
esac
