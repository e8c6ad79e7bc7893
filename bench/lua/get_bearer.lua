-- GET wrk's URL with "Authorization: Bearer <token>", cycling through BENCH_DATA's tokens.
-- Used for GET /v1/users/me and, unchanged, for the bare floor (which ignores the header),
-- so both cost wrk the same.

local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local requests = {}
local i = 0

function init(args)
  for _, token in ipairs(common.my_lines()) do
    table.insert(requests, wrk.format("GET", nil, {["Authorization"] = "Bearer " .. token}))
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end
