// A tenant's rules in JavaScript: a loyalty tier bonus.
//
// Action `purchase` with parameter `total` (whole currency units) earns
// `total * rate` points; players who already hold `gold_at` points or more
// earn `gold_bonus` percent extra. The balance comes from the host's
// read-only view, so the decision is validated again at commit.
//
// Config: {"rate": 1, "gold_at": 1000, "gold_bonus": 50}
//
// 64-bit integers (`s64`: time_ms, a grant's amount, a balance) map
// differently in the two JavaScript toolchains: componentize-js (jco) uses
// BigInt, componentize-qjs uses Number (exact up to 2^53). This plugin
// computes in BigInt and hands s64 values back in whatever representation
// the engine gave it, so it builds with either.
//
// Build: componentize-qjs --wit ../../wit/since_v0.2.0 --world rules --js app.js --stub-wasi --sync -o js_rules.wasm

import { log, config, balance } from "engage:plugin/host@0.2.0";

const DEFAULTS = { rate: 1, gold_at: 1000, gold_bonus: 50 };

// The binding's config with defaults; throws a plugin-error naming what is wrong.
function parseConfig(text) {
  let cfg;
  try {
    cfg = JSON.parse(text || "{}");
  } catch (e) {
    throw { code: "bad-config", message: `the binding's config is not JSON: ${e}` };
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw { code: "bad-config", message: "the binding's config must be an object" };
  }
  for (const [name, value] of Object.entries(cfg)) {
    if (!(name in DEFAULTS)) {
      throw { code: "bad-config", message: `unknown field \`${name}\`, expected one of ${Object.keys(DEFAULTS).join(", ")}` };
    }
    if (!Number.isInteger(value) || value < 0) {
      throw { code: "bad-config", message: `\`${name}\` must be a whole number of at least 0, got ${JSON.stringify(value)}` };
    }
  }
  return { ...DEFAULTS, ...cfg };
}

// Run by the host when the plugin is bound: a config it refuses is never bound.
export function validateConfig(text) {
  parseConfig(text);
}

export const ruleEngine = {
  evaluate(action) {
    const toS64 = typeof action.timeMs === "bigint" ? (v) => BigInt(v) : (v) => Number(v);
    const cfg = parseConfig(config());
    const rate = BigInt(cfg.rate);
    const goldAt = BigInt(cfg.gold_at);
    const goldBonus = BigInt(cfg.gold_bonus);
    const outcome = { grants: [], badges: [], messages: [], events: [], trace: [] };

    if (action.name !== "purchase") {
      outcome.trace.push({ rule: "tier-bonus", matched: false, reason: `\`${action.name}\` is not a purchase` });
      return outcome;
    }
    const totalParam = action.params.find((p) => p.name === "total");
    if (!totalParam || !/^\d+$/.test(totalParam.value)) {
      throw { code: "bad-parameter", message: "total must be a whole number" };
    }
    let points = BigInt(totalParam.value) * rate;
    const held = BigInt(balance(action.player, "points"));
    const gold = held >= goldAt;
    if (gold) {
      points += (points * goldBonus) / 100n;
      outcome.badges.push("gold");
    }
    // The request's clock arrives as an s64: echo it in an event so a test
    // can see a 64-bit value make the round trip unchanged.
    outcome.events.push({ name: "seen-at", data: JSON.stringify({ time_ms: BigInt(action.timeMs).toString() }) });
    if (points > 0n) {
      outcome.grants.push({ currency: "points", amount: toS64(points), reason: gold ? "gold purchase" : "purchase" });
    }
    log("info", "purchase scored", [["points", points.toString()], ["gold", String(gold)]]);
    outcome.trace.push({ rule: "tier-bonus", matched: points > 0n, reason: `${held} points held, ${points} earned` });
    return outcome;
  },
};
