// The tenant console, end to end: Debian's Chromium driven by
// playwright-core against a running `engage serve` (started by
// scripts/console-test), the way an operator uses it, with the API beside
// it doing what an app would. Every page is screenshotted at 1280 and
// 390 px into $SHOTS.
//
// Env: ENGAGE_URL, ADMIN_TOKEN, DEMO_KEY, DEMO_SECRET, PLUGIN_WASM, SHOTS.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.ENGAGE_URL;
const SHOTS = process.env.SHOTS;
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run scripts/console-test)`);
  return v;
};

let browser;
let demoToken;
const second = {}; // the tenant the admin creates

async function api(method, p, body, token = demoToken, headers = {}) {
  const res = await fetch(BASE + p, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  return { status: res.status, json };
}

async function balance(player, currency = "points") {
  const r = await api("GET", `/v1/players/${player}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.balances[currency] ?? 0;
}

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  // Playwright gives Chromium a fresh profile in a temp dir of its own
  // (its --user-data-dir) at every launch, and removes it at close.
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const t = await fetch(`${BASE}/v1/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ api_key: env("DEMO_KEY"), api_secret: env("DEMO_SECRET") }),
  });
  demoToken = (await t.json()).token;
  assert.ok(demoToken, "the demo tenant's token");
});

after(async () => {
  await browser?.close();
});

/** A new browser context (its own cookies) at `width`. */
async function context(width = 1280) {
  return browser.newContext({ viewport: { width, height: 900 } });
}

/** Sign in with the keyboard only: Tab to each field, type, Enter. */
async function signIn(page, key, secret) {
  if (!page.url().includes("/console/sign-in")) await page.goto(`${BASE}/console/sign-in`);
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(() => document.activeElement?.id === "api_key")) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement?.id), "api_key", "Tab reaches the API key field");
  await page.keyboard.type(key);
  await page.keyboard.press("Tab");
  await page.keyboard.type(secret);
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
}

async function signInAdmin(page) {
  await page.goto(`${BASE}/console/sign-in`);
  await page.click("summary");
  await page.fill("#admin_token", env("ADMIN_TOKEN"));
  await page.click("button[type=submit]");
  await page.waitForURL(/\/console\/tenants/);
}

/** Every visible form control has a label, and the page has one h1. */
async function checkLabels(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea")]
      .filter((e) => e.type !== "hidden" && e.offsetParent !== null)
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
      .map((e) => e.name || e.id));
  assert.deepEqual(unlabelled, [], `controls without a label on ${page.url()}`);
  assert.equal(await page.locator("h1").count(), 1, `one h1 on ${page.url()}`);
}

/** Screenshots of `url` at 1280 and 390 px, with a session's cookies. */
async function shoot(ctxCookies, url, name) {
  for (const width of [1280, 390]) {
    const ctx = await context(width);
    await ctx.addCookies(ctxCookies);
    const page = await ctx.newPage();
    const res = await page.goto(BASE + url);
    assert.equal(res.status(), 200, `${url} at ${width}px`);
    await checkLabels(page);
    await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: true });
    // Nothing wider than the window at 390 px but what scrolls on its own.
    if (width === 390) {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${url} is ${overflow}px wider than a 390px window`);
    }
    await ctx.close();
  }
}

test("sign in and out; a wrong secret is refused in place; signing out revokes the session", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(`${BASE}/console/players`);
  assert.match(page.url(), /\/console\/sign-in\?next=%2Fconsole%2Fplayers/, "a page needs a session");
  await page.screenshot({ path: path.join(SHOTS, "sign-in-1280.png"), fullPage: true });
  await checkLabels(page);

  await signIn(page, env("DEMO_KEY"), "not-the-secret");
  assert.match(await page.locator(".error").innerText(), /do not match any tenant/);
  assert.match(page.url(), /\/console\/sign-in/);

  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  assert.match(page.url(), /\/console\/players$/, `back to the page that asked; the page says: ${await page.locator("main").innerText()}`);
  assert.equal(await page.getByTestId("tenant").innerText(), "demo");
  const [cookie] = (await ctx.cookies()).filter((c) => c.name === "engage_session");
  assert.ok(cookie.httpOnly, "HttpOnly");
  assert.equal(cookie.sameSite, "Strict");
  const token = cookie.value.split(".").pop();
  assert.equal((await api("GET", "/v1/players", undefined, token)).status, 200, "the session's token works");

  await page.click("text=Sign out");
  await page.waitForURL(/signed_out=1/);
  assert.match(await page.locator(".notice").innerText(), /signed out/);
  assert.equal((await api("GET", "/v1/players", undefined, token)).status, 401, "and is revoked");
  await page.goto(`${BASE}/console/overview`);
  assert.match(page.url(), /\/console\/sign-in/, "no session after signing out");
  await ctx.close();
});

