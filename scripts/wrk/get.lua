-- GET a path naming one of PLAYERS players, round robin.
-- Environment: TOKEN, PATH_ (with %s for the player id), PLAYERS.
local token = os.getenv("TOKEN")
local path = os.getenv("PATH_")
local players = tonumber(os.getenv("PLAYERS") or "1000")
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", string.format(path, "p" .. (n % players)), {
    ["Authorization"] = "Bearer " .. token,
  })
end
