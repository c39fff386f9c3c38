#!/usr/bin/env bash
# The README's Quick start, line for line, as a script: the test suite runs
# it against a fresh server (host/tests/cli.rs, `the_quick_start_works_as_written`)
# and checks that every line below the marker is the README's.
#
#   cargo run -- serve &      # in a fresh directory: ./data, 127.0.0.1:8080
#   examples/quickstart.sh
#
# Every curl fails the script on an HTTP error, and `engage` is the built
# binary ($ENGAGE_BIN) or `cargo run` from this checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
curl() { command curl --fail-with-body --show-error "$@"; echo; }
engage() {
    if [ -n "${ENGAGE_BIN:-}" ]; then "$ENGAGE_BIN" "$@"; else cargo run -q --manifest-path "$root/Cargo.toml" -- "$@"; fi
}
# ---- the README's Quick start ----
E=${E:-localhost:8080}   # where `engage serve` listens
KEY=$(jq -r .demo.api_key data/credentials.json); SECRET=$(jq -r .demo.api_secret data/credentials.json)
TOKEN=$(curl -s $E/v1/auth/token -d "{\"api_key\":\"$KEY\",\"api_secret\":\"$SECRET\"}" | jq -r .token)

# Seed 000: a player with a phone number, an action that earns 100 points
# (the demo's rule table), a goods group with coupon codes, a redemption:
H="Authorization: Bearer $TOKEN"
curl -s $E/v1/players -H "$H" -d '{"id":"player1","phone":"+6681234567"}'
curl -s $E/v1/actions -H "$H" -H 'Idempotency-Key: order-1' -d '{"player":"player1","action":"buy"}'
curl -s -X PUT $E/v1/goods/coupon -H "$H" -d '{"name":"Coupon","price":100}'
printf '8830644924\n8830644925\n' | curl -s $E/v1/goods/coupon/codes -H "$H" -H 'Content-Type: text/plain' --data-binary @-
REF=$(curl -s $E/v1/goods/coupon/redeem -H "$H" -d '{"player":"player1"}' | jq -r .ref_id)   # the code and its ref_id
curl -s $E/v1/players/player1 -H "$H"                                 # balances, badges, counts

# The same through the Playbasis-compatible API (form parameters, Playbasis envelope):
PB=$(curl -s $E/playbasis/Auth -d "api_key=$KEY&api_secret=$SECRET" | jq -r .response.token)
curl -s $E/playbasis/Engine/rule -d "token=$PB&player_id=player1&action=buy"
curl -s "$E/playbasis/Redeem/goodsGroup?api_key=$KEY&player_id=player1&group=coupon"
curl -s "$E/playbasis/Player/player1?api_key=$KEY"   # public profile: no e-mail or phone (the API key is public)
curl -s $E/playbasis/Player/player1 -d "token=$PB"     # with the token: e-mail and phone too
# Browser SDKs call from the app's origin once the tenant allows it (CORS; none by default):
curl -s -X PUT $E/v1/settings/cors -H "$H" -d '{"allowed_origins":["https://app.example.com"]}'

# Seed 004: friends, a gift request to every playing friend (the gift
# binding's daily quota applies), the Playblazer API with APP_ID = tenant:
curl -s -X PUT $E/v1/players/player1/identities/fb -H "$H" -d '{"id":"kunalg"}'
curl -s $E/v1/players -H "$H" -d '{"id":"friend1"}'
curl -s -X PUT $E/v1/players/player1/friends -H "$H" -d '{"friends":[{"mode":"player","id":"friend1"}]}'
curl -s -X POST -F "secret_key=$SECRET" -F "custom:item_name=item1" -F "expiry=3600" \
  $E/playblazer/v1/app/demo/gifts/fb/kunalg/request/new
curl -s "$E/v1/players/friend1/notifications" -H "$H"   # or .../notifications/stream (SSE)

