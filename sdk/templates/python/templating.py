"""{{name}}: a templating plugin. `{{var}}` in a template is replaced by
the variable's value; an unknown variable is an error naming it (or, with
"missing": "keep", left as written).

Config: {"missing": "error"} (or "keep"); a field it does not know is
refused when the plugin is bound.
"""

import json
from typing import List

import engage_sdk as sdk
import wit_world
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Param

DEFAULTS = {"missing": "error"}


def parse(text: str) -> dict:
    config = sdk.parse_config(text, DEFAULTS)
    if config["missing"] not in ("error", "keep"):
        raise sdk.fail("bad-config", f"`missing` is \"error\" or \"keep\", not {json.dumps(config['missing'])}")
    return config


class WitWorld(wit_world.WitWorld):
    def validate_config(self, config: str) -> None:
        parse(config)


class Template(exports.Template):
    def render(self, template: str, vars: List[Param]) -> str:
        config = parse(host.config())
        out, rest = [], template
        while (start := rest.find("{{")) >= 0:
            out.append(rest[:start])
            end = rest.find("}}", start + 2)
            if end < 0:
                out.append(rest[start:])
                return "".join(out)
            name = rest[start + 2 : end].strip()
            value = sdk.param(vars, name)
            if value is not None:
                out.append(value)
            elif config["missing"] == "keep":
                out.append(rest[start : end + 2])
            else:
                raise sdk.fail("missing-variable", f"the template uses `{name}`, which the message does not give")
            rest = rest[end + 2 :]
        out.append(rest)
        return "".join(out)


# componentize-py snapshots the interpreter after importing this module:
# work done here is paid once at build time, not on every call.
parse("{}")
