#!/bin/sh
# Usage: tools/rock-check.sh [LUA] [--head] [--keep]
#   LUA     lua5.4 (default), lua5.3, lua5.1 or luajit
#   --head  package the last commit (git archive HEAD) instead of the work tree
#   --keep  keep the temporary directory and print where it is
#
# Checks the rock the way a user gets it, for one Lua, in a fresh temporary
# directory; nothing is written to the checkout or to a system tree:
#
#  1. a source tarball of the checkout: the files git knows of (tracked, and
#     untracked but not ignored) as they are in the work tree; with --head,
#     `git archive HEAD`; outside git, the directory without build products
#  2. a copy of rockspec/paho-mqtt-scm-1.rockspec whose source.url is that
#     tarball (file://...), and `luarocks pack` of it: a source rock
#     (.src.rock), as luarocks.org would serve it
#  3. `luarocks install <the .src.rock>` into a fresh tree: builds from source
#  4. `luarocks make` in the unpacked sources into another fresh tree, then
#     `luarocks pack` of that installation: a binary rock, and
#     `luarocks install <the binary rock>` into a third fresh tree
#  5. in every tree: core.so is there, share/lua holds exactly the files
#     under lua/ (and build.modules lists each of them), each compiles with this Lua, and a Lua process whose
#     LUA_PATH/LUA_CPATH name only the tree loads paho.mqtt from the tree
#  6. the examples (from the unpacked sources, not the checkout or build/) run
#     with that same LUA_PATH/LUA_CPATH, each against a private mosquitto of
#     its own (tools/with-broker.sh: MQTT_URI, MQTT_BROKER_PID), and the two
#     getting-started examples run as docs/getting-started.md tells; an
#     example that needs a module the tree lacks (cqueues, luv, copas...) is
#     skipped and named
#
# LuaJIT: Debian's luarocks has no luajit target of its own; luarocks
# --lua-version=5.1 with a config file that names the luajit interpreter and
# its headers (written to the temporary directory, given in
# LUAROCKS_CONFIG_5_1) builds and installs for LuaJIT. LUAJIT (interpreter)
# and LUAJIT_INCDIR (default: pkg-config luajit, else /usr/include/luajit-2.1)
# override what is found.
#
# Exit status: 0 all good, 1 a check failed, 77 this Lua (or its headers,
# luarocks, mosquitto) is not installed here.

# --- inner mode: one example, run by tools/with-broker.sh (MQTT_URI set) ---
if [ "${1:-}" = "--example" ]; then
  interp=$2; ex=$3; logs=$4
  if [ "$(basename "$ex")" != "getting-started" ]; then
    timeout --foreground 120 "$interp" "$ex" > "$logs/$(basename "$ex").log" 2>&1
    exit $?
  fi
  # docs/getting-started.md as a reader runs it: a subscriber with a
  # persistent session, a publisher, then messages sent while it was away
  exdir=$(dirname "$ex")
  sub=$exdir/getting_started_subscriber.lua pub=$exdir/getting_started_publisher.lua
  gs_fail() { echo "$1" > "$logs/gs-why"; exit 1; }
  timeout --foreground 60 "$interp" "$sub" 3 > "$logs/gs-sub1.log" 2>&1 &
  spid=$!
  i=0
  while [ $i -lt 200 ] && ! grep -q "waiting for messages" "$logs/gs-sub1.log" && kill -0 $spid 2>/dev/null; do
    sleep 0.05; i=$((i + 1))
  done
  if ! grep -q "waiting for messages" "$logs/gs-sub1.log"; then
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
    gs_fail "the subscriber did not start"
  fi
  if ! timeout --foreground 60 "$interp" "$pub" 3 > "$logs/gs-pub1.log" 2>&1; then
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
    gs_fail "the publisher failed"
  fi
  wait $spid || gs_fail "the subscriber failed"
  grep -q "hello 3" "$logs/gs-sub1.log" || gs_fail "the subscriber did not receive 'hello 3'"
  timeout --foreground 60 "$interp" "$pub" 2 > "$logs/gs-pub2.log" 2>&1 || gs_fail "the publisher failed while the subscriber was away"
  timeout --foreground 60 "$interp" "$sub" 2 > "$logs/gs-sub2.log" 2>&1 || gs_fail "the returning subscriber failed"
  grep -q "session resumed" "$logs/gs-sub2.log" || gs_fail "the returning subscriber found no session"
  [ "$(grep -c "hello [12]" "$logs/gs-sub2.log")" -eq 2 ] || \
    gs_fail "the returning subscriber did not get the 2 messages sent while it was away"
  exit 0
fi

