-- playSMS op=pv to one number, a new number each time.
-- Environment: USER_NAME, TOKEN (the account's webservices token) and
-- PREFIX (default /playsms; empty to aim the same requests at a playSMS).
local user = os.getenv("USER_NAME")
local token = os.getenv("TOKEN")
local prefix = os.getenv("PREFIX") or "/playsms"
local n = 0
request = function()
  n = n + 1
  local path = string.format(
    "%s/index.php?app=ws&u=%s&h=%s&op=pv&to=%%2B1415%07d&msg=test+only",
    prefix, user, token, n % 10000000)
  return wrk.format("GET", path)
end
