// Drives the verifier page in Debian's headless Chromium (no browser download):
//   node verifier.mjs CONFIG.json
// CONFIG (written by tests/tests/web_verifier.rs):
//   {"pages": [URL…], "roster": PATH, "admin": PATH,
//    "folder": DIR, "expected_folder": <quorate verify --json of DIR>,
//    "tampered": FILE, "expected_tampered": <quorate verify --json of FILE>,
//    "profile": DIR}
// For each page: loads it, gives it the roster, its authority's key and the folder through the
// page's own inputs, checks that the report is exactly the CLI's, then does the same with a
// tampered receipt, and checks that the page made no request at all after it loaded.
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export async function launch(profileRoot) {
  // A fresh profile each time: nothing cached, nothing remembered.
  const profile = mkdtempSync(join(profileRoot, "chromium-"));
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

export async function openPage(context, url) {
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
  // From here on the page must not ask for anything, from anywhere.
  page.on("request", (r) => requests.push(r.url()));
  return { page, requests, errors };
}

async function report(page) {
  await page.click("#verify");
  await page.waitForSelector("#result[data-state]", { timeout: 60000 });
  const state = await page.getAttribute("#result", "data-state");
  if (state === "error") return { state, error: await page.textContent("#error") };
  return { state, json: JSON.parse(await page.textContent("#json")) };
}

async function checkPage(context, cfg, url) {
  const { page, requests, errors } = await openPage(context, url);
  await page.setInputFiles("#roster", cfg.roster);
  await page.setInputFiles("#admin", cfg.admin);

  // The demo's receipts and audit logs, as a folder: every one verifies, and the page's report
  // is exactly what `quorate verify --json` printed for the same folder.
  await page.setInputFiles("#pick-folder", cfg.folder);
  const good = await report(page);
  assert.equal(good.state, "ok", `${url}: the demo's artefacts did not verify: ${JSON.stringify(good)}`);
  assert.deepEqual(good.json, cfg.expected_folder, `${url}: the page's report differs from the CLI's`);
  const rows = await page.$$eval("#files tr[data-path]", (trs) => trs.map((t) => [t.className, t.dataset.path]));
  const expected = cfg.expected_folder;
  const entries = ["receipts", "chains", "aggregates", "bundles"].reduce((n, k) => n + (expected[k] || []).length, 0);
  assert.equal(rows.length, entries, `${url}: one row per receipt, chain, aggregate and bundle`);
  assert.ok(rows.every(([c]) => c === "ok"), `${url}: a row is not OK: ${JSON.stringify(rows)}`);

  // A receipt with one flipped signature byte is refused, with the CLI's code and reason.
  await page.click("#clear");
  await page.setInputFiles("#pick-files", cfg.tampered);
  const bad = await report(page);
  assert.equal(bad.state, "fail", `${url}: a tampered receipt was not refused: ${JSON.stringify(bad)}`);
  assert.deepEqual(bad.json, cfg.expected_tampered, `${url}: the page's refusal differs from the CLI's`);
  assert.equal(bad.json.receipts[0].error, "bad_signature");
  const failRow = await page.textContent("#files tr.fail td.detail");
  assert.ok(failRow.startsWith("bad_signature: bad signature"), `${url}: the row says ${failRow}`);

  assert.deepEqual(requests, [], `${url}: the page made requests after it loaded`);
  assert.deepEqual(errors, [], `${url}: the page logged errors`);
  await page.close();
}

async function main() {
  const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const context = await launch(cfg.profile);
  let passed = 0;
  let failed = 0;
  try {
    for (const url of cfg.pages) {
      try {
        await checkPage(context, cfg, url);
        console.log(`ok: ${url}`);
        passed++;
      } catch (e) {
        console.log(`FAILED: ${url}: ${e.stack || e}`);
        failed++;
      }
    }
  } finally {
    await context.close();
  }
  console.log(`page checks: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => { console.error(e); process.exit(1); });
}
