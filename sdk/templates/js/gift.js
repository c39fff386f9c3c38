// {{name}}: a gift-hooks plugin. A player may make at most
// `requests_per_day` (default 5) gift requests per UTC day, counted in the
// plugin's key-value store; replies are not limited.
//
// Config: {"requests_per_day": 5}; a field it does not know is refused
// when the plugin is bound.

import { config, counter, increment, now, parseConfig } from "./engage-sdk/js/engage.js";

const DAY_MS = 86400000;
const DEFAULTS = { requests_per_day: 5 };

// Run by the host when the plugin is bound: a config it refuses is never bound.
export function validateConfig(text) {
  parseConfig(text, DEFAULTS);
}

export const giftHook = {
  preRequest(request) {
    const cfg = config(DEFAULTS);
    const t = now();
    const day = Math.floor(t / DAY_MS);
    const key = `requests/${request.sender}/${day}`;
    if (counter(key) >= cfg.requests_per_day) {
      return {
        tag: "reject",
        val: { code: -30004, codeStr: "E_GIFT_QUOTA_EXCEEDED", message: `${cfg.requests_per_day} gift requests a day at most` },
      };
    }
    increment(key, 1, (day + 1) * DAY_MS - t);
    return { tag: "allow" };
  },
  postRequest(_request) {},
  preReply(_reply) {
    return { tag: "allow" };
  },
  postReply(_reply) {},
};
