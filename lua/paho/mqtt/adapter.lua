--- paho.mqtt.adapter (internal): what every event-loop adapter (cqueues, luv, copas, nginx) does the same way.
--
-- An adapter watches client:fd() and client:timeout() with its loop's own
-- primitives and calls dispatch() below when either says so.
local pcall = pcall

local A = {}

--- Dispatches what `client` has pending, without waiting: the number of
-- events handled (0 for a closed client), or nil, err when a handler's error
-- escaped the dispatch. A handler that closes the client ends the dispatch
-- with "the client is closed": that is not an error here.
function A.dispatch(client)
  if client:state() == "closed" then return 0 end
  local ok, n = pcall(client.dispatch, client, 0)
  if ok then return n end
  if client:state() == "closed" then return 0 end
  return nil, n
end

--- Seconds until one of the client's suspended waits is due, or nil (none,
-- or the client is closed).
function A.timeout(client)
  if client:state() == "closed" then return nil end
  return client:timeout()
end

return A
