// {{name}}: a templating plugin. `{{var}}` in a template is replaced by
// the variable's value; an unknown variable is an error naming it (or,
// with "missing": "keep", left as written).
//
// Config: {"missing": "error"} (or "keep"); a field it does not know is
// refused when the plugin is bound.

import { configText, fail, param, parseConfig } from "./engage-sdk/js/engage.js";

const DEFAULTS = { missing: "error" };

function parse(text) {
  const cfg = parseConfig(text, DEFAULTS);
  if (cfg.missing !== "error" && cfg.missing !== "keep") {
    throw fail("bad-config", `\`missing\` is "error" or "keep", not ${JSON.stringify(cfg.missing)}`);
  }
  return cfg;
}

// Run by the host when the plugin is bound: a config it refuses is never bound.
export function validateConfig(text) {
  parse(text);
}

export const template = {
  render(text, vars) {
    const cfg = parse(configText());
    let out = "";
    let rest = text;
    for (let start = rest.indexOf("{{"); start >= 0; start = rest.indexOf("{{")) {
      out += rest.slice(0, start);
      const end = rest.indexOf("}}", start + 2);
      if (end < 0) return out + rest.slice(start);
      const name = rest.slice(start + 2, end).trim();
      const value = param(vars, name);
      if (value !== undefined) {
        out += value;
      } else if (cfg.missing === "keep") {
        out += rest.slice(start, end + 2);
      } else {
        throw fail("missing-variable", `the template uses \`${name}\`, which the message does not give`);
      }
      rest = rest.slice(end + 2);
    }
    return out + rest;
  },
};
