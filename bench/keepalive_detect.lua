--- How long a half-open link takes to be noticed, per keepalive.
-- A broker frozen with SIGSTOP keeps its socket open and answers nothing;
-- this measures the time from the freeze to the "disconnect" event and
-- checks its cause, for keepalive 1, 2 and 5 s, REPS times each.
--
--   make all && LUA_PATH="lua/?.lua;spec/support/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
--     lua5.4 bench/keepalive_detect.lua [reps]
local helper = require "helper"
local mqtt = require "paho.mqtt"

local reps = tonumber(arg[1] or "3")
print(("%-10s %-8s %-28s %-10s %s"):format("keepalive", "bound", "detected after (s)", "median", "causes"))
for _, ka in ipairs({ 1, 2, 5 }) do
  local times, causes = {}, {}
  for r = 1, reps do
    local b = helper.broker()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("kad") })
    local got
    c:on("disconnect", function(ev) got = ev; got.at = helper.now() end)
    assert(c:connect { keepalive = ka })
    mqtt.sleep(0.37 * r) -- freeze at different points of the ping cycle
    local t0 = helper.now()
    b:pause()
    helper.eventually(function() return got ~= nil end, 2.5 * ka + 5, mqtt)
    b:resume()
    times[#times + 1] = got and (got.at - t0) or math.huge
    causes[#causes + 1] = got and got.cause or "none"
    c:close()
    b:stop()
  end
  local sorted = {}
  for i, t in ipairs(times) do sorted[i] = t end
  table.sort(sorted)
  local strs = {}
  for i, t in ipairs(times) do strs[i] = ("%.2f"):format(t) end
  print(("%-10s %-8s %-28s %-10.2f %s"):format(ka .. " s", (2.5 * ka + 1) .. " s", table.concat(strs, " "),
    sorted[math.floor((#sorted + 1) / 2)], table.concat(causes, ",")))
end
helper.stop_all()
