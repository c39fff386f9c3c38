// {{name}}: a routing plugin. Every message goes to `provider` (default
// `console`) on the channel it asked for; with `sms_fallback`, a Viber
// message is tried by SMS on the same provider if Viber fails.
//
// Config: {"provider": "console", "sms_fallback": false}; a field it does
// not know is refused when the plugin is bound.

import { config, parseConfig } from "./engage-sdk/js/engage.js";

const DEFAULTS = { provider: "console", sms_fallback: false };

// Run by the host when the plugin is bound: a config it refuses is never bound.
export function validateConfig(text) {
  parseConfig(text, DEFAULTS);
}

export const router = {
  route(message) {
    const cfg = config(DEFAULTS);
    const attempts = [{ channel: message.channel, provider: cfg.provider }];
    if (cfg.sms_fallback && message.channel === "viber") {
      attempts.push({ channel: "sms", provider: cfg.provider });
    }
    return attempts;
  },
};
