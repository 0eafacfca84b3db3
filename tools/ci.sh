#!/bin/bash
# Usage: tools/ci.sh [part...]
# What CI runs (.ci/run calls it; docs/testing.md, "What CI runs"):
#
#   lint      the C core's layers and luacheck (make lint)
#   fuzz      libFuzzer over the option and property code, $FUZZ_SECONDS (60)
#   lua5.4 lua5.3 lua5.1 luajit
#             the whole suite on each Lua, against its own build/<lua> core
#             (what `make test LUA=<lua>` runs)
#   asan tsan valgrind gc-stress
#             the whole suite on lua5.4 under `make asan`, `make tsan`,
#             `make valgrind`, `make gc-stress`
#   paho-src  the whole suite on lua5.4 against paho.mqtt.c 1.3.12 built from
#             its source tarball for speed (make PAHO_SRC=... BUILD=build/paho-src;
#             the tarball from $PMQ_PAHO_SRC, else ../shared/third_party next
#             to the repository or /work/shared/third_party, its sha256 checked)
#
# With no argument every part runs; name parts to run only those, e.g.
# `tools/ci.sh valgrind tsan`.
#
# 1. One after the other: the Debian packages (tools/deps.sh for every Lua,
#    valgrind, clang), every build the parts need (build/<lua>, the asan and
#    tsan cores, the fuzzer), the npm packages of the WebSocket specs
#    (build/node), then lint and fuzz. Nothing is built while suites run, so
#    no two suites write the same file.
# 2. The suites, $PMQ_CI_JOBS (default 4) at a time, slowest first. The
#    suites mostly wait (brokers, keepalive timeouts, sleeps), so they share
#    two cores without their timings failing. Each writes
#    build/ci/<part>.log; a log is printed whole when its suite ends, so
#    logs never interleave.
# 3. One line per part, then, alone on the last line, "N passed, N failed":
#    the sum over the suites, a failed lint, fuzz or build counting as one
#    failure. Exits non-zero when anything failed.
#
#   PMQ_CI_JOBS          suites running at once (default 4)
#   PMQ_SUITE_TIMEOUT    per suite, seconds (tools/run-tests.sh); default here
#                        2700 for valgrind, 1800 for asan, tsan and gc-stress,
#                        1200 for the plain suites
#   FUZZ_SECONDS         default 60
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
jobs=${PMQ_CI_JOBS:-4}
fuzz_seconds=${FUZZ_SECONDS:-60}
suites_all="luajit valgrind asan tsan gc-stress lua5.4 lua5.3 lua5.1 paho-src" # valgrind, the slowest, in the first four
# paho.mqtt.c v1.3.12 (commit f7799da9), the source the paho-src part builds
paho_sha256=47f7710b19ab1a99c1d49cfbc66e42703e582bc349a71a71d81b6b66447a200e
paho_src=${PMQ_PAHO_SRC:-}
if [ -z "$paho_src" ]; then
  for d in "$root/../shared/third_party" /work/shared/third_party; do
    [ -f "$d/paho.mqtt.c-1.3.12.tar.gz" ] && { paho_src="$d/paho.mqtt.c-1.3.12.tar.gz"; break; }
  done
fi
parts=${*:-"lint fuzz $suites_all"}
for p in $parts; do
  case " lint fuzz $suites_all " in
    *" $p "*) ;;
    *) echo "ci.sh: unknown part '$p' (parts: lint fuzz $suites_all)" >&2; exit 2 ;;
  esac
done
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }

logs=build/ci
rm -rf "$logs"
mkdir -p "$logs"
summary=$logs/summary
: > "$summary"
total_passed=0
total_failed=0
rc=0
t0=$(date +%s)

line() { printf '%-10s %s   (%d s)\n' "$1" "$2" "$3" >> "$summary"; }
fail_part() { line "$1" "$2" "$3"; total_failed=$((total_failed + 1)); rc=1; }

