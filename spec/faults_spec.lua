-- Zero loss under faults: N (20,000) QoS 1 and N QoS 2 messages from an
-- MQTT 5 publisher with a session (clean_start = false, session_expiry
-- 3600 s, reconnect on, offline queue), once with the session in paho's
-- persistence store (`persistence = {dir}`) and once in memory,
-- while the broker is stopped and restarted twice (SIGTERM: mosquitto
-- saves its sessions to its persistence file) and the publisher's
-- connection is cut twice through the fault proxy. QoS 1: every message
-- arrives at least once; QoS 2: exactly once; every publish token
-- completes (but see below). In memory, a message may be missing only if
-- its publish failed and said so. Prints the duplicate counts.
--
-- Environment: PMQ_FAULT_N (messages per QoS; 20,000, 2,500 under
-- valgrind), PMQ_FAULT_V (MQTT version, 5), PMQ_FAULT_PERSIST (1: only
-- with the store, 0: only in memory; both when unset), PMQ_FAULT_KILL=1
-- (the broker restarts after SIGKILL: what it loses), PMQ_DEBUG=1 (print
-- every event).
--
-- If paho damages its session (a publish failed while being written, see
-- docs/deployment.md), the client rebuilds its paho handle: the tokens it
-- had pending then fail, saying so, while paho sends their messages again
-- from the store; the counts below still hold.
--
-- Found on 2026-11-29 without a Session Expiry on the MQTT 5 publisher
-- (expiry 0: the session ends with each connection): 2 QoS 1 and 10 QoS 2
-- messages missing of 1,000 + 1,000, 20 tokens failed: paho fails the
-- in-flight publishes of an ended session (-11) and never resends them.
local helper = require "helper"
local mqtt = require "paho.mqtt"
local fp = require "faultproxy"

local N = tonumber(os.getenv("PMQ_FAULT_N") or (os.getenv("PMQ_VALGRIND") and "2500" or "20000"))
-- PMQ_FAULT_KILL=1: the broker restarts after SIGKILL instead of SIGTERM, so
-- it loses what it had not saved (autosave); a measurement of the broker's
-- window, expected to fail the zero-loss assertions
local KILL = os.getenv("PMQ_FAULT_KILL") == "1"

-- under valgrind (make valgrind, PMQ_VALGRIND) the client handles about
-- 200 publishes a second: the 40,000 tokens of the first test need about
-- 180 s after the last publish, more when other suites share the CPU (CI)
local SLOW = os.getenv("PMQ_VALGRIND") and 5 or 1

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

-- counts[q][i]: arrivals of message i at QoS q (1, 2). Waits up to
-- `timeout` s for messages 1..n at both (but those in excused[q], if
-- given), then `settle` s for late duplicates; returns the missing and
-- duplicate counts per QoS
local function tally(counts, n, timeout, settle, excused)
  local function complete()
    for q = 1, 2 do
      for i = 1, n do
        if not counts[q][i] and not (excused and excused[q][i]) then return false end
      end
    end
    return true
  end
  until_(complete, timeout)
  mqtt.sleep(settle) -- late duplicates, if any
  local missing, dups = { 0, 0 }, { 0, 0 }
  for q = 1, 2 do
    for i = 1, n do
      local c = counts[q][i]
      if not c then missing[q] = missing[q] + 1 elseif c > 1 then dups[q] = dups[q] + c - 1 end
    end
  end
  return missing, dups
end