test("the admin creates a tenant and is shown its secret once", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signInAdmin(page);
  await page.fill("#name", "Bad Name");
  await page.click("form[action='/console/tenants'] button");
  assert.match(await page.locator(".error").innerText(), /tenant name/i);
  await page.fill("#name", "shop-two");
  await page.click("form[action='/console/tenants'] button");
  second.key = await page.getByTestId("created-key").innerText();
  second.secret = await page.getByTestId("created-secret").innerText();
  assert.match(second.key, /^ek_/);
  assert.ok(await page.locator("td", { hasText: "shop-two" }).count() >= 1);
  // A tenant page is not the admin's: it is sent to its own.
  await page.goto(`${BASE}/console/players`);
  assert.match(page.url(), /\/console\/tenants$/);
  await shoot(await ctx.cookies(), "/console/tenants", "tenants");
  await ctx.close();
});

test("goods: create a group, upload a codes file and see the stock rise; a redemption through the API lowers it", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await page.goto(`${BASE}/console/goods`);
  await page.fill("#id", "voucher");
  await page.fill("#name", "Ten-point voucher");
  await page.fill("#price", "ten");
  await page.click("form[action='/console/goods'] button");
  assert.match(await page.locator(".error").innerText(), /Price must be a whole number/, "checked in place");
  assert.equal(await page.inputValue("#name"), "Ten-point voucher", "what was typed is kept");
  await page.fill("#price", "10");
  await page.fill("#low_stock_threshold", "3");
  await page.click("form[action='/console/goods'] button");
  await page.waitForURL(/\/console\/goods\/voucher\?done=created/);
  assert.equal(await page.getByTestId("stock").innerText(), "0");

  const file = path.join(os.tmpdir(), `codes-${process.pid}.csv`);
  fs.writeFileSync(file, "code\nV-001\nV-002\nV-002\n\nV-003\nV-004\nV-005\n");
  await page.setInputFiles("#codes-file", file);
  await page.click("form[data-upload] button");
  const result = page.getByTestId("codes-result");
  await result.waitFor();
  const text = await result.innerText();
  assert.match(text, /5 added, 1 duplicate, 0 rejected/, text);
  assert.match(text, /duplicate code `V-002`/, "the refused line is listed");
  assert.equal(await page.getByTestId("stock").innerText(), "5", "the stock shown rises");
  assert.ok(await page.locator(".warn-text").isHidden(), "above its threshold again");
  assert.equal(await page.locator("progress").evaluate((p) => p.value), 100);
  await page.screenshot({ path: path.join(SHOTS, "goods-upload-1280.png"), fullPage: true });

  // An app redeems through the API; the console shows the stock fall.
  assert.equal((await api("POST", "/v1/players", { id: "buyer", phone: "+6681110000" })).status, 201);
  assert.equal((await api("POST", "/v1/ledger/credit", { player: "buyer", amount: 50, reason: "welcome" })).status, 201);
  const r = await api("POST", "/v1/goods/voucher/redeem", { player: "buyer", amount: 3 });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await page.reload();
  assert.equal(await page.getByTestId("stock").innerText(), "2");
  assert.match(await page.locator(".warn-text").innerText(), /low/);
  await page.goto(`${BASE}/console/goods`);
  assert.match(await page.getByTestId("stock-voucher").innerText(), /2\s+low/);
  const cookies = await ctx.cookies();
  await shoot(cookies, "/console/goods", "goods");
  await shoot(cookies, "/console/goods/voucher", "goods-group");
  await shoot(cookies, "/console/overview", "overview");
  await ctx.close();
});

