"""A tenant's rules in Python: points for a purchase, doubled at weekends.

Action `buy` with parameter `amount` (whole units) earns `points_per_unit`
points per unit, twice that on Saturday and Sunday (UTC), and at most
`daily_cap` awards per player per day, counted in the plugin's key-value
store. Any other action earns nothing and says why in the trace.

Config: {"points_per_unit": 1, "daily_cap": 3}

Build: componentize-py -d ../../wit/since_v0.2.0 -w rules componentize app --stub-wasi -o python_rules.wasm
"""

import json

from componentize_py_types import Err
import wit_world
from wit_world import exports
from wit_world.exports.rule_engine import Action, Grant, Outcome, TraceEntry
from wit_world.imports import host
from wit_world.imports.types import PluginError

DAY_MS = 86_400_000


def param(action: Action, name: str):
    for p in action.params:
        if p.name == name:
            return p.value
    return None


CONFIG_FIELDS = {"points_per_unit": 1, "daily_cap": 3}


def parse_config(text: str) -> dict:
    """The binding's config with defaults; Err naming what is wrong."""
    try:
        config = json.loads(text or "{}")
    except ValueError as e:
        raise Err(PluginError("bad-config", f"the binding's config is not JSON: {e}"))
    if not isinstance(config, dict):
        raise Err(PluginError("bad-config", "the binding's config must be an object"))
    for name, value in config.items():
        if name not in CONFIG_FIELDS:
            raise Err(PluginError("bad-config", f"unknown field `{name}`, expected one of {', '.join(CONFIG_FIELDS)}"))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise Err(PluginError("bad-config", f"`{name}` must be a whole number of at least 0, got {value!r}"))
    return {**CONFIG_FIELDS, **config}


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        parse_config(config)


class RuleEngine(exports.RuleEngine):
    def evaluate(self, action: Action) -> Outcome:
        config = parse_config(host.config())
        per_unit = config["points_per_unit"]
        daily_cap = config["daily_cap"]
        outcome = Outcome(grants=[], badges=[], messages=[], events=[], trace=[])

        if action.name != "buy":
            outcome.trace.append(TraceEntry("weekend-double", False, f"`{action.name}` is not a purchase"))
            return outcome
        raw = param(action, "amount") or "0"
        try:
            units = int(raw)
        except ValueError:
            raise Err(PluginError("bad-parameter", f"amount must be a whole number, got {raw!r}"))

        day = action.time_ms // DAY_MS
        key = f"awards/{action.player}/{day}"
        used = int.from_bytes(host.kv_get(key) or b"\0" * 8, "little", signed=True)
        if used >= daily_cap:
            outcome.trace.append(TraceEntry("weekend-double", False, f"capped: {used} of {daily_cap} today"))
            return outcome
        host.kv_increment(key, 1, DAY_MS - action.time_ms % DAY_MS)

        # 1970-01-01 was a Thursday: weekday 0 = Monday.
        weekday = (day + 3) % 7
        factor = 2 if weekday >= 5 else 1
        points = units * per_unit * factor
        if points <= 0:
            outcome.trace.append(TraceEntry("weekend-double", False, "nothing to award"))
            return outcome
        host.log(host.Level.INFO, "awarding points", [("points", str(points)), ("weekend", str(factor == 2))])
        outcome.grants.append(Grant("points", points, "weekend-double" if factor == 2 else "purchase"))
        outcome.trace.append(TraceEntry("weekend-double", True, f"{units} units x {per_unit} x {factor}"))
        return outcome


# componentize-py snapshots the interpreter after importing this module, so
# work done here is paid once at build time, not on every fresh instance:
# exercise the code paths a call takes (JSON, the generated dataclasses).
parse_config('{"points_per_unit": 1}')
Outcome(grants=[Grant("points", 1, "warm-up")], badges=[], messages=[], events=[], trace=[TraceEntry("warm-up", True, f"{1} x {2}")])
int.from_bytes(b"\0" * 8, "little", signed=True)