# Messages: the coupon by SMS through the template and route bindings. The
# console provider is the default: it logs and reports "delivered".
curl -s $E/v1/messages -H "$H" -d '{"to":["+6681234567"],"template":"Your code: {{code}}","vars":{"code":"8830644924"},"reference":"order-1"}'
curl -s "$E/v1/messages?reference=order-1" -H "$H"       # every attempt and status
curl -s $E/playbasis/Sms/goods -d "token=$PB&player_id=player1&ref_id=$REF&message=Your coupon: {{code}}"
# A real provider, with your own credentials (stored sealed); the route
# binding sends through it once its config names it (`docs/compatibility.md`):
curl -s -X PUT $E/v1/providers/twilio -H "$H" \
  -d '{"kind":"twilio","account_sid":"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","auth_token":"your-auth-token","from":"+15005550006"}'
# Seed 001: Viber with an SMS fallback through the BSG-compatible API:
curl -s $E/bsg/rest/viber/create -H "X-API-KEY: $KEY" -d '{"validity":"1","messages":[{"to":[{"msisdn":"380972920000","reference":"ext_id_19"}],"text":"Hi","alpha_name":"BSG","options":{"viber":{"alt_route":{"originator":"BSG","text":"Hi by SMS"}}}}]}'
# Seed 003: the playSMS webservices API. A first admin account through /v1,
# then playSMS's own operations (the token finds the tenant):
curl -s $E/v1/gateway/accounts -H "$H" -d '{"username":"admin","password":"s3cret","level":"admin","name":"Admin","email":"admin@example.com"}'
PS=$(curl -s "$E/playsms/index.php?app=ws&op=get_token&u=admin&p=s3cret" | jq -r .token)
curl -s "$E/playsms/index.php?app=ws&u=admin&h=$PS&op=pv&to=+6281234567&msg=test+only"
curl -s "$E/playsms/index.php?app=ws&u=admin&h=$PS&op=ds&format=xml"
# Seed 002: Attentive subscriptions, an Annex segment, a campaign on an action:
curl -s -X PUT $E/v1/audiences/sources/132109 -H "$H" -d '{"name":"Loyalty sign-up"}'
curl -s $E/attentive/v1/subscriptions -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"user":{"phone":"7707651750","email":"test@gmail.com"},"signUpSourceId":"132109"}'
curl -s $E/annex/api/3.0/segment -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"name":"Only Members","type":"Current Data","fromDate":"2020-01-17","toDate":"2020-02-14","member":"a@example.com","status":"ACTIVE"}'
curl -s -X PUT $E/v1/campaigns/thanks -H "$H" -d '{"name":"Thanks","template":"Thanks {{first_name}}!","trigger":{"type":"event","name":"buy"}}'
curl -s $E/v1/campaigns/thanks -H "$H"                 # targeted, skipped, sent, delivered…
# Prices and credit: with a price list every message is paid from credit.
curl -s -X PUT $E/v1/messaging/prices -H "$H" -d '{"currency":"EUR","prices":[{"channel":"sms","price":0.05}]}'
curl -s $E/v1/messaging/accounts/default/credit -H "$H" -d '{"amount":10}'

# Try the bound rules plugin alone (no effects are applied):
curl -s $E/v1/bindings/rules/invoke -H "$H" \
  -d '{"call":"evaluate","action":{"player":"p1","name":"buy","params":[],"url":null,"time_ms":1700000000000}}'

# Tenants (admin token), also from the CLI — it works while a server runs:
curl -s $E/admin/tenants -H "Authorization: Bearer $(jq -r .admin_token data/credentials.json)" -d '{"name":"acme"}'
engage tenant create acme2

# Your own plugin: make one, build it, upload it, bind it, roll back.
engage plugin new streaks --world rules --lang rust
(cd streaks && engage plugin build)
export ENGAGE_API_KEY=$KEY ENGAGE_API_SECRET=$SECRET
engage plugin upload streaks streaks/build/streaks.wasm
engage plugin bind rules streaks --version 1 --plugin-config '{"action":"buy","points":5,"daily_cap":3}'
curl -s $E/v1/actions -H "$H" -d '{"player":"player1","action":"buy"}'   # 5 points, from your plugin
engage plugin list