test("players: search, profile, and a reversal behind a confirmation", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await api("POST", "/v1/players", { id: "ann", first_name: "Ann", last_name: "Lee", email: "ann@example.com" });
  await page.goto(`${BASE}/console/players`);
  await page.fill("#q", "111000"); // digits of buyer's phone
  await page.press("#q", "Enter");
  await page.waitForURL(/q=111000/);
  assert.deepEqual(await page.locator("tbody td:first-child").allInnerTexts(), ["buyer"]);
  await page.fill("#q", "ANN@");
  await page.press("#q", "Enter");
  await page.waitForURL(/q=ANN/);
  assert.deepEqual(await page.locator("tbody td:first-child").allInnerTexts(), ["ann"]);
  await page.click("text=ann");
  assert.equal(await page.getByTestId("player-id").innerText(), "ann");

  await page.goto(`${BASE}/console/players/buyer`);
  assert.equal(await page.getByTestId("balance-points").innerText(), "20"); // 50 - 3 × 10
  // Reverse the welcome credit: a confirmation page first.
  const row = page.locator("tr", { hasText: "welcome" });
  await row.getByText("Reverse…").click();
  assert.match(await page.locator("h1").innerText(), /Reverse entry/);
  await page.click("text=Reverse the entry");
  // 20 points cannot lose 50: the API refuses, the page says why.
  assert.match(await page.locator(".error").innerText(), /balance|insufficient|below/i);
  assert.equal(await balance("buyer"), 20, "nothing changed");
  await api("POST", "/v1/ledger/credit", { player: "buyer", amount: 40, reason: "top-up" });
  await page.goto(`${BASE}/console/players/buyer`);
  await page.locator("tr", { hasText: "top-up" }).getByText("Reverse…").click();
  await page.fill("#reason", "entered twice");
  await page.click("text=Reverse the entry");
  await page.waitForURL(/done=reversed/);
  assert.equal(await page.getByTestId("balance-points").innerText(), "20");
  assert.equal(await balance("buyer"), 20);
  const cookies = await ctx.cookies();
  await shoot(cookies, "/console/players", "players");
  await shoot(cookies, "/console/players/buyer", "player");
  await ctx.close();
});

test("rules: edit the table, dry-run it, save it, and an API action awards the new amount", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await page.goto(`${BASE}/console/rules`);
  assert.equal(await page.inputValue("#r0-name"), "buy-100-points");
  await page.fill("#r0-amount", "250");
  await page.fill("#try_player", "buyer");
  await page.fill("#try_action", "buy");
  await page.click("button[value=try]");
  const trace = page.getByTestId("trace");
  await trace.waitFor();
  assert.match(await trace.locator("tbody tr").first().innerText(), /buy-100-points\s+yes/);
  assert.match(await page.getByTestId("grant").first().innerText(), /250 points/);
  assert.equal(await page.inputValue("#r0-amount"), "250", "the edit is still in the form");
  await page.screenshot({ path: path.join(SHOTS, "rules-dry-run-1280.png"), fullPage: true });
  const before = await balance("buyer");
  assert.equal((await api("POST", "/v1/actions", { player: "buyer", action: "buy" })).status, 200);
  assert.equal(await balance("buyer"), before + 100, "a dry run saves nothing");

  // A config the plugin refuses is shown in place and not bound.
  await page.fill("#r0-cap", "2");
  await page.selectOption("#r0-per", "");
  await page.click("button[value=save]");
  assert.match(await page.locator(".error").innerText(), /per day, week or month/);
  await page.selectOption("#r0-per", "day");
  await page.fill("#r0-cap", "");
  await page.click("button[value=save]");
  await page.waitForURL(/done=saved/);
  assert.equal(await page.inputValue("#r0-amount"), "250");
  assert.equal((await api("POST", "/v1/actions", { player: "buyer", action: "buy" })).status, 200);
  assert.equal(await balance("buyer"), before + 100 + 250, "the saved table awards 250");
  await shoot(await ctx.cookies(), "/console/rules", "rules");
  await ctx.close();
});

