-- Managed by the docker-registry charm; changes made here are overwritten.
-- A registry restarting (a config change, garbage-collect) gives up its unix
-- socket, drains, and listens again a moment later. haproxy retries a failed
-- connection to a unix socket at once, without its turn-around delay, so its
-- retries end before the registry is back. This action holds the request
-- instead until the socket takes connections: clients see a delay, not an
-- error. It connects rather than looks for the file: a registry binds its
-- socket (the file appears) a moment before it listens, and requests woken
-- together would all meet that moment. (Measured: no change in requests per
-- second through the front.)
local STEP_MS = 20
local LIMIT_MS = 90000

local function listening(path)
  local probe = core.tcp()
  probe:settimeout(1)
  local connected = probe:connect("unix@" .. path)
  probe:close()
  return connected ~= nil
end

core.register_action("await_socket", { "http-req" }, function(txn, path)
  local waited = 0
  while not listening(path) and waited < LIMIT_MS do
    core.msleep(STEP_MS)
    waited = waited + STEP_MS
  end
end, 1)