# --- outer mode -------------------------------------------------------------
lua=lua5.4; keep=""; head=""
for a in "$@"; do
  case $a in
    --keep) keep=1 ;;
    --head) head=1 ;;
    lua5.1|lua5.3|lua5.4|luajit) lua=$a ;;
    *) echo "usage: $0 [lua5.4|lua5.3|lua5.1|luajit] [--head] [--keep]" >&2; exit 2 ;;
  esac
done

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)
rockspec_path=$(ls "$root"/rockspec/*-scm-1.rockspec 2>/dev/null | head -n 1)
[ -n "$rockspec_path" ] || { echo "no rockspec/*-scm-1.rockspec under $root" >&2; exit 1; }
rockspec_file=$(basename "$rockspec_path")
base=${rockspec_file%.rockspec}          # paho-mqtt-scm-1
pkg=${base%-scm-1}                        # paho-mqtt
ver=scm-1

skip() { echo "rock-check $lua: SKIPPED: $*"; exit 77; }
for tool in luarocks mosquitto gcc tar timeout; do
  command -v $tool >/dev/null 2>&1 || skip "$tool is not installed"
done

# nothing from the caller's environment may point Lua at the checkout
unset LUA_PATH LUA_CPATH LUA_INIT
for v in 5_1 5_2 5_3 5_4; do unset LUA_PATH_$v LUA_CPATH_$v LUA_INIT_$v; done

work=$(mktemp -d /tmp/paho-mqtt-rockcheck.XXXXXX)
cleanup() { if [ -n "$keep" ]; then echo "kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 1' INT TERM

case $lua in
  luajit)
    lv=5.1
    interp=${LUAJIT:-$(command -v luajit)}
    [ -n "$interp" ] && [ -x "$interp" ] || skip "luajit is not installed (Debian: apt-get install luajit2 libluajit2-5.1-dev)"
    incdir=${LUAJIT_INCDIR:-$(pkg-config --cflags-only-I luajit 2>/dev/null | sed -n 's/^ *-I\([^ ]*\).*/\1/p')}
    incdir=${incdir:-/usr/include/luajit-2.1}
    [ -f "$incdir/lua.h" ] || skip "no lua.h in $incdir (Debian: apt-get install libluajit2-5.1-dev; or set LUAJIT_INCDIR)"
    cat > "$work/luarocks-luajit.lua" <<EOF
-- luarocks --lua-version=5.1, building for LuaJIT (written by tools/rock-check.sh)
lua_interpreter = "$(basename "$interp")"
variables = {
   LUA_DIR = "$(dirname "$(dirname "$interp")")",
   LUA_BINDIR = "$(dirname "$interp")",
   LUA_INCDIR = "$incdir",
}
EOF
    LUAROCKS_CONFIG_5_1=$work/luarocks-luajit.lua
    export LUAROCKS_CONFIG_5_1
    ;;
  *)
    lv=${lua#lua}
    interp=$(command -v "$lua") || skip "$lua is not installed (Debian: apt-get install $lua)"
    incdir=$(luarocks --lua-version="$lv" config variables.LUA_INCDIR 2>/dev/null)
    [ -n "$incdir" ] && [ -f "$incdir/lua.h" ] || \
      skip "luarocks finds no lua.h for Lua $lv (Debian: apt-get install liblua$lv-dev)"
    ;;
esac
LR="--lua-version=$lv"
echo "rock-check $lua: $interp, headers $incdir, in $work"

log=$work/log
fail() {
  echo "FAILED: $*"
  [ -s "$log" ] && sed 's/^/   | /' "$log"
  echo "rock-check $lua: FAILED"
  exit 1
}
step() { echo "-- $*"; : > "$log"; }

# 1. the source tarball
step "source tarball $base.tar.gz"
mkdir -p "$work/stage/$base" "$work/src" "$work/bin" "$work/run" "$work/logs"
if [ -n "$head" ]; then
  git -C "$root" archive --format=tar --prefix="$base/" HEAD > "$work/src.tar" 2>"$log" || fail "git archive"
  tar -C "$work/stage" -xf "$work/src.tar" || fail "untar git archive"
elif git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -c -o --exclude-standard | while IFS= read -r f; do
     [ -f "$f" ] && printf '%s\n' "$f"; done) > "$work/files" || fail "git ls-files"
  tar -C "$root" -cf - -T "$work/files" 2>"$log" | tar -C "$work/stage/$base" -xf - || fail "copying the work tree"
else
  tar -C "$root" --exclude=./build --exclude=./.git --exclude=./lua_modules --exclude='*.o' \
      --exclude='*.so' -cf - . | tar -C "$work/stage/$base" -xf - || fail "copying the source directory"
fi
tar -C "$work/stage" -czf "$work/$base.tar.gz" "$base" || fail "tar"
srcdir=$work/src/$base
tar -C "$work/src" -xzf "$work/$base.tar.gz" || fail "untar"