# --- 1. packages and builds, one after the other ---------------------------
echo "=== ci: packages and builds"
start=$(date +%s)
built=1
sh tools/deps.sh lua5.4 || built=0 # luacheck among them
lua_of() { case $1 in lua5.4 | lua5.3 | lua5.1 | luajit) echo "$1" ;; *) echo lua5.4 ;; esac; }
for p in $parts; do
  case $p in
    lint | fuzz) continue ;;
  esac
  l=$(lua_of "$p")
  if [ "$p" = valgrind ]; then
    PMQ_VALGRIND=1 sh tools/deps.sh "$l" || built=0
  else
    sh tools/deps.sh "$l" || built=0
  fi
  case $p in
    asan | tsan | gc-stress) make --no-print-directory LUA="$l" "$p-build" || built=0 ;;
    paho-src)
      if [ -z "$paho_src" ]; then
        echo "ci.sh: paho-src: no paho.mqtt.c-1.3.12.tar.gz (set PMQ_PAHO_SRC)" >&2; built=0
      elif [ "$(sha256sum "$paho_src" | cut -d' ' -f1)" != "$paho_sha256" ]; then
        echo "ci.sh: paho-src: $paho_src is not paho.mqtt.c v1.3.12 (sha256 differs)" >&2; built=0
      else
        make --no-print-directory LUA="$l" PAHO_SRC="$paho_src" BUILD=build/paho-src all || built=0
      fi ;;
    *) make --no-print-directory LUA="$l" all || built=0 ;;
  esac
done
if want fuzz; then
  { PMQ_FUZZ=1 sh tools/deps.sh lua5.4 && make --no-print-directory build/fuzz/props_fuzz; } || built=0
fi
# the spec of the OpenResty adapter loads build/luajit whatever Lua runs it,
# and builds it when missing: build it here, before suites run side by side
if [ -n "$(for p in $parts; do case $p in lint | fuzz) ;; *) echo x ;; esac; done)" ]; then
  make --no-print-directory LUA=luajit all || built=0
  # aedes for the WebSocket specs (spec/support/aedes.lua installs it on first use)
  LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/support/?.lua;;" LUA_CPATH="$root/build/lua5.4/?.so;;" \
    lua5.4 -e 'require("aedes").install()' || built=0
fi
if [ "$built" -ne 1 ]; then
  fail_part build "failed (see above)" $(( $(date +%s) - start ))
fi
echo "=== ci: packages and builds done in $(( $(date +%s) - start )) s"

# --- lint and fuzz ----------------------------------------------------------
if want lint; then
  start=$(date +%s)
  if make --no-print-directory lint 2>&1 | tee "$logs/lint.log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    line lint "ok" $(( $(date +%s) - start ))
  else
    fail_part lint "FAILED" $(( $(date +%s) - start ))
  fi
fi
if want fuzz; then
  start=$(date +%s)
  if make --no-print-directory fuzz FUZZ_SECONDS="$fuzz_seconds" > "$logs/fuzz.log" 2>&1; then
    tail -n 20 "$logs/fuzz.log"
    line fuzz "ok, $(grep -a -o -E 'Done [0-9]+ runs' "$logs/fuzz.log" | tail -n 1 | grep -o -E '[0-9]+') inputs" \
      $(( $(date +%s) - start ))
  else
    cat "$logs/fuzz.log"
    fail_part fuzz "FAILED (a finding: build/fuzz/crash-*)" $(( $(date +%s) - start ))
  fi
fi

