-- POST /v1/auth/login with the right password, cycling through the seeded accounts
-- (BENCH_DATA: one "email<TAB>password" a line).

local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local requests = {}
local i = 0

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for _, line in ipairs(common.my_lines()) do
    local email, password = string.match(line, "^([^\t]+)\t(.+)$")
    local body = '{"email":"' .. email .. '","password":"' .. password .. '"}'
    table.insert(requests, wrk.format("POST", nil, headers, body))
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end
