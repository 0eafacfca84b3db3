#!/bin/sh
# Usage: tools/test-all.sh [busted args...]
# Builds and runs the whole suite on every supported Lua (PMQ_LUAS, default
# "lua5.4 lua5.3 lua5.1 luajit"), each against its own build/<lua> core,
# goes on after a failing version, and ends with one line per version:
#   lua5.4   120 passed, 0 failed, 3 pending   (118 s)
# Exits non-zero when any version failed.
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
versions=${PMQ_LUAS:-"lua5.4 lua5.3 lua5.1 luajit"}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/support/?.lua;;"
summary=$(mktemp)
rc=0
total_passed=0
total_failed=0
for l in $versions; do
  echo "=== $l"
  start=$(date +%s)
  if ! sh tools/deps.sh "$l" || ! make --no-print-directory LUA="$l" all; then
    printf '%-8s build failed\n' "$l" >> "$summary"
    total_failed=$((total_failed + 1))
    rc=1
    continue
  fi
  log=$(mktemp)
  { LUA_CPATH="$root/build/$l/?.so;;" sh tools/run-tests.sh "$l" "$@"; echo $? > "$log.rc"; } 2>&1 | tee "$log"
  status=$(cat "$log.rc" 2>/dev/null || echo 1)
  result=$(tail -n 1 "$log")
  p=$(echo "$result" | sed -n -E 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p')
  f=$(echo "$result" | sed -n -E 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p')
  if [ -n "$p" ]; then
    total_passed=$((total_passed + p)); total_failed=$((total_failed + f))
  else
    total_failed=$((total_failed + 1))
  fi
  pending=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -a -E '[0-9]+ success(es)? / [0-9]+ failures?' | tail -n 1 |
    grep -o -E '[0-9]+ pending' | grep -o -E '[0-9]+')
  [ -n "$pending" ] && result="$result, $pending pending"
  [ "$status" -eq 0 ] || rc=1
  printf '%-8s %s   (%d s)\n' "$l" "$result" $(( $(date +%s) - start )) >> "$summary"
  rm -f "$log" "$log.rc"
done
echo "=== test-all"
cat "$summary"
rm -f "$summary"
# all versions together, alone on the last line
echo "$total_passed passed, $total_failed failed"
exit $rc
