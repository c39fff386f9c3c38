// {{name}}: a rules plugin. An action called `action` (default `buy`)
// earns `points` (default 10), at most `daily_cap` (default 3) times per
// player per UTC day, counted in the plugin's key-value store.
//
// Config: {"action": "buy", "points": 10, "daily_cap": 3}; a field it
// does not know is refused when the plugin is bound.

import { config, counter, increment, info, parseConfig, toS64 } from "./engage-sdk/js/engage.js";

const DAY_MS = 86400000;
const DEFAULTS = { action: "buy", points: 10, daily_cap: 3 };

// Run by the host when the plugin is bound: a config it refuses is never bound.
export function validateConfig(text) {
  parseConfig(text, DEFAULTS);
}

export const ruleEngine = {
  evaluate(action) {
    const cfg = config(DEFAULTS);
    const outcome = { grants: [], badges: [], messages: [], events: [], trace: [] };
    if (action.name !== cfg.action) {
      outcome.trace.push({ rule: "points", matched: false, reason: `\`${action.name}\` is not \`${cfg.action}\`` });
      return outcome;
    }
    const now = Number(action.timeMs);
    const day = Math.floor(now / DAY_MS);
    const key = `awards/${action.player}/${day}`;
    const used = counter(key);
    if (used >= cfg.daily_cap) {
      outcome.trace.push({ rule: "points", matched: false, reason: `capped: ${used} of ${cfg.daily_cap} today` });
      return outcome;
    }
    const n = increment(key, 1, (day + 1) * DAY_MS - now);
    info(`${action.player} earns ${cfg.points} points`);
    outcome.grants.push({ currency: "points", amount: toS64(cfg.points), reason: "points" });
    outcome.trace.push({ rule: "points", matched: true, reason: `${cfg.points} points (${n} of ${cfg.daily_cap} today)` });
    return outcome;
  },
};
