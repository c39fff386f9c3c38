-- POST a JSON body naming one of PLAYERS players, round robin.
-- Environment: TOKEN, PATH_, BODY (with %s for the player id), PLAYERS.
local token = os.getenv("TOKEN")
local path = os.getenv("PATH_")
local body = os.getenv("BODY")
local players = tonumber(os.getenv("PLAYERS") or "1000")
local n = 0
request = function()
  n = n + 1
  local p = "p" .. (n % players)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, string.format(body, p))
end
