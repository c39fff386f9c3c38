-- playSMS op=pv to one number, a new number each time.
-- Environment: USER, TOKEN (the account's webservices token).
local user = os.getenv("USER_NAME")
local token = os.getenv("TOKEN")
local n = 0
request = function()
  n = n + 1
  local path = string.format(
    "/playsms/index.php?app=ws&u=%s&h=%s&op=pv&to=%%2B1415%07d&msg=test+only",
    user, token, n % 10000000)
  return wrk.format("GET", path)
end
