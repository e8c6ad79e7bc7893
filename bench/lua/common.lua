-- Shared by every scenario script (loaded with dofile): thread numbering, this thread's
-- share of a data file, and one machine-readable result line printed by done().
--
-- Environment: BENCH_DATA (a file, one item a line), BENCH_THREADS (wrk -t).

local common = {}
local threads = {}
local next_index = 0

function setup(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
  table.insert(threads, thread)
end

-- The lines of BENCH_DATA that belong to this thread (round robin), so that no two
-- threads share a refresh token.
function common.my_lines()
  local path = os.getenv("BENCH_DATA")
  local count = tonumber(os.getenv("BENCH_THREADS") or "1")
  local mine = {}
  local n = 0
  for line in io.lines(path) do
    if line ~= "" then
      if n % count == thread_index then
        table.insert(mine, line)
      end
      n = n + 1
    end
  end
  if #mine == 0 then
    error("no data for wrk thread " .. tostring(thread_index) .. " in " .. path)
  end
  return mine
end

function done(summary, latency, requests)
  local starved = 0
  for _, thread in ipairs(threads) do
    starved = starved + (tonumber(thread:get("starved")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"starved":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), starved))
end

return common
