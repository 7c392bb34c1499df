// Times the verifier page on a folder of receipts (scripts/bench-web):
//   node bench.mjs PAGE_URL ROSTER ADMIN DIR [RUNS]
// Prints the best of RUNS in-page verification times (the WebAssembly call, after the files
// are in memory), and the report's verdict.
import { readFileSync, readdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { launch, openPage } from "./verifier.mjs";

const [url, roster, admin, dir, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const b64 = (p) => readFileSync(p).toString("base64");
const files = readdirSync(dir).filter((n) => n.endsWith(".cose")).sort()
  .map((n) => ({ name: n, b64: b64(join(dir, n)) }));
const context = await launch(mkdtempSync(join(tmpdir(), "quorate-bench-")));
const { page } = await openPage(context, url);
const result = await page.evaluate(async ({ roster, admin, files, runs }) => {
  const bytes = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
  const input = {
    roster: { name: "roster.cose", bytes: bytes(roster) },
    admin: { name: "admin.pub", bytes: bytes(admin) },
    files: files.map((f) => ({ name: f.name, bytes: bytes(f.b64) })),
  };
  const times = [];
  let last;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    last = await window.quorate.verify(input);
    times.push(performance.now() - t0);
  }
  return { times, ok: last.ok, n: (last.report.receipts || []).length };
}, { roster: b64(roster), admin: b64(admin), files, runs });
await context.close();
console.log(JSON.stringify({ receipts: result.n, ok: result.ok, best_ms: Math.min(...result.times), runs_ms: result.times }));
