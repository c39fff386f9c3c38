"""{{name}}: a routing plugin. Every message goes to `provider` (default
`console`) on the channel it asked for; with `sms_fallback`, a Viber
message is tried by SMS on the same provider if Viber fails.

Config: {"provider": "console", "sms_fallback": false}; a field it does
not know is refused when the plugin is bound.
"""

from typing import List

import engage_sdk as sdk
import wit_world
from wit_world import exports
from wit_world.exports.router import Attempt, Outgoing

DEFAULTS = {"provider": "console", "sms_fallback": False}


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        sdk.parse_config(config, DEFAULTS)


class Router(exports.Router):
    def route(self, message: Outgoing) -> List[Attempt]:
        config = sdk.config(DEFAULTS)
        attempts = [Attempt(message.channel, config["provider"], None, None)]
        if config["sms_fallback"] and message.channel == "viber":
            attempts.append(Attempt("sms", config["provider"], None, None))
        return attempts


# componentize-py snapshots the interpreter after importing this module:
# work done here is paid once at build time, not on every call.
sdk.parse_config("{}", DEFAULTS)
