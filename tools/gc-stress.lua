--- Runs a Lua script -- by default busted, and so the suite -- with the
-- garbage collector collecting all the time, so that every object of the
-- binding (clients, tokens, handler coroutines, message and property tables,
-- the C core's userdata) is collected at the earliest moment it may be, and a
-- missing reference (a C pointer into a string Lua no longer holds, a client
-- freed while paho still uses it, a finaliser that runs too early) shows up
-- as a crash, an ASan report or a wrong result instead of hiding behind a
-- lazy collector.
--
--   lua5.4 tools/gc-stress.lua [script [args...]]   (script: /usr/bin/busted)
--   make gc-stress                                  (the whole suite)
--
-- The script runs in this interpreter (dofile, with `arg` rebuilt for it), so
-- the settings apply to it. `make gc-stress` puts a `lua5.4` first in PATH
-- that runs every Lua script through this file, so the programs the specs
-- start (examples, a second client process) run under the same collector.
-- Environment:
--   PMQ_GC_MODE  "incremental" (default): pause 0 (a new cycle starts as soon
--                as one ends) and the largest step multiplier, i.e. the
--                collector is always running;
--                "generational" (Lua 5.4): a minor collection whenever the
--                heap grew 1 %;
--                "full": a full collectgarbage() every PMQ_GC_EVERY VM
--                instructions (default 100000) through a count hook, which
--                coroutines created later inherit on 5.3/5.4, so handler
--                coroutines are hooked too. Slow; for single spec files.
--   PMQ_GC_EVERY see "full".
local mode = os.getenv("PMQ_GC_MODE") or "incremental"
local version = _VERSION:match("%d+%.%d+")

local function incremental()
  if version == "5.4" then
    -- pause 0: start the next cycle at once; stepmul 1000: the largest step
    -- (5.4 keeps stepmul/4 in a byte); stepsize 10: a step every 1 KiB
    collectgarbage("incremental", 0, 1000, 10)
  else
    collectgarbage("setpause", 0)
    collectgarbage("setstepmul", 1000)
  end
end

if mode == "incremental" then
  incremental()
elseif mode == "generational" then
  if version ~= "5.4" then
    io.stderr:write("gc-stress: generational mode needs Lua 5.4; using incremental\n")
    incremental()
  else
    -- minor multiplier 1 %: a minor collection after the heap grows 1 %;
    -- major multiplier 10 %: a major one after it grows 10 % over the last
    collectgarbage("generational", 1, 10)
  end
elseif mode == "full" then
  incremental()
  local every = tonumber(os.getenv("PMQ_GC_EVERY") or "") or 100000
  local busy = false
  debug.sethook(function()
    if busy then return end
    busy = true
    collectgarbage("collect")
    busy = false
  end, "", every)
else
  error("gc-stress: PMQ_GC_MODE must be incremental, generational or full, got " .. mode)
end

if os.getenv("PMQ_GC_QUIET") ~= "1" then
  io.stderr:write(("gc-stress: %s, %s collector%s: %s\n"):format(_VERSION, mode,
    mode == "full" and (", a full collection every " .. (os.getenv("PMQ_GC_EVERY") or "100000") .. " instructions")
    or "", arg[1] or "/usr/bin/busted"))
end

-- run the script in this interpreter: arg[0] is the script, the rest its arguments
local script = arg[1] or "/usr/bin/busted"
local args = { [-1] = arg[-1], [0] = script }
for i = 2, #arg do args[i - 1] = arg[i] end
arg = args -- luacheck: ignore 121
local chunk = assert(loadfile(script))
local unpack_ = table.unpack or unpack -- luacheck: ignore 113
chunk(unpack_(args, 1, #args))