# --- 2. the suites, $jobs at a time -------------------------------------------
# spec/rockspec_spec.lua packs, installs and tries the rock for every Lua
# when the suite runs on lua5.4 (tools/rock-check.sh, 4 luarocks builds side
# by side: the heaviest burst of CPU in the suite), for its own Lua
# otherwise. Here the run of each Lua checks that Lua's rock once: the lua5.4
# run checks lua5.4 (and a Lua whose own run is not among the parts), the
# asan, tsan, valgrind and gc-stress runs check lua5.4 only (the rock is
# built by luarocks, not instrumented; the other rocks' tests are pending
# there, named).
rock_luas_54=lua5.4
for l in lua5.3 lua5.1 luajit; do want "$l" || rock_luas_54="$rock_luas_54 $l"; done
# a hung suite is killed after its PMQ_SUITE_TIMEOUT (tools/run-tests.sh):
# here about 2.5 times the longest it took in CI, so that a hang costs CI
# minutes, not the hour run-tests.sh allows by default
limit_of() {
  if [ -n "$PMQ_SUITE_TIMEOUT" ]; then echo "$PMQ_SUITE_TIMEOUT"; return; fi
  case $1 in
    valgrind) echo 2700 ;;
    asan | tsan | gc-stress) echo 1800 ;;
    *) echo 1200 ;;
  esac
}
cmd_of() {
  case $1 in
    lua5.4) echo "PMQ_ROCK_LUAS='$rock_luas_54' make --no-print-directory LUA=$1 test" ;;
    lua5.3 | lua5.1 | luajit) echo "make --no-print-directory LUA=$1 test" ;;
    paho-src) echo "PMQ_ROCK_LUAS=lua5.4 make --no-print-directory LUA=lua5.4 PAHO_SRC='$paho_src' BUILD=build/paho-src test" ;;
    *) echo "PMQ_ROCK_LUAS=lua5.4 make --no-print-directory LUA=lua5.4 $1" ;;
  esac
}
queue=""
for s in $suites_all; do want "$s" && queue="$queue $s"; done
running=""
declare -A started
launch() {
  local s=$1
  started[$s]=$(date +%s)
  rm -f "$logs/$s.rc"
  # setsid: a process group of its own, so that the suite can be ended with
  # everything it started when ci.sh is interrupted. PMQ_CI_JOBS tells the
  # specs that measure a latency how many suites share the machine
  setsid bash -c "PMQ_CI_JOBS=$jobs PMQ_SUITE_TIMEOUT=$(limit_of "$s") $(cmd_of "$s") > '$logs/$s.log' 2>&1; echo \$? > '$logs/$s.rc.tmp'; mv '$logs/$s.rc.tmp' '$logs/$s.rc'" \
    < /dev/null &
  echo "$!" > "$logs/$s.pid"
  echo "=== ci: $s started ($(cmd_of "$s"); log $logs/$s.log)"
  running="$running $s"
}
finish() {
  local s=$1 status result p f pending
  status=$(cat "$logs/$s.rc")
  # run-tests.sh's last line; make may add its own error line after it
  result=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed$' "$logs/$s.log" | tail -n 1)
  echo "=== ci: $s ended, exit status $status, $(( $(date +%s) - ${started[$s]} )) s; its log:"
  cat "$logs/$s.log"
  p=$(echo "$result" | sed -n -E 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p')
  f=$(echo "$result" | sed -n -E 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p')
  if [ -n "$p" ]; then
    total_passed=$((total_passed + p)); total_failed=$((total_failed + f))
    # a suite whose tests passed but whose process failed (a sanitizer or
    # valgrind report at exit) counts as one failure more
    if [ "$f" -eq 0 ] && [ "$status" -ne 0 ]; then
      total_failed=$((total_failed + 1)); result="$result, exit status $status"
    fi
  else
    total_failed=$((total_failed + 1)); result="no result (exit status $status)"
  fi
  pending=$(sed 's/\x1b\[[0-9;]*m//g' "$logs/$s.log" | grep -a -E '[0-9]+ success(es)? / [0-9]+ failures?' | tail -n 1 |
    grep -o -E '[0-9]+ pending' | grep -o -E '[0-9]+')
  [ -n "$pending" ] && result="$result, $pending pending"
  [ "$status" -eq 0 ] || rc=1
  line "$s" "$result" $(( $(date +%s) - ${started[$s]} ))
}
stop_all() {
  for s in $running; do
    kill -TERM -- "-$(cat "$logs/$s.pid")" 2>/dev/null
  done
  echo "ci.sh: interrupted; the running suites were stopped" >&2
  exit 130
}
trap stop_all INT TERM
while [ -n "$queue" ] || [ -n "$running" ]; do
  while [ -n "$queue" ] && [ "$(echo $running | wc -w)" -lt "$jobs" ]; do
    set -- $queue
    launch "$1"
    shift
    queue="$*"
  done
  still=""
  for s in $running; do
    # run-tests.sh ends a suite after PMQ_SUITE_TIMEOUT; this also bounds
    # what runs around it (make, the packages check)
    suite_limit=$(( $(limit_of "$s") + 300 ))
    if [ ! -f "$logs/$s.rc" ] && [ $(( $(date +%s) - ${started[$s]} )) -gt "$suite_limit" ]; then
      kill -KILL -- "-$(cat "$logs/$s.pid")" 2>/dev/null
      wait "$(cat "$logs/$s.pid")" 2>/dev/null
      echo "ci.sh: $s did not end within $suite_limit s; it was killed" >> "$logs/$s.log"
      echo 124 > "$logs/$s.rc"
    fi
    if [ -f "$logs/$s.rc" ]; then
      wait "$(cat "$logs/$s.pid")" 2>/dev/null
      finish "$s"
    else
      still="$still $s"
    fi
  done
  running=$still
  [ -n "$running" ] && sleep 2
done

# --- 3. summary ---------------------------------------------------------------
echo "=== ci: $(( $(date +%s) - t0 )) s in all"
cat "$summary"
echo "$total_passed passed, $total_failed failed"
exit $rc