test("plugins: upload a component twice, bind v2, roll back to v1, unbind", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  for (const expected of [1, 2]) {
    await page.goto(`${BASE}/console/plugins`);
    await page.fill("#plugin-name", "streaks");
    await page.setInputFiles("#plugin-file", env("PLUGIN_WASM"));
    await page.click("form[data-upload] button");
    const result = page.getByTestId("upload-result");
    await result.waitFor();
    assert.match(await result.innerText(), new RegExp(`streaks v${expected}`));
  }
  await page.fill("#bind-config", '{"points": 7}');
  await page.click("text=Bind v2 to rules");
  await page.waitForURL(/done=/);
  assert.match(await page.locator(".notice").innerText(), /`rules` runs streaks v2/);
  assert.equal(await page.getByTestId("binding-rules").getByTestId("bound-version").innerText(), "v2");
  const before = await balance("buyer");
  await api("POST", "/v1/actions", { player: "buyer", action: "login" });
  assert.equal(await balance("buyer"), before + 7, "the bound plugin decides");

  await page.getByTestId("binding-rules").getByText("Roll back").click();
  await page.waitForURL(/done=/);
  assert.match(await page.locator(".notice").innerText(), /rolled back to streaks v1/);
  assert.equal(await page.getByTestId("binding-rules").getByTestId("bound-version").innerText(), "v1");
  const binding = await api("GET", "/v1/bindings/rules");
  assert.deepEqual([binding.json.plugin, binding.json.version, binding.json.config], ["streaks", 1, { points: 7 }]);
  const cookies = await ctx.cookies();
  await shoot(cookies, "/console/plugins", "plugins");
  await shoot(cookies, "/console/plugins/streaks", "plugin");
  await page.getByTestId("binding-rules").getByText("Unbind").click();
  await page.waitForURL(/done=/);
  assert.match(await page.getByTestId("binding-rules").innerText(), /rules-table/);
  await ctx.close();
});

test("campaigns: send now and watch the funnel; pause and resume", async () => {
  await api("POST", "/v1/players", { id: "cara", first_name: "Cara", phone: "+6681110001" });
  const put = await api("PUT", "/v1/campaigns/hello", {
    name: "Hello", template: "Hi {{first_name}}!", kind: "transactional", trigger: { type: "manual" },
  });
  assert.equal(put.status, 200, JSON.stringify(put.json));
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await page.goto(`${BASE}/console/campaigns`);
  await page.click("text=Hello");
  assert.equal(await page.getByTestId("preview").innerText(), "Hi Ann!");
  await page.click("text=Send now to the whole audience");
  await page.waitForURL(/done=/);
  let delivered = 0;
  for (let i = 0; i < 50 && delivered === 0; i++) {
    await page.reload();
    delivered = Number(await page.getByTestId("funnel-delivered").innerText());
    if (delivered === 0) await new Promise((r) => setTimeout(r, 200));
  }
  const targeted = Number(await page.getByTestId("funnel-targeted").innerText());
  assert.ok(targeted >= 2, `targeted ${targeted}: buyer and cara have phones`);
  assert.ok(delivered >= 1, "the funnel shows deliveries");
  const stats = (await api("GET", "/v1/campaigns/hello")).json.stats;
  assert.equal(targeted, stats.targeted, "the chart is the API's numbers");
  assert.equal(await page.locator("[data-testid=funnel] svg rect").count() >= 5, true);
  await page.screenshot({ path: path.join(SHOTS, "campaign-funnel-1280.png"), fullPage: true });
  await page.click("text=Pause");
  await page.waitForURL(/done=/);
  assert.equal(await page.getByTestId("campaign-status").innerText(), "paused");
  assert.equal((await api("GET", "/v1/campaigns/hello")).json.status, "paused");
  await page.click("text=Resume");
  await page.waitForURL(/done=/);
  assert.equal(await page.getByTestId("campaign-status").innerText(), "active");
  const cookies = await ctx.cookies();
  await shoot(cookies, "/console/campaigns", "campaigns");
  await shoot(cookies, "/console/campaigns/hello", "campaign");
  await ctx.close();
});

