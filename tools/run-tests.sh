#!/bin/sh
# Runs the busted suite with the given Lua and ends with "N passed, N failed".
lua=${1:-lua5.4}; [ $# -gt 0 ] && shift
export PMQ_LUA="$lua"
# run from the Makefile, LUA_PATH/LUA_CPATH name this tree's modules and the
# core of the build in use; run alone, default them to build/<lua>
root=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$LUA_PATH" ] || export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/support/?.lua;;"
[ -n "$LUA_CPATH" ] || export LUA_CPATH="$root/build/$lua/?.so;;"
out=$(mktemp)
# the specs' temporary directories (spec/support/helper.lua) go under one root per
# run, removed at the end; PMQ_KEEP_TMP=1 keeps it (brokers' logs and all)
export PMQ_TMP_ROOT="$(mktemp -d /tmp/paho-mqtt-run.XXXXXX)"
if [ -n "$PMQ_VALGRIND" ]; then
  runner="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=tools/valgrind.supp --num-callers=30 $lua"
else
  runner="$lua"
fi
# A hung test must not hang the run (or CI): the whole suite gets
# PMQ_SUITE_TIMEOUT seconds (default 3600), then busted is killed
# (--foreground: Ctrl-C still reaches busted).
limit=${PMQ_SUITE_TIMEOUT:-3600}
# (no --lua: busted would start a second interpreter, outside valgrind)
{ timeout --foreground -k 10 "$limit" $runner /usr/bin/busted --output=utfTerminal "$@"; echo $? > "$out.rc"; } 2>&1 | tee "$out"
rc=$(cat "$out.rc" 2>/dev/null || echo 1)
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "run-tests: the suite did not finish within $limit s (PMQ_SUITE_TIMEOUT): a test hangs; busted was killed"
fi
# busted: "12 successes / 0 failures / 0 errors / 0 pending : 3.2 seconds"
line=$(grep -a -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' "$out" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
rm -f "$out" "$out.rc"
# brokers and fault proxies a crashed or killed suite left running: their
# command lines name files under PMQ_TMP_ROOT (the specs stop their own)
left=
for d in /proc/[0-9]*; do
  case "$(tr '\0' ' ' 2>/dev/null < "$d/cmdline")" in
    *"$PMQ_TMP_ROOT/"*) left="$left ${d#/proc/}" ;;
  esac
done
if [ -n "$left" ]; then
  echo "run-tests: stopping processes the suite left running: $left"
  kill -9 $left 2>/dev/null
fi
if [ "$PMQ_KEEP_TMP" = 1 ]; then echo "run-tests: kept $PMQ_TMP_ROOT"; else rm -rf "$PMQ_TMP_ROOT"; fi
if [ -z "$line" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
passed=$(echo "$line" | sed -E 's/^[^0-9]*([0-9]+) success.*/\1/')
failures=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
errors=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
failed=$((failures + errors))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
