// Helpers for Engage plugins in JavaScript (componentize-qjs or
// componentize-js). The host's functions are imported from
// "engage:plugin/host@0.2.0"; the exports a plugin defines are named after
// the world's interfaces (`ruleEngine`, `giftHook`, `template`, `router`)
// plus `validateConfig`.
//
// 64-bit integers (WIT s64: time_ms, a grant's amount, a balance, a
// counter) are BigInt in componentize-js (jco) and Number in
// componentize-qjs (exact up to 2^53). `toS64` hands a value back in the
// representation the engine uses, so a plugin builds with either.

import {
  actionCount as hostActionCount,
  balance as hostBalance,
  config as hostConfig,
  kvDelete,
  kvGet,
  kvIncrement,
  kvSet,
  log,
  nowMs,
} from "engage:plugin/host@0.2.0";

// Asked on first use: host functions cannot be called while the module
// is being initialised (at build time).
let big;

/** A number or BigInt in the engine's representation of s64/u64. */
export function toS64(v) {
  if (big === undefined) big = typeof nowMs() === "bigint";
  return big ? BigInt(v) : Number(v);
}

/** The request's clock as a Number, ms since the epoch (fixed for the
 * whole call: the only clock a plugin may use). */
export function now() {
  return Number(nowMs());
}

/** The error a plugin throws to return a plugin-error. */
export function fail(code, message) {
  return { code, message };
}

/** The config `text` over `defaults`; throws a bad-config plugin error
 * naming an unknown field or a value of the wrong type. */
export function parseConfig(text, defaults) {
  let cfg;
  try {
    cfg = JSON.parse(text || "{}");
  } catch (e) {
    throw fail("bad-config", `the binding's config is not JSON: ${e}`);
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw fail("bad-config", "the binding's config must be a JSON object");
  }
  for (const [name, value] of Object.entries(cfg)) {
    if (!(name in defaults)) {
      const known = Object.keys(defaults).map((k) => `\`${k}\``).join(", ");
      throw fail("bad-config", `unknown field \`${name}\`, expected one of ${known}`);
    }
    const want = defaults[name];
    if (typeof want === "number" && !Number.isInteger(value)) {
      throw fail("bad-config", `\`${name}\` must be a whole number, got ${JSON.stringify(value)}`);
    }
    if (typeof want !== "number" && typeof value !== typeof want) {
      throw fail("bad-config", `\`${name}\` must be a ${typeof want}, got ${JSON.stringify(value)}`);
    }
  }
  return { ...defaults, ...cfg };
}

/** The current call's config over `defaults`. */
export function config(defaults) {
  return parseConfig(hostConfig(), defaults);
}

/** The current call's config text, as bound. */
export function configText() {
  return hostConfig();
}

/** The 64-bit counter at `key` as a Number (0 when absent or expired). */
export function counter(key) {
  const raw = kvGet(key);
  if (raw === undefined || raw === null || raw.length !== 8) return 0;
  return Number(new DataView(Uint8Array.from(raw).buffer).getBigInt64(0, true));
}

/** Add `delta` to the counter at `key`; the new value as a Number. */
export function increment(key, delta = 1, ttlMs = undefined) {
  return Number(kvIncrement(key, toS64(delta), ttlMs === undefined ? undefined : toS64(ttlMs)));
}

/** The JSON value at `key`, or undefined. */
export function getJson(key) {
  const raw = kvGet(key);
  if (raw === undefined || raw === null) return undefined;
  return JSON.parse(utf8Decode(Uint8Array.from(raw)));
}

/** Store `value` as JSON at `key`, expiring after `ttlMs` when given. */
export function setJson(key, value, ttlMs = undefined) {
  kvSet(key, utf8Encode(JSON.stringify(value)), ttlMs === undefined ? undefined : toS64(ttlMs));
}

// UTF-8 without TextEncoder, which QuickJS does not have.
function utf8Encode(text) {
  const binary = unescape(encodeURIComponent(text));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function utf8Decode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return decodeURIComponent(escape(binary));
}

/** Remove `key` from the plugin's key-value store. */
export function remove(key) {
  kvDelete(key);
}

/** The player's balance in `currency` as a Number (a view of the ledger). */
export function balance(player, currency = "points") {
  return Number(hostBalance(player, currency));
}

/** How often the player did `action` at or after `sinceMs`, as a Number. */
export function actionCount(player, action, sinceMs) {
  return Number(hostActionCount(player, action, toS64(sinceMs)));
}

/** The value of the first parameter called `name`, or undefined. */
export function param(params, name) {
  const p = params.find((p) => p.name === name);
  return p === undefined ? undefined : p.value;
}

export function info(message, fields = {}) {
  log("info", message, Object.entries(fields).map(([k, v]) => [k, String(v)]));
}
