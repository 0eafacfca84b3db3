-- Packaging: the rockspec, and the rock as a user gets it.
--
-- * luarocks lint, and a static check that build.modules lists every C file
--   under src/ and every file under lua/ (luarocks 3 installs all of lua/
--   whatever the list says, so only this check notices a stale list);
-- * `luarocks make` honours PAHO_MQTT_INCDIR / PAHO_MQTT_LIBDIR, and says
--   what is missing when paho is not where it was told to look;
-- * tools/rock-check.sh for lua5.4, lua5.3, lua5.1 and LuaJIT: a source rock
--   packed from the work tree, installed into a fresh tree; luarocks make; a
--   binary rock packed and installed into another fresh tree; the examples
--   run against that tree only, with a private mosquitto.
--   Under lua5.4 it checks every Lua; under PMQ_LUA=lua5.3 (make test
--   LUA=lua5.3) only that one; PMQ_ROCK_LUAS="lua5.4 luajit" chooses.
--
-- Every luarocks run happens in a temporary directory: the work tree is
-- never written to (the last test checks that).

local ROCKSPEC = "rockspec/paho-mqtt-scm-1.rockspec"
local LUAS = { "lua5.4", "lua5.3", "lua5.1", "luajit" }

-- the repository root: the parent of the directory this spec is in
local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/spec/[^/]*$")
  if not dir or dir == "" then dir = "." end
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    local cwd = p:read("*l")
    p:close()
    dir = dir == "." and cwd or (cwd .. "/" .. dir)
  end
  return dir
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- runs a shell command; returns its exit status and its output (stdout+stderr)
local function run(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"__EXIT=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__EXIT=(%d+)%s*$"))
  return rc, (out:gsub("__EXIT=%d+%s*$", ""))
end

local function lines(cmd)
  local rc, out = run(cmd)
  assert(rc == 0, out)
  local t = {}
  for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function load_rockspec(path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadfile(path))
    setfenv(chunk, env)
  else
    chunk = assert(loadfile(path, "t", env))
  end
  chunk()
  return env
end

-- the rock-check runs in a child shell: nothing of this process's module
-- paths (./lua, ./build) may leak into it
local CLEAN_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4"
  .. " -u LUA_PATH_5_3 -u LUA_CPATH_5_3 -u LUA_INIT -u LUA_INIT_5_4 -u LUA_INIT_5_3"

