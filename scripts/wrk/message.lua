-- POST /v1/messages to a new number each time.
-- Environment: TOKEN, BODY (JSON with %s for the number's last 7 digits).
local token = os.getenv("TOKEN")
local body = os.getenv("BODY")
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, string.format(body, string.format("%07d", n % 10000000)))
end