test("messaging, audiences and the SMS gateway pages show the API's data", async () => {
  await api("POST", "/v1/gateway/accounts", { username: "ops", password: "s3cret-pass", level: "admin", name: "Ops", email: "ops@example.com" });
  await api("POST", "/v1/gateway/incoming", { from: "+6281234567", to: "1234", text: "hello there" });
  await api("PUT", "/v1/audiences/sources/555", { name: "Web sign-up" });
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await page.goto(`${BASE}/console/messaging`);
  await page.fill("#to", "+6681110002");
  await page.fill("#body", "Console test ✓");
  await page.click("form[action='/console/messaging/test'] button");
  await page.waitForURL(/\/console\/messages\//);
  let status = "";
  for (let i = 0; i < 50 && status !== "delivered"; i++) {
    await page.reload();
    status = await page.getByTestId("message-status").innerText();
    if (status !== "delivered") await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(status, "delivered");
  assert.match(await page.locator("body").innerText(), /Console test ✓/);
  const messageUrl = new URL(page.url()).pathname;
  await page.goto(`${BASE}/console/gateway`);
  assert.match(await page.locator("body").innerText(), /hello there/);
  const tokenCell = await page.locator("tr", { hasText: "ops" }).locator("code").innerText();
  assert.match(tokenCell, /^.{4}….{4}$/, "the webservices token is masked");
  await page.goto(`${BASE}/console/audiences?lookup=${encodeURIComponent("+6681110001")}`);
  assert.ok(await page.getByTestId("subscriptions").count());
  const cookies = await ctx.cookies();
  await shoot(cookies, "/console/messaging", "messaging");
  await shoot(cookies, messageUrl, "message");
  await shoot(cookies, "/console/audiences", "audiences");
  await shoot(cookies, "/console/gateway", "gateway");
  await shoot(cookies, "/console/gateway/accounts/ops", "gateway-account");
  // The overview once the tests above have given it something to show.
  await shoot(cookies, "/console/overview?window=hour", "overview-hour");
  await ctx.close();
});

test("a second tenant's session cannot open the first tenant's pages by URL", async () => {
  assert.ok(second.key, "the admin test created the second tenant");
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, second.key, second.secret);
  assert.equal(await page.getByTestId("tenant").innerText(), "shop-two");
  for (const url of ["/console/players/buyer", "/console/goods/voucher", "/console/campaigns/hello"]) {
    const res = await page.goto(BASE + url);
    assert.equal(res.status(), 404, url);
    const body = await page.locator("body").innerText();
    assert.doesNotMatch(body, /6681110000|Ten-point voucher|Hi \{\{first_name\}\}/, `${url} shows nothing of demo's`);
  }
  await page.goto(`${BASE}/console/players?q=buyer`);
  assert.equal(await page.locator("tbody a").count(), 0, "a search finds only the tenant's own");
  // A forged cookie naming the other tenant changes nothing: the token decides.
  const [c] = (await ctx.cookies()).filter((c) => c.name === "engage_session");
  await ctx.addCookies([{ ...c, value: c.value.replace("t.shop-two.", "t.demo.") }]);
  const res = await page.goto(`${BASE}/console/players/buyer`);
  assert.equal(res.status(), 404);
  await ctx.close();
});

test("a form posted without its CSRF token, with another's, or from another origin is refused", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await signIn(page, env("DEMO_KEY"), env("DEMO_SECRET"));
  await page.goto(`${BASE}/console/goods`);
  const csrf = await page.inputValue("form[action='/console/goods'] input[name=csrf]");
  const form = { id: "forged", name: "Forged", price: "1" };
  const post = (data, headers = {}) =>
    page.request.post(`${BASE}/console/goods`, { form: data, headers, maxRedirects: 0 });
  let r = await post(form);
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /CSRF token/);
  r = await post({ ...form, csrf: "0".repeat(32) });
  assert.equal(r.status(), 403);
  r = await post({ ...form, csrf }, { origin: "http://evil.example" });
  assert.equal(r.status(), 403);
  r = await page.request.post(`${BASE}/console/goods/voucher/codes`, {
    data: "X-1\n", headers: { "content-type": "text/plain" }, maxRedirects: 0,
  });
  assert.equal(r.status(), 403, "an upload without the header is refused too");
  assert.equal((await api("GET", "/v1/goods/forged")).status, 404, "nothing was created");
  r = await post({ ...form, csrf });
  assert.equal(r.status(), 303, "the same form with its token goes through");
  assert.equal((await api("GET", "/v1/goods/forged")).status, 200);
  await ctx.close();
});