-- "k n, k n" for a table of counts, the largest first
local function summary(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return t[a] > t[b] end)
  local out = {}
  for i = 1, math.min(#ks, 6) do out[#out + 1] = ("%s: %d"):format(ks[i], t[ks[i]]) end
  if #ks > 6 then out[#out + 1] = ("and %d more kinds"):format(#ks - 6) end
  return #out > 0 and table.concat(out, "; ") or "none"
end

describe("faults under load", function()
  teardown(function() helper.stop_all() end)

  -- the session in paho's persistence store, then in memory
  -- (PMQ_FAULT_PERSIST=1 or 0: only one of them)
  local only = os.getenv("PMQ_FAULT_PERSIST")
  for _, persist in ipairs { true, false } do
    if not only or only == "" or (only == "1") == persist then
      it(("%s: %d QoS 1 + %d QoS 2 across 2 broker restarts and 2 cut connections, session %s")
          :format(persist and "loses nothing" or "loses nothing it does not report", N, N,
            persist and "in paho's persistence store" or "in memory"), function()
        -- the broker queues every message for the subscriber while it is away
        local b = helper.broker { config = { "max_queued_messages 0", "max_queued_bytes 0" } }
        local p = fp.start(b.port)
        local counts = { [1] = {}, [2] = {} }
        local events = { sub = 0, pub = 0, faults = 0 }

        -- the subscriber: a session mosquitto writes to disk (Clean Start off from the start)
        local sub = assert(mqtt.client { uri = b.uri, id = helper.uid("fsub"), queue_max = 50000, version = 4 })
        local corrupt = 0 -- messages that are none of ours (paho resending freed memory)
        sub:on("message", function(m)
          local q, i = m.payload:match("^q(%d)%-(%d+)$")
          local c = counts[tonumber(q)]
          if not c or m.topic ~= "load/q" .. q then corrupt = corrupt + 1 return end
          i = tonumber(i)
          c[i] = (c[i] or 0) + 1
        end)
        sub:on("connect", function(info) if info.reconnect then events.sub = events.sub + 1 end end)
        assert(sub:connect { clean_start = false, keepalive = 5,
          reconnect = { min = 0.1, max = 0.5 } })
        assert(sub:subscribe { { "load/q1", 1 }, { "load/q2", 2 } })

        -- the publisher: through the proxy; its session (with the messages in
        -- flight) kept by paho (in memory, or in its store with PMQ_FAULT_PERSIST=1)
        -- and by mosquitto across its restarts
        local dir = helper.tmpdir() .. "/" .. helper.uid("fpub-store")
        assert.is_true(helper.sh("mkdir -p " .. dir))
        local pub = assert(mqtt.client { uri = p.uri, id = helper.uid("fpub"),
          version = tonumber(os.getenv("PMQ_FAULT_V") or 5),
          persistence = persist and { dir = dir } or nil,
          offline_queue = 2 * N })
        local debug = os.getenv("PMQ_DEBUG")
        if debug then io.stdout:setvbuf("no") end -- in time with valgrind's stderr
        pub:on("connect", function(info)
          if info.reconnect then events.pub = events.pub + 1 end
          if debug then
            print("pub connect", helper.now(), info.reconnect, info.session_present, "rebuilds", pub:stats().rebuilds)
          end
        end)
        -- the publisher's losses, by cause (and reason code), for the summary
        local losses = {}
        pub:on("disconnect", function(r)
          local k = r.cause .. (r.code and ("/0x%02x"):format(r.code) or "")
          losses[k] = (losses[k] or 0) + 1
          if debug then print("pub disconnect", helper.now(), r.cause, r.code, r.message) end
        end)
        if debug then
          pub:on("connect_failed", function(r) print("pub connect_failed", helper.now(), r.message, r.retry_in) end)
        end
        -- MQTT 5 needs a Session Expiry for the session to outlive a loss
        -- (expiry 0, the default, ends it with the connection: paho then fails
        -- the in-flight publishes and the broker forgets them)
        local expiry = tonumber(os.getenv("PMQ_FAULT_V") or 5) == 5 and 3600 or nil
        assert(pub:connect { clean_start = false, keepalive = 5, session_expiry = expiry,
          reconnect = { min = 0.1, max = 0.5 } })

        local faults = {
          [math.floor(N * 0.2)] = function() p:reset() end,
          [math.floor(N * 0.4)] = function() b:stop(KILL and "KILL" or "TERM") helper.sleep(0.5) b:start() end,
          [math.floor(N * 0.6)] = function() p:reset() end,
          [math.floor(N * 0.8)] = function() b:stop(KILL and "KILL" or "TERM") helper.sleep(0.5) b:start() end,
        }
        local tokens, refused = {}, 0
        local t0 = helper.now()
        for i = 1, N do
          for q = 1, 2 do
            local tok
            for _ = 1, 2000 do -- bounded retry while the client cannot take it
              tok = pub:publish("load/q" .. q, ("q%d-%d"):format(q, i), { qos = q })
              if tok then break end
              refused = refused + 1
              mqtt.sleep(0.01)
            end
            assert.truthy(tok, "publish kept failing")
            tokens[#tokens + 1] = tok
          end
          if faults[i] then
            -- one fault at a time: the previous one is over when both are back
            until_(function() return pub:is_connected() and sub:is_connected() end, 30)
            if os.getenv("PMQ_DEBUG") then print("fault at", i, helper.now(), pub:state()) end
            faults[i]()
            events.faults = events.faults + 1
          end
          if i % 200 == 0 then mqtt.dispatch(0) end
        end
        -- every publish completes
        local failed, shown = {}, 0
        local told = { {}, {} } -- told[q][i]: the program was told that publish failed
        local t_last = helper.now()
        local deadline = t_last + 120 * SLOW -- for all of them together
        for k, tok in ipairs(tokens) do
          local ok, msg, code = tok:wait(math.max(0, deadline - helper.now()))
          -- a wait ends with "disconnected" when the connection drops meanwhile
          -- (the last fault may still be under way); the publish itself is
          -- still pending in the session: wait again
          while not ok and code == "disconnected" and not tok:done() and helper.now() < deadline do
            ok, msg, code = tok:wait(math.max(0, deadline - helper.now()))
          end
          if not ok then
            failed[#failed + 1] = tostring(code) .. ": " .. tostring(msg)
            told[2 - k % 2][math.floor((k + 1) / 2)] = true -- tokens go q1, q2 for each i
            local rebuilt = tostring(msg):find("fresh paho handle", 1, true)
            if not rebuilt then shown = shown + 1 end
            if not rebuilt and shown <= 3 then -- where it was: held by the client, or handed to paho
              local fields = {}
              for f, v in pairs(tok) do
                if type(v) ~= "table" and type(v) ~= "function" then fields[#fields + 1] = f .. "=" .. tostring(v) end
              end
              table.sort(fields)
              print("    failed token " .. #failed .. ": " .. table.concat(fields, " "))
            end
            if os.getenv("PMQ_DEBUG") then print("failed token", code, msg) end
          end
        end
        -- and everything arrives
        -- in memory, what a fresh paho handle could not send again is lost,
        -- and its publish failed: the program was told (with the store,
        -- nothing may be missing)
        local t_tokens = helper.now() - t_last
        local missing, dups = tally(counts, N, 120 * SLOW, 1, not persist and told or nil)
        local t_all = helper.now() - t_last
        local lost_told = { 0, 0 }
        if not persist then
          for q = 1, 2 do
            for i in pairs(told[q]) do
              if not counts[q][i] then lost_told[q], missing[q] = lost_told[q] + 1, missing[q] - 1 end
            end
          end
        end
        print(("\n    %d + %d messages in %.1f s, faults %d, reconnects pub %d sub %d, publishes refused %d; "
          .. "missing q1 %d q2 %d; duplicates q1 %d q2 %d; failed tokens %d; paho handle rebuilds %d")
          :format(N, N, helper.now() - t0, events.faults, events.pub, events.sub, refused,
            missing[1], missing[2], dups[1], dups[2], #failed, pub:stats().rebuilds))
        print(("    publisher disconnects: %s; messages not ours: %d; lost with their publish failed: q1 %d q2 %d")
          :format(summary(losses), corrupt, lost_told[1], lost_told[2]))
        print(("    after the last publish: every token done in %.1f s, every message in %.1f s")
          :format(t_tokens, t_all))
        if #failed > 0 then
          local st = pub:stats()
          print(("    publisher now: %s, inflight %s (handed to paho %s), held %s, offline queued %s, "
            .. "paho pending %s"):format(pub:state(), tostring(st.inflight), tostring(select(3, pub._c:outbox())),
            tostring(st.held), tostring(st.offline_queued), tostring(pub._c and pub._c:pending())))
          local why = {}
          for _, f in ipairs(failed) do why[f] = (why[f] or 0) + 1 end
          print("    failed tokens: " .. summary(why))
        end
        if os.getenv("PMQ_DEBUG") then print(helper.read(b.dir .. "/mosquitto.log")) end
        assert.are.equal(4, events.faults)
        assert.is_true(events.pub >= 4)
        assert.are.equal(0, missing[1])
        assert.are.equal(0, missing[2])
        assert.are.equal(0, dups[2]) -- QoS 2: exactly once
        assert.are.equal(0, corrupt, "messages arrived that were never published")
        -- every token succeeded, but the publish paho failed while writing it
        -- (-1) and those a fresh paho handle ended
        local unexplained = {}
        for _, f in ipairs(failed) do
          if not (f:find("fresh paho handle", 1, true) or f:find("(paho code -1)", 1, true)) then
            unexplained[#unexplained + 1] = f
          end
        end
        assert.are.same({}, unexplained)
        -- a damaged paho handle is retired, never destroyed: destroying it
        -- frees the failed publish a second time (src/retire.c)
        assert.are.equal(pub:stats().rebuilds, pub:stats().retired)
        pub:close()
        sub:close()
        p:stop()
      end)
    end
  end
  -- paho.mqtt.c 1.3.12, given 40,000 publishes at once on MQTT 3.1.1, wrote
  -- a malformed packet within 25 ms (mosquitto: "disconnected due to
  -- malformed packet"); the binding now hands them over in a window
  it("MQTT 3.1.1: a burst of 10,000 QoS 1 + 10,000 QoS 2 publishes all arrive", function()
    local b = helper.broker { config = { "max_queued_messages 0", "max_queued_bytes 0" } }
    local got = { 0, 0 }
    local sub = assert(mqtt.client { uri = b.uri, id = helper.uid("bsub"), version = 4, queue_max = 50000 })
    sub:on("message", function(m) local q = m.qos got[q] = got[q] + 1 end)
    assert(sub:connect {})
    assert(sub:subscribe { { "burst/q1", 1 }, { "burst/q2", 2 } })
    local pub = assert(mqtt.client { uri = b.uri, id = helper.uid("bpub"), version = 4 })
    local lost = 0
    pub:on("disconnect", function() lost = lost + 1 end)
    assert(pub:connect {})
    local toks = {}
    for i = 1, 10000 do
      toks[#toks + 1] = assert(pub:publish("burst/q1", "m" .. i, { qos = 1 }))
      toks[#toks + 1] = assert(pub:publish("burst/q2", "m" .. i, { qos = 2 }))
    end
    local deadline = helper.now() + 120 * SLOW
    for _, t in ipairs(toks) do assert(t:wait(math.max(0, deadline - helper.now()))) end
    assert.is_true(until_(function() return got[1] >= 10000 and got[2] >= 10000 end, 60 * SLOW),
      ("got %d + %d"):format(got[1], got[2]))
    assert.are.equal(0, lost)
    assert.are.same({ 10000, 10000 }, got)
    pub:close()
    sub:close()
  end)

  -- the publisher in its own process, so that it can be killed with SIGKILL.
  -- Publish k (1..2n) is message ceil(k/2) at QoS 1 (k odd) or 2 (k even).
  local publisher = [[
    local mqtt = require "paho.mqtt"
    local uri, id, dir, from, last, progress = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6]
    local c = assert(mqtt.client { uri = uri, id = id, persistence = { dir = dir }, offline_queue = 1000 })
    assert(c:connect { clean_start = false, session_expiry = 3600, keepalive = 5 })
    local toks = {}
    local function done(k) -- publishes up to k completed: the progress file says so
      assert(toks[k]:wait(60))
      toks[k] = nil
      local f = assert(io.open(progress .. ".new", "w")) -- (a rename is atomic)
      f:write(k)
      f:close()
      assert(os.rename(progress .. ".new", progress))
    end
    for k = from, last do
      if k - 20 >= from then done(k - 20) end
      local q = k % 2 == 1 and 1 or 2
      toks[k] = assert(c:publish("kill/q" .. q, tostring(math.floor((k + 1) / 2)), { qos = q }))
    end
    for k = math.max(from, last - 19), last do done(k) end
    io.stdout:write("done\n")
    c:disconnect()
  ]]

  it("loses nothing when the publishing process is killed (SIGKILL) mid-stream and started again", function()
    local n = N -- the same count as above: N QoS 1 + N QoS 2
    local b = helper.broker { config = { "max_queued_messages 0", "max_queued_bytes 0" } }
    local counts = { [1] = {}, [2] = {} }
    local sub = assert(mqtt.client { uri = b.uri, id = helper.uid("ksub"), queue_max = 50000 })
    sub:on("message", function(m)
      local q, i = tonumber(m.topic:match("(%d)$")), tonumber(m.payload)
      counts[q][i] = (counts[q][i] or 0) + 1
    end)
    assert(sub:connect { clean_start = false, session_expiry = 3600 })
    assert(sub:subscribe { { "kill/q1", 1 }, { "kill/q2", 2 } })
    local dir = helper.tmpdir() .. "/" .. helper.uid("kstore")
    assert.is_true(helper.sh("mkdir -p " .. dir))
    local path = helper.tmpdir() .. "/" .. helper.uid("kpub") .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(publisher)
    f:close()
    local lua = os.getenv("PMQ_LUA") or "lua5.4"
    local id, progress, out = helper.uid("kpub"), dir .. ".progress", dir .. ".out"
    local function completed() return tonumber(helper.read(progress) or "") or 0 end
    local pid_file = dir .. ".pid"
    assert.is_true(helper.sh(("%s %s %s %s %s 1 %d %s >%s 2>&1 & echo $! > %s"):format(
      lua, path, b.uri, id, dir, 2 * n, progress, out, pid_file)))
    -- kill it halfway
    assert.is_true(until_(function() return completed() >= n end, math.max(60, n / 100) * SLOW), helper.read(out))
    assert.is_true(helper.sh("kill -9 " .. tonumber(helper.read(pid_file))))
    mqtt.sleep(0.2)
    -- Start it again with the same id and store. What paho had saved it
    -- sends again by itself; the program publishes again everything after
    -- the last completed publish, as it cannot know which of those paho
    -- had saved (publish() returns before paho writes its store)
    local k0 = completed()
    assert.is_true(helper.sh(("%s %s %s %s %s %d %d %s >>%s 2>&1"):format(
      lua, path, b.uri, id, dir, k0 + 1, 2 * n, progress, out)), helper.read(out))
    local missing, dups = tally(counts, n, 30 * SLOW, 0.5)
    print(("\n    %d + %d messages, publisher killed after %d completed publishes and started again; "
      .. "missing q1 %d q2 %d; duplicates q1 %d q2 %d"):format(n, n, k0, missing[1], missing[2], dups[1], dups[2]))
    assert.are.equal(0, missing[1])
    assert.are.equal(0, missing[2])
    -- QoS 2: duplicates only among the (at most 20) publishes outstanding at
    -- the kill, which paho resent from its store and the program published again
    assert.is_true(dups[2] <= 10, "QoS 2 duplicates: " .. dups[2])
    sub:close()
    b:stop()
  end)
end)