# the module list: luarocks 3 installs everything under lua/ whatever the
# rockspec lists, so an install cannot show a stale list; compare it here
step "the rockspec lists every src/*.c and lua/ file"
(cd "$srcdir" && { find src -maxdepth 1 -name '*.c'; find lua -type f; } | sort) > "$work/files.src"
"$interp" - "$srcdir/rockspec/$rockspec_file" "$work/files.src" <<'EOF' >"$log" 2>&1 || fail "the rockspec's build.modules is out of date"
local env = {}
local chunk = assert(loadfile(arg[1], "t", env) or loadfile(arg[1]))
if setfenv then setfenv(chunk, env) end
chunk()
local listed, problems = {}, {}
for name, m in pairs(env.build.modules) do
  if type(m) == "string" then listed[m] = name
  else for _, c in ipairs(m.sources or { m }) do listed[c] = name end end
end
for f in io.lines(arg[2]) do
  if not listed[f] then problems[#problems + 1] = f .. " is not in build.modules" end
  listed[f] = nil
end
for f in pairs(listed) do problems[#problems + 1] = f .. " is listed but does not exist" end
table.sort(problems)
if #problems > 0 then io.stderr:write(table.concat(problems, "\n"), "\n") os.exit(1) end
EOF

# 2. the rockspec for the tarball, and the source rock
step "luarocks pack: source rock"
"$interp" - "$srcdir/rockspec/$rockspec_file" "$work/$rockspec_file" "file://$work/$base.tar.gz" "$base" <<'EOF' >"$log" 2>&1 || fail "rewriting the rockspec's source"
local src, dst, url, dir = arg[1], arg[2], arg[3], arg[4]
local f = assert(io.open(src, "rb")); local text = f:read("*a"); f:close()
local out, n = text:gsub("\nsource%s*=%s*%b{}", function()
  return ("\nsource = {\n   url = %q,\n   dir = %q,\n}"):format(url, dir)
end, 1)
assert(n == 1, "no top-level `source = { ... }` in " .. src)
f = assert(io.open(dst, "wb")); f:write(out); f:close()
EOF
(cd "$work" && luarocks $LR pack "$rockspec_file") >"$log" 2>&1 || fail "luarocks pack $rockspec_file"
[ -f "$work/$base.src.rock" ] || fail "no $base.src.rock"

# 3. install the source rock
step "luarocks install $base.src.rock (builds from source)"
(cd "$work/run" && luarocks $LR install --tree "$work/tree-src" "$work/$base.src.rock") >"$log" 2>&1 || \
  fail "luarocks install $base.src.rock"
grep -q -- "-I$incdir " "$log" || fail "luarocks did not compile with -I$incdir"

# 4. luarocks make in the unpacked sources; a binary rock of that; install it
step "luarocks make (in the unpacked sources)"
(cd "$srcdir" && luarocks $LR make "rockspec/$rockspec_file" --tree "$work/tree-make") >"$log" 2>&1 || \
  fail "luarocks make"
step "luarocks pack: binary rock"
(cd "$work/bin" && luarocks $LR pack --tree "$work/tree-make" "$pkg" "$ver") >"$log" 2>&1 || fail "luarocks pack $pkg $ver"
binrock=$(ls "$work"/bin/"$base".*.rock 2>/dev/null | head -n 1)
[ -n "$binrock" ] || fail "no binary rock in $work/bin"
step "luarocks install $(basename "$binrock")"
(cd "$work/run" && luarocks $LR install --tree "$work/tree" "$binrock") >"$log" 2>&1 || \
  fail "luarocks install $(basename "$binrock")"

# 5. what each tree holds, and that a process that sees only the tree loads it
(cd "$srcdir/lua" && find . -type f | sort) > "$work/expected"
for t in tree-src tree-make tree; do
  tree=$work/$t
  step "$t: modules, compile, load"
  [ -f "$tree/lib/lua/$lv/paho/mqtt/core.so" ] || fail "$t: no lib/lua/$lv/paho/mqtt/core.so"
  (cd "$tree/share/lua/$lv" && find . -type f | sort) > "$work/got.$t" 2>/dev/null
  if ! diff "$work/expected" "$work/got.$t" > "$log"; then
    fail "$t: share/lua/$lv (>) differs from lua/ (<)"
  fi
  LUA_PATH="$tree/share/lua/$lv/?.lua;$tree/share/lua/$lv/?/init.lua" \
  LUA_CPATH="$tree/lib/lua/$lv/?.so" \
  "$interp" - "$tree" "$lv" <<'EOF' >"$log" 2>&1 || fail "$t: loading paho.mqtt from the tree"
local tree, lv = arg[1], arg[2]
local function search(name, path)
  local rel = name:gsub("%.", "/")
  for t in path:gmatch("[^;]+") do
    local f = t:gsub("%?", rel)
    local h = io.open(f, "rb")
    if h then h:close() return f end
  end
end
-- every installed Lua file compiles with this Lua (5.1 syntax on 5.1/LuaJIT)
local p = io.popen("find '" .. tree .. "/share/lua/" .. lv .. "' -name '*.lua'")
for f in p:lines() do assert(loadfile(f)) end
p:close()
local mqtt = require "paho.mqtt"
local core = search("paho.mqtt.core", package.cpath)
local lmod = search("paho.mqtt", package.path)
assert(core == tree .. "/lib/lua/" .. lv .. "/paho/mqtt/core.so", "core from " .. tostring(core))
assert(lmod == tree .. "/share/lua/" .. lv .. "/paho/mqtt.lua", "paho.mqtt from " .. tostring(lmod))
assert(type(mqtt.VERSION) == "string" and mqtt.VERSION:match("^%d+%.%d+%.%d+"), "VERSION")
assert(type(mqtt.PAHO_VERSION) == "string", "PAHO_VERSION")
local c = assert(mqtt.client{ uri = "tcp://127.0.0.1:1", id = "rock-check" })
c:close()
print(("paho.mqtt %s, paho.mqtt.c %s, %s"):format(mqtt.VERSION, mqtt.PAHO_VERSION,
  rawget(_G, "jit") and jit.version or _VERSION))
EOF
  echo "   $(tail -n 1 "$log")"
done

# 6. the examples, against the binary rock's tree, each with a broker of its own
step "examples against $work/tree"
tree=$work/tree
cd "$work/run" || fail "cd $work/run"
LUA_PATH="$tree/share/lua/$lv/?.lua;$tree/share/lua/$lv/?/init.lua"
LUA_CPATH="$tree/lib/lua/$lv/?.so"
export LUA_PATH LUA_CPATH
logs=$work/logs
# the modules a file needs (through the modules it finds as Lua files, too)
# that neither the tree nor the interpreter has
needs() {
  "$interp" - "$1" <<'EOF'
local seen, missing = {}, {}
local function find(name)
  if package.loaded[name] or package.preload[name] then return true end
  local rel = name:gsub("%.", "/")
  for _, p in ipairs{ package.path, package.cpath } do
    for t in p:gmatch("[^;]+") do
      local f = t:gsub("%?", rel)
      local h = io.open(f, "rb")
      if h then h:close() return f end
    end
  end
  return nil
end
local function scan(file)
  local h = io.open(file, "rb")
  if not h then return end
  local src = h:read("*a")
  h:close()
  for _, name in src:gmatch("require%s*%(?%s*([\"'])([%w_%.%-]+)%1") do
    if not seen[name] then
      seen[name] = true
      local found = find(name)
      if not found then missing[#missing + 1] = name
      elseif type(found) == "string" and found:match("%.lua$") then scan(found) end
    end
  end
end
scan(arg[1])
io.write(table.concat(missing, " "))
EOF
}
fails=0; ran=0; skipped=0
for ex in "$srcdir"/examples/*.lua getting-started; do
  case $ex in
    */getting_started_*) continue ;;
    getting-started)
      [ -f "$srcdir/examples/getting_started_subscriber.lua" ] && \
        [ -f "$srcdir/examples/getting_started_publisher.lua" ] || continue
      ex=$srcdir/examples/getting-started
      name="getting_started_subscriber.lua + getting_started_publisher.lua (docs/getting-started.md)" ;;
    *)
      [ -f "$ex" ] || continue
      name=$(basename "$ex")
      missing=$(needs "$ex")
      if [ -n "$missing" ]; then
        echo "   SKIP $name: needs $missing, which the tree does not have"
        skipped=$((skipped + 1)); continue
      fi ;;
  esac
  ran=$((ran + 1))
  if sh "$srcdir/tools/with-broker.sh" sh "$self" --example "$interp" "$ex" "$logs" < /dev/null > "$log" 2>&1; then
    echo "   ok   $name"
  else
    echo "   FAIL $name"
    [ -f "$logs/gs-why" ] && echo "        $(cat "$logs/gs-why")"
    sed 's/^/        | /' "$log"
    for f in "$logs/$(basename "$ex").log" "$logs"/gs-*.log; do
      [ -f "$f" ] && case $f in */gs-why) ;; *) echo "        -- $(basename "$f")"; sed 's/^/        | /' "$f" ;; esac
    done
    fails=$((fails + 1))
  fi
done
echo "   examples: $ran run, $skipped skipped, $fails failed"
: > "$log"
[ $fails -eq 0 ] || fail "examples"

echo "rock-check $lua: OK (source rock, luarocks make, binary rock; examples against the installed tree)"
