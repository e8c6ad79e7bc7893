-- A light, paced GET (GET /healthz): each connection waits BENCH_DELAY_MS between
-- requests, so the probe measures latency without adding load of its own. wrk starts the
-- latency clock when a request is written, so the pause is not counted.

local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "10")

function delay()
  return delay_ms
end
