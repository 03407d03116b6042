// Browser explorer timings (the numbers issue 7 asks for), in headless Chromium here:
//  1. time to show the summary of a ~1 GB sharded checkpoint (headers only), from local files
//     and over HTTP range requests;
//  2. time to compute the expert weight-norm profile of a ~500 MB checkpoint on WebGPU, with
//     the CPU path timed in the same run as the baseline.
// Checkpoints are made with `moegrow init` + `moegrow grow`. Results: artifacts/bench.json.
// Usage: node bench.mjs   (after `trunk build --release` in web/ and a debug build of moegrow)
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serve, CHROMIUM, CHROMIUM_ARGS } from './server.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '../..');
// Relative paths are taken from the repository root, as cargo takes them, not from this folder.
const target = path.resolve(repo, process.env.CARGO_TARGET_DIR || 'target');
const moegrow = path.resolve(repo, process.env.MOEGROW_BIN || path.join(target, 'debug/moegrow'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'moegrow-bench-'));
const sh = (...args) => execFileSync(moegrow, args, { cwd: work, stdio: 'pipe' });
const dirBytes = (d) => fs.readdirSync(d).reduce((n, f) => n + fs.statSync(path.join(d, f)).size, 0);

sh('init', 'base-f32', '--preset', 'base100m', '--dtype', 'f32');
sh('grow', 'base-f32', 'big', '--depth', '3', '--max-shard-size', '400MB');
sh('init', 'base-bf16', '--preset', 'base100m', '--dtype', 'bf16');
sh('grow', 'base-bf16', 'mid', '--depth', '3');
const big = path.join(work, 'big'), mid = path.join(work, 'mid');

const { server, url } = await serve(path.join(repo, 'web/dist'), { '/big/': { dir: big, ranges: true } });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage();
await page.goto(url + '/');
await page.waitForSelector('body[data-ready="true"]');

async function openFiles(dir) {
  await page.evaluate(() => { document.querySelector('[data-testid="ckpt-name"]').textContent = ''; });
  const t0 = Date.now();
  await page.setInputFiles('[data-testid="pick-files"]', fs.readdirSync(dir).map((f) => path.join(dir, f)));
  await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden || document.querySelector('[data-testid="ckpt-name"]').textContent !== '', null, { timeout: 300000 });
  const err = await page.locator('[data-testid="error"]:not([hidden])').count();
  if (err) throw new Error(await page.textContent('[data-testid="error"]'));
  return Date.now() - t0;
}
const result = { chromium: (await browser.version()), runs: [] };
for (let rep = 0; rep < 3; rep++) {
  const wall = await openFiles(big);
  const openMs = +(await page.locator('[data-fact="opened in"]').textContent()).split(' ')[0];
  await page.fill('[data-testid="url"]', url + '/big/');
  const t0 = Date.now();
  await page.click('[data-testid="open-url"]');
  await page.waitForFunction((u) => document.querySelector('[data-testid="ckpt-name"]').textContent === u, url + '/big/');
  const urlWall = Date.now() - t0;
  result.runs.push({ summary_1gb_local_wall_ms: wall, summary_1gb_local_open_ms: openMs, summary_1gb_url_wall_ms: urlWall });
}
result.big_bytes = dirBytes(big);
result.big_files = fs.readdirSync(big).length;

await openFiles(mid);
result.mid_bytes = dirBytes(mid);
await page.click('[data-view="profile"]');
for (const gpu of [true, false, true]) {
  await page.setChecked('#profile-gpu', gpu);
  const t0 = Date.now();
  await page.click('[data-testid="profile-run"]');
  await page.waitForSelector('#job', { state: 'hidden' });
  await page.waitForFunction(() => document.querySelector('[data-testid="profile-chart"]').dataset.values);
  const info = await page.textContent('[data-testid="profile-info"]');
  result.runs.push({ profile_500mb: gpu ? 'gpu' : 'cpu', wall_ms: Date.now() - t0, info });
  await page.evaluate(() => { delete document.querySelector('[data-testid="profile-chart"]').dataset.values; });
}
await browser.close();
server.close();
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(path.join(here, 'artifacts'), { recursive: true });
fs.writeFileSync(path.join(here, 'artifacts/bench.json'), JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result, null, 2));
