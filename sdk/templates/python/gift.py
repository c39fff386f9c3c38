"""{{name}}: a gift-hooks plugin. A player may make at most
`requests_per_day` (default 5) gift requests per UTC day, counted in the
plugin's key-value store; replies are not limited.

Config: {"requests_per_day": 5}; a field it does not know is refused when
the plugin is bound.
"""

import engage_sdk as sdk
import wit_world
from wit_world import exports
from wit_world.exports.gift_hook import GiftReply, GiftRequest, Rejection, Verdict, Verdict_Allow, Verdict_Reject

DAY_MS = 86_400_000
DEFAULTS = {"requests_per_day": 5}


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        sdk.parse_config(config, DEFAULTS)


class GiftHook(exports.GiftHook):
    def pre_request(self, request: GiftRequest) -> Verdict:
        config = sdk.config(DEFAULTS)
        now = sdk.now_ms()
        day = now // DAY_MS
        key = f"requests/{request.sender}/{day}"
        if sdk.counter(key) >= config["requests_per_day"]:
            return Verdict_Reject(
                Rejection(-30004, "E_GIFT_QUOTA_EXCEEDED", f"{config['requests_per_day']} gift requests a day at most")
            )
        sdk.increment(key, 1, (day + 1) * DAY_MS - now)
        return Verdict_Allow()

    def post_request(self, request: GiftRequest) -> None:
        return None

    def pre_reply(self, reply: GiftReply) -> Verdict:
        return Verdict_Allow()

    def post_reply(self, reply: GiftReply) -> None:
        return None


# componentize-py snapshots the interpreter after importing this module:
# work done here is paid once at build time, not on every call.
sdk.parse_config("{}", DEFAULTS)
