-- Managed by the docker-registry charm; changes made here are overwritten.
-- A registry restarting (a config change, garbage-collect) closes its unix
-- socket, drains, and listens again a moment later. haproxy retries a failed
-- connection to a unix socket at once, without its turn-around delay, so its
-- retries end before the registry is back. This action holds the request
-- instead while the socket is absent: clients see a delay, not an error.
local STEP_MS = 20
local LIMIT_MS = 90000
local ENOENT = 2

core.register_action("await_socket", { "http-req" }, function(txn, path)
  local waited = 0
  while waited < LIMIT_MS do
    local file, _, code = io.open(path, "r")
    if file then
      file:close()
      return
    end
    -- Opening a socket fails with ENXIO: it is there.
    if code ~= ENOENT then
      return
    end
    core.msleep(STEP_MS)
    waited = waited + STEP_MS
  end
end, 1)
