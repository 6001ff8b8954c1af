-- wrk script: POST /api/host/heartbeat as the original C++ host sends it, each
-- request for another of 100,000 hostIds per wrk thread, on keep-alive
-- connections.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads) -- a global in that thread's Lua state
end

request = function()
  counter = counter + 1
  local n = counter % 100000
  local body = string.format(
    '{"hostId":"wrk-%d-%d","roomId":"room-%d","region":"local","status":"idle","capacity":4,"availableSlots":4}',
    id or 0, n, n)
  return wrk.format("POST", "/api/host/heartbeat",
                    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench"}, body)
end
