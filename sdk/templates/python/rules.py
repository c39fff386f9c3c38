"""{{name}}: a rules plugin. An action called `action` (default `buy`)
earns `points` (default 10), at most `daily_cap` (default 3) times per
player per UTC day, counted in the plugin's key-value store.

Config: {"action": "buy", "points": 10, "daily_cap": 3}; a field it does
not know is refused when the plugin is bound.
"""

import engage_sdk as sdk
import wit_world
from wit_world import exports
from wit_world.exports.rule_engine import Action, Grant, Outcome, TraceEntry

DAY_MS = 86_400_000
DEFAULTS = {"action": "buy", "points": 10, "daily_cap": 3}


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        sdk.parse_config(config, DEFAULTS)


class RuleEngine(exports.RuleEngine):
    def evaluate(self, action: Action) -> Outcome:
        config = sdk.config(DEFAULTS)
        outcome = Outcome(grants=[], badges=[], messages=[], events=[], trace=[])
        if action.name != config["action"]:
            outcome.trace.append(TraceEntry("points", False, f"`{action.name}` is not `{config['action']}`"))
            return outcome
        day = action.time_ms // DAY_MS
        key = f"awards/{action.player}/{day}"
        used = sdk.counter(key)
        if used >= config["daily_cap"]:
            outcome.trace.append(TraceEntry("points", False, f"capped: {used} of {config['daily_cap']} today"))
            return outcome
        n = sdk.increment(key, 1, (day + 1) * DAY_MS - action.time_ms)
        sdk.info(f"{action.player} earns {config['points']} points")
        outcome.grants.append(Grant("points", config["points"], "points"))
        outcome.trace.append(TraceEntry("points", True, f"{config['points']} points ({n} of {config['daily_cap']} today)"))
        return outcome


# componentize-py snapshots the interpreter after importing this module:
# work done here is paid once at build time, not on every call.
sdk.parse_config("{}", DEFAULTS)