describe("rockspec", function()
  local root = repo_root()
  local work
  local before -- the work tree's build products before this spec ran

  local function products()
    local t = lines(("cd %s && { find src -name '*.o'; find . -maxdepth 1 -name paho; } | sort"):format(q(root)))
    return table.concat(t, "\n")
  end

  -- the lua5.4 run (the default, and CI's) checks the rock for every Lua;
  -- `make test LUA=lua5.3` (tools/run-tests.sh sets PMQ_LUA) checks its own
  local only, why = os.getenv("PMQ_ROCK_LUAS"), nil
  if only == "" then only = nil end
  if only then why = "not in PMQ_ROCK_LUAS=" .. only end
  local pmq_lua = os.getenv("PMQ_LUA")
  if not only and pmq_lua and pmq_lua ~= "lua5.4" then
    only = pmq_lua
    why = "the " .. pmq_lua .. " run checks the " .. pmq_lua .. " rock only; the lua5.4 run checks every Lua"
  end

  -- the rock checks run side by side in the background (~45 s for all four
  -- on two cores, ~100 s one after the other), each in a process group of
  -- its own (setsid; rock-check.sh starts nothing outside it), so a check
  -- that hangs or outlives the spec is ended with everything it started
  local jobs = {}
  local function start(lua)
    local job = { out = work .. "/" .. lua .. ".out", rc = work .. "/" .. lua .. ".rc" }
    local script = ("sh tools/rock-check.sh %s > %s 2>&1; echo $? > %s.tmp && mv %s.tmp %s"):format(
      lua, q(job.out), q(job.rc), q(job.rc), q(job.rc))
    local p = io.popen(("cd %s && %s setsid sh -c %s < /dev/null > /dev/null 2>&1 & echo $!"):format(
      q(root), CLEAN_ENV, q(script)))
    job.pid = tonumber(p:read("*l"))
    p:close()
    jobs[lua] = job
  end

  setup(function()
    before = products()
    local rc, out = run("mktemp -d /tmp/paho-mqtt-rockspec.XXXXXX")
    assert(rc == 0, out)
    work = out:gsub("%s+$", "")
    for _, lua in ipairs(LUAS) do
      if not only or (" " .. only .. " "):find(" " .. lua .. " ", 1, true) then start(lua) end
    end
  end)

  teardown(function()
    for _, job in pairs(jobs) do
      if job.pid and not exists(job.rc) then os.execute(("kill -TERM -%d 2>/dev/null"):format(job.pid)) end
    end
    if work and work:match("^/tmp/paho%-mqtt%-rockspec%.") then run("rm -rf " .. q(work)) end
  end)

  it("passes luarocks lint", function()
    local rc, out = run("cd " .. q(root) .. " && timeout 60 luarocks lint " .. ROCKSPEC)
    assert.are.equal(0, rc, out)
  end)

  it("names the MIT license, which LICENSE holds, with the NOTICE about paho.mqtt.c", function()
    local spec = load_rockspec(root .. "/" .. ROCKSPEC)
    assert.are.equal("MIT", spec.description.license)
    local f = assert(io.open(root .. "/LICENSE"))
    local text = f:read("*a")
    f:close()
    assert.truthy(text:find("MIT License", 1, true))
    assert.truthy(text:find("Permission is hereby granted, free of charge", 1, true))
    f = assert(io.open(root .. "/NOTICE"))
    text = f:read("*a")
    f:close()
    assert.truthy(text:find("EPL-2.0", 1, true) and text:find("EDL-1.0", 1, true))
  end)

  it("lists every C file under src/ and every file under lua/ in build.modules", function()
    local spec = load_rockspec(root .. "/" .. ROCKSPEC)
    local listed = {}
    for name, m in pairs(spec.build.modules) do
      if type(m) == "string" then
        listed[m] = name
      else
        for _, c in ipairs(m.sources or { m }) do listed[c] = name end
      end
    end
    local files = lines(("cd %s && { find src -maxdepth 1 -name '*.c'; find lua -type f; } | sort"):format(q(root)))
    local missing, stale = {}, {}
    for _, f in ipairs(files) do
      if not listed[f] then missing[#missing + 1] = f end
      listed[f] = nil
    end
    for f in pairs(listed) do stale[#stale + 1] = f end
    assert.are.same({}, missing, "not in " .. ROCKSPEC .. " build.modules")
    assert.are.same({}, stale, "listed in " .. ROCKSPEC .. " but missing")
    -- each Lua module under the name its path gives it
    for name, m in pairs(spec.build.modules) do
      if type(m) == "string" then
        local expect = m:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
        assert.are.equal(expect, name, m)
      end
    end
  end)

  it("luarocks make finds paho through PAHO_MQTT_INCDIR and PAHO_MQTT_LIBDIR", function()
    -- paho's header and library, seen through a prefix of their own
    local p = work .. "/paho"
    local rc, out = run(("mkdir -p %s/include %s/lib && ln -s /usr/include/MQTT*.h %s/include/"
      .. " && for l in $(ls /usr/lib/*/libpaho-mqtt3as.so.* /usr/lib/libpaho-mqtt3as.so.* 2>/dev/null"
      .. " | head -n 1); do ln -s \"$l\" %s/lib/libpaho-mqtt3as.so.1"
      .. " && ln -s libpaho-mqtt3as.so.1 %s/lib/libpaho-mqtt3as.so; done"
      .. " && test -e %s/include/MQTTAsync.h && test -e %s/lib/libpaho-mqtt3as.so"):format(
      q(p), q(p), q(p), q(p), q(p), q(p), q(p)))
    if rc ~= 0 then
      pending("paho.mqtt.c is not under /usr/include and /usr/lib here: " .. out)
    end
    local src = work .. "/src"
    rc, out = run(("mkdir -p %s && cp -R %s %s %s %s/"):format(
      q(src), q(root .. "/rockspec"), q(root .. "/src"), q(root .. "/lua"), q(src)))
    assert.are.equal(0, rc, out)
    local tree = work .. "/tree"
    rc, out = run(("cd %s && %s timeout 120 luarocks --lua-version=5.4 make %s --tree %s"
      .. " PAHO_MQTT_INCDIR=%s/include PAHO_MQTT_LIBDIR=%s/lib"):format(
      q(src), CLEAN_ENV, ROCKSPEC, q(tree), q(p), q(p)))
    assert.are.equal(0, rc, "luarocks make failed:\n" .. out)
    assert.truthy(out:find("-I" .. p .. "/include", 1, true), out)
    assert.truthy(out:find("-L" .. p .. "/lib", 1, true), out)
    -- the module finds libpaho at run time where it was built against
    rc, out = run("ldd " .. q(tree .. "/lib/lua/5.4/paho/mqtt/core.so"))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("libpaho-mqtt3as.so.1 => " .. p .. "/lib/", 1, true), out)

    -- told to look where paho is not: it says so, and how to fix it
    rc, out = run(("cd %s && %s timeout 120 luarocks --lua-version=5.4 make %s --tree %s"
      .. " PAHO_MQTT_INCDIR=%s/nowhere"):format(q(src), CLEAN_ENV, ROCKSPEC, q(work .. "/tree2"), q(p)))
    assert.are_not.equal(0, rc, out)
    assert.truthy(out:find("Could not find header file for PAHO_MQTT", 1, true), out)
    assert.truthy(out:find("PAHO_MQTT_INCDIR", 1, true), out)
  end)

  for _, lua in ipairs(LUAS) do
    it("tools/rock-check.sh " .. lua .. ": pack, install, luarocks make, binary rock, examples", function()
      local job = jobs[lua]
      if not job then pending(why) end
      local rc
      local deadline = os.time() + 300
      repeat
        local f = io.open(job.rc, "rb")
        if f then
          rc = tonumber(f:read("*a"))
          f:close()
        else
          os.execute("sleep 0.2")
        end
      until rc or os.time() > deadline
      local f = io.open(job.out, "rb")
      local out = f and f:read("*a") or ""
      if f then f:close() end
      if not rc then os.execute(("kill -TERM -%d 2>/dev/null"):format(job.pid)) end
      assert.truthy(rc, "tools/rock-check.sh " .. lua .. " did not finish within 300 s:\n" .. out)
      if rc == 77 then
        -- this Lua, its headers, luarocks or mosquitto is not installed here
        pending((out:match("SKIPPED: ([^\n]*)") or out))
      end
      assert.are.equal(0, rc, "tools/rock-check.sh " .. lua .. " failed:\n" .. out)
      assert.truthy(out:find("rock-check " .. lua .. ": OK", 1, true), out)
      assert.truthy(out:find("examples: %d+ run, %d+ skipped, 0 failed"), out)
      assert.falsy(out:find("examples: 0 run", 1, true), out)
    end)
  end

  it("left no build products in the work tree", function()
    assert.are.equal(before, products())
    assert.is_false(exists(root .. "/paho-mqtt-scm-1.src.rock"))
  end)
end)
