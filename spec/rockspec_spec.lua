-- Packaging: `luarocks make rockspec/paho-mqtt-scm-1.rockspec` builds and
-- installs the binding into a fresh tree, and a separate Lua process that sees
-- only that tree loads it and publishes to a real broker.
--
-- luarocks make compiles in the directory it runs in (src/*.o, paho/mqtt/core.so),
-- so it runs in a copy of the sources: the work tree is never written to.
local helper = require "helper"

local LUA = "lua5.4"
local LUA_VERSION = "5.4"
local ROCKSPEC = "rockspec/paho-mqtt-scm-1.rockspec"

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

local function mktemp()
  local rc, out = run("mktemp -d /tmp/paho-mqtt-rock.XXXXXX")
  assert(rc == 0, out)
  return (out:gsub("%s+$", ""))
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- the program the child process runs; it reads the broker URI from argv
local CHILD = [[
local mqtt = require "paho.mqtt"
print("VERSION=" .. tostring(mqtt.VERSION))
print("PAHO_VERSION=" .. tostring(mqtt.PAHO_VERSION))
print("CORE=" .. tostring(package.searchpath("paho.mqtt.core", package.cpath)))
print("LUAMOD=" .. tostring(package.searchpath("paho.mqtt", package.path)))
local URI = assert(arg[1], "usage: child.lua URI")
local c = mqtt.client{ uri = URI, id = "rock" }
assert(c:connect{ timeout = 5 })
local tok = c:publish("rock/t", "x", { qos = 1 })
assert(tok:wait(5))
print("PUBLISH=ok")
c:disconnect()
c:close()
print("DONE")
]]

describe("rockspec", function()
  local root = repo_root()
  local work, tree, broker
  -- build products luarocks make would leave in the directory it runs in
  local PRODUCTS = { "src/client.o", "src/core.o", "src/events.o", "src/props.o", "src/util.o",
                     "paho/mqtt/core.so" }
  local present_before = {}

  setup(function()
    for _, f in ipairs(PRODUCTS) do present_before[f] = helper.read(root .. "/" .. f) ~= nil end
    broker = helper.broker()
    work = mktemp()
    tree = work .. "/tree"
  end)

  teardown(function()
    helper.stop_all()
    if work and work:match("^/tmp/paho%-mqtt%-rock%.") then
      run("rm -rf " .. q(work))
    end
  end)

  it("passes luarocks lint", function()
    local rc, out = run("cd " .. q(root) .. " && timeout 60 luarocks lint " .. ROCKSPEC)
    assert.are.equal(0, rc, out)
  end)

  it("builds with luarocks make into a fresh tree, and a child Lua loads it from there and publishes", function()
    -- a copy of what the rockspec needs, so the build writes nowhere in the work tree
    local src = work .. "/src"
    local rc, out = run(("mkdir -p %s && cp -R %s %s %s %s/"):format(
      q(src), q(root .. "/rockspec"), q(root .. "/src"), q(root .. "/lua"), q(src)))
    assert.are.equal(0, rc, out)

    rc, out = run(("cd %s && timeout 120 luarocks --lua-version=%s make %s --tree %s"):format(
      q(src), LUA_VERSION, ROCKSPEC, q(tree)))
    assert.are.equal(0, rc, "luarocks make failed:\n" .. out)
    assert.truthy(out:find("is now installed in", 1, true), out)

    local core_so = ("%s/lib/lua/%s/paho/mqtt/core.so"):format(tree, LUA_VERSION)
    local mqtt_lua = ("%s/share/lua/%s/paho/mqtt.lua"):format(tree, LUA_VERSION)
    assert.truthy(helper.read(core_so), "not installed: " .. core_so)
    assert.truthy(helper.read(mqtt_lua), "not installed: " .. mqtt_lua)
    assert.truthy(helper.read(("%s/share/lua/%s/paho/mqtt/options.lua"):format(tree, LUA_VERSION)))

    -- the child sees only the tree: no ";;" (no default path), no ./lua, no ./build,
    -- and the version-specific variables (which win over LUA_PATH) set the same
    local lpath = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua"):format(tree, LUA_VERSION, tree, LUA_VERSION)
    local cpath = ("%s/lib/lua/%s/?.so"):format(tree, LUA_VERSION)
    local child = work .. "/child.lua"
    write(child, CHILD)
    local env = ("LUA_PATH=%s LUA_CPATH=%s LUA_PATH_5_4=%s LUA_CPATH_5_4=%s LUA_INIT= LUA_INIT_5_4="):format(
      q(lpath), q(cpath), q(lpath), q(cpath))
    rc, out = run(("cd %s && env %s timeout 30 %s %s %s"):format(q(work), env, LUA, q(child), q(broker.uri)))
    assert.are.equal(0, rc, "child failed:\n" .. out)

    assert.are.equal(core_so, out:match("CORE=([^\n]*)"), out)
    assert.are.equal(mqtt_lua, out:match("LUAMOD=([^\n]*)"), out)
    local version = ("\n" .. out):match("\nVERSION=([^\n]*)")
    assert.truthy(version and version:match("^%d+%.%d+%.%d+"), out)
    assert.truthy(out:match("PAHO_VERSION=%d"), out)
    assert.truthy(out:find("PUBLISH=ok", 1, true), out)
    assert.truthy(out:find("DONE", 1, true), out)
  end)

  it("left no build products in the work tree", function()
    for _, f in ipairs(PRODUCTS) do
      if not present_before[f] then
        assert.is_nil(helper.read(root .. "/" .. f), "build product left in the work tree: " .. f)
      end
    end
  end)
end)
