-- POST /v1/auth/refresh along real rotation chains: each request spends a refresh token
-- from this thread's pool and each 200 puts the successor it carries back into the pool.
-- BENCH_DATA holds one live refresh token per session; give the pool more sessions than
-- connections, since a failed request loses its chain. An empty pool replays the last
-- token (counted as "starved": that measures the grace path, not rotation).

local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local pool = {}
local head, tail = 1, 0
local last = nil
local headers = {["Content-Type"] = "application/json"}
starved = 0

function init(args)
  for _, token in ipairs(common.my_lines()) do
    tail = tail + 1
    pool[tail] = token
  end
end

function request()
  local token
  if head <= tail then
    token = pool[head]
    pool[head] = nil
    head = head + 1
    last = token
  else
    starved = starved + 1
    token = last
  end
  return wrk.format("POST", nil, headers, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local token = string.match(body, '"refresh_token":"([^"]+)"')
    if token then
      tail = tail + 1
      pool[tail] = token
    end
  end
end
