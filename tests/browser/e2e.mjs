// End-to-end test of the browser explorer: the built app (web/dist) in headless Chromium.
// Opens a fixture checkpoint from local files and by URL, checks the summary against
// `moegrow inspect --json`, runs every view, grows width ×2 with α = 0, downloads the result
// and compares it byte for byte with `moegrow grow` for the same plan. Screenshots of every
// view at desktop and phone widths go to tests/browser/artifacts/.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { serve, CHROMIUM, CHROMIUM_ARGS } from './server.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '../..');
const dist = path.join(repo, 'web/dist');
// Relative paths are taken from the repository root, as cargo takes them, not from this folder.
const target = path.resolve(repo, process.env.CARGO_TARGET_DIR || 'target');
const moegrow = path.resolve(repo, process.env.MOEGROW_BIN || path.join(target, 'debug/moegrow'));
const artifacts = path.join(here, 'artifacts');
fs.mkdirSync(artifacts, { recursive: true });
for (const f of fs.readdirSync(artifacts)) if (f.endsWith('.png')) fs.rmSync(path.join(artifacts, f)); // keep bench.json
for (const p of [path.join(dist, 'index.html'), moegrow]) assert.ok(fs.existsSync(p), `${p} is missing: build it first (see tests/run-all.sh)`);

// The fixture checkpoint, with a tokenizer, in a folder named "checkpoint" (the name the page
// records in the provenance when files are picked one by one).
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'moegrow-e2e-'));
const ckpt = path.join(work, 'checkpoint');
fs.mkdirSync(ckpt);
const fixture = path.join(repo, 'tests/fixtures/qwen3_moe_experts_f32');
for (const f of ['config.json', 'model.safetensors', 'generation_config.json']) fs.copyFileSync(path.join(fixture, f), path.join(ckpt, f));
fs.copyFileSync(path.join(here, 'tokenizer.json'), path.join(ckpt, 'tokenizer.json'));
const files = fs.readdirSync(ckpt).map((f) => path.join(ckpt, f));

const inspect = JSON.parse(execFileSync(moegrow, ['inspect', ckpt, '--json', '--device', 'cpu'], { encoding: 'utf8' }));
execFileSync(moegrow, ['grow', 'checkpoint', 'native-grown', '--experts', '2', '--noise', '0'], { cwd: work, stdio: 'pipe' });

// A checkpoint made from DeepSeek-V3's real hub config: FP8 weights with block scales, a
// multi-token-prediction layer, YaRN RoPE, two shards and an index.
const hub = path.join(repo, 'tests/fixtures/hub/deepseek-v3');
const hubInspect = JSON.parse(execFileSync(moegrow, ['inspect', hub, '--json', '--device', 'cpu'], { encoding: 'utf8' }));
const { server, url } = await serve(dist, { '/ckpt/': { dir: ckpt, ranges: true }, '/norange/': { dir: ckpt, ranges: false }, '/hub/': { dir: hub, ranges: true } });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const consoleErrors = [];
// Probing a URL checkpoint for optional files (the index, tokenizer files) 404s by design.
page.on('console', (m) => {
  const probe = /status of 404/.test(m.text()) && /\/(ckpt|norange|hub)\//.test(m.location().url || '');
  if (m.type() === 'error' && !probe) consoleErrors.push(`${m.text()} (${m.location().url})`);
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));

let step = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try { await fn(); console.log(`ok ${++step} - ${name} (${Date.now() - t0} ms)`); } catch (e) {
    await page.screenshot({ path: path.join(artifacts, `FAILED-${name.replace(/\W+/g, '-')}.png`), fullPage: true });
    console.error(`not ok ${++step} - ${name}\n${e.stack || e}`);
    if (consoleErrors.length) console.error('browser console errors:\n' + consoleErrors.join('\n'));
    await browser.close(); server.close(); process.exit(1);
  }
}
async function shots(view) {
  for (const [label, size] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: path.join(artifacts, `${view}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}
const fact = (k) => page.locator(`[data-fact="${k}"]`).textContent();
const tab = (v) => page.click(`[data-view="${v}"]`);
const idle = () => page.waitForSelector('#job', { state: 'hidden' });

await check('the app starts', async () => {
  await page.goto(url + '/');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
  await shots('start');
});

await check('a file set without config.json gets a clear error', async () => {
  await page.setInputFiles('[data-testid="pick-files"]', [path.join(ckpt, 'model.safetensors')]);
  await page.waitForSelector('[data-testid="error"]:not([hidden])');
  assert.match(await page.textContent('[data-testid="error"]'), /no config\.json among the files given \(model\.safetensors\)/);
});

await check('open local files: the summary matches moegrow inspect', async () => {
  await page.setInputFiles('[data-testid="pick-files"]', files);
  await page.waitForSelector('#views:not([hidden])');
  assert.equal(await page.textContent('[data-testid="ckpt-name"]'), 'checkpoint');
  assert.equal(await fact('family'), `${inspect.family} (${inspect.model_type})`);
  assert.equal(await fact('layers'), `${inspect.layers} (${inspect.moe_layers.length} MoE), hidden ${inspect.hidden_size}, vocab ${inspect.vocab_size}`);
  assert.equal(await fact('attention'), inspect.attention);
  assert.equal(await fact('routing'), inspect.routing);
  assert.match(await fact('experts'), new RegExp(`^${inspect.experts} routed, top-${inspect.top_k}, expert FFN ${inspect.expert_intermediate}`));
  const t = inspect.parameters.total, a = inspect.parameters.activated;
  assert.match(await fact('parameters'), new RegExp(`\\(${(100 * a / t).toFixed(1)}%\\)`));
  assert.match(await fact('tensors'), new RegExp(`^${inspect.tensors} \\(`));
  assert.equal(await fact('tokenizer'), 'tokenizer.json present');
  await shots('summary');
});

await check('tensor table: filter, sort, statistics', async () => {
  await tab('tensors');
  await page.fill('[data-testid="tensor-filter"]', 'layers.1.mlp.gate.weight');
  const rows = page.locator('[data-testid="tensor-table"] tbody tr');
  assert.equal(await rows.count(), 1);
  await rows.first().click();
  await page.waitForSelector('[data-testid="tensor-stats"]');
  assert.match(await page.textContent('[data-testid="tensor-stats"]'), /elements256/); // router [8, 32]
  await page.fill('[data-testid="tensor-filter"]', '');
  await page.selectOption('[data-testid="tensor-sort"]', 'size');
  assert.match(await rows.first().textContent(), /embed_tokens|lm_head/);
  await shots('tensors');
});

await check('norm profile on WebGPU equals the native CPU profile', async () => {
  await tab('profile');
  await page.click('[data-testid="profile-run"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="profile-chart"]').dataset.values);
  await idle();
  const info = await page.textContent('[data-testid="profile-info"]');
  assert.match(info, /^WebGPU/, `expected the profile to run on WebGPU: ${info}`);
  const got = JSON.parse(await page.getAttribute('[data-testid="profile-chart"]', 'data-values'));
  inspect.expert_norm_profile.forEach((v, i) => assert.ok(Math.abs(got[i] - v) <= 1e-5 * Math.abs(v), `layer ${i}: ${got[i]} vs ${v}`));
  await shots('profile');
});

await check('similarity heatmap', async () => {
  await tab('similarity');
  await page.click('[data-testid="sim-run"]');
  await idle();
  assert.match(await page.textContent('#sim-info'), /most similar pair: experts \d+–\d+, cosine/);
  await shots('similarity');
});

await check('router view: tokenised prompt, WebGPU routing equals CPU routing', async () => {
  await tab('router');
  await page.fill('[data-testid="prompt"]', 'The cat sat on the mat');
  await page.click('[data-testid="router-run"]');
  await idle();
  assert.match(await page.textContent('[data-testid="router-info"]'), /^6 tokens on WebGPU/);
  const gpu = await page.locator('[data-testid="router-table"]').innerText();
  assert.equal(await page.locator('[data-testid="router-table"] thead th').count(), 7);
  assert.equal(await page.locator('[data-testid="router-table"] tbody tr').count(), inspect.moe_layers.length);
  await shots('router');
  await page.uncheck('#router-gpu');
  await page.click('[data-testid="router-run"]');
  await idle();
  assert.match(await page.textContent('[data-testid="router-info"]'), /^6 tokens on CPU/);
  assert.equal(await page.locator('[data-testid="router-table"]').innerText(), gpu);
});

const downloads = path.join(work, 'browser-grown');
await check('grow width ×2 with α = 0 and download: identical to moegrow grow', async () => {
  await tab('grow');
  // Depth ×2: the preview draws the base profile through both layer maps (the seam).
  await page.selectOption('[data-testid="grow-depth"]', '2');
  await page.waitForSelector('[data-testid="grow-preview"] table');
  assert.match(await page.textContent('[data-testid="grow-preview"]'), /layers36/);
  await shots('grow-depth-preview');
  await page.selectOption('[data-testid="grow-depth"]', '1');
  await page.selectOption('[data-testid="grow-width"]', '2');
  await page.fill('[data-testid="grow-alpha"]', '0');
  await page.waitForSelector('[data-testid="grow-preview"] table');
  assert.match(await page.textContent('[data-testid="grow-preview"]'), /experts \/ top-k8 \/ 216 \/ 4/);
  await page.click('[data-testid="grow-run"]');
  await page.waitForSelector('[data-testid="download"]');
  await shots('grow');
  fs.mkdirSync(downloads);
  const links = page.locator('[data-testid="download"]');
  for (let i = 0; i < await links.count(); i++) {
    const [d] = await Promise.all([page.waitForEvent('download'), links.nth(i).click()]);
    await d.saveAs(path.join(downloads, d.suggestedFilename()));
  }
  const native = path.join(work, 'native-grown');
  assert.deepEqual(fs.readdirSync(downloads).sort(), fs.readdirSync(native).sort());
  for (const f of fs.readdirSync(native)) {
    assert.ok(fs.readFileSync(path.join(native, f)).equals(fs.readFileSync(path.join(downloads, f))), `${f} differs from moegrow grow's`);
  }
  // And the native tool reads what the browser wrote.
  execFileSync(moegrow, ['inspect', downloads, '--device', 'cpu'], { stdio: 'pipe' });
});

await check('open by URL with range requests', async () => {
  await page.fill('[data-testid="url"]', url + '/ckpt/');
  await page.click('[data-testid="open-url"]');
  await page.waitForFunction((u) => document.querySelector('[data-testid="ckpt-name"]').textContent === u, url + '/ckpt/');
  assert.equal(await fact('family'), `${inspect.family} (${inspect.model_type})`);
  await tab('profile');
  await page.click('[data-testid="profile-run"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="profile-chart"]').dataset.values);
  await idle();
});

await check('an FP8 DeepSeek-V3 checkpoint by URL: summary and dequantised norm profile', async () => {
  await page.fill('[data-testid="url"]', url + '/hub/');
  await page.click('[data-testid="open-url"]');
  await page.waitForFunction((u) => document.querySelector('[data-testid="ckpt-name"]').textContent === u, url + '/hub/');
  assert.equal(await fact('family'), `${hubInspect.family} (${hubInspect.model_type})`);
  await tab('profile');
  await page.click('[data-testid="profile-run"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="profile-chart"]').dataset.values);
  await idle();
  const got = JSON.parse(await page.getAttribute('[data-testid="profile-chart"]', 'data-values'));
  hubInspect.expert_norm_profile.forEach((v, i) => assert.ok(v === null ? got[i] === null : Math.abs(got[i] - v) <= 1e-5 * Math.abs(v), `layer ${i}: ${got[i]} vs ${v}`));
  await shots('hub-fp8-profile');
});

await check('a server without range support gets a clear error', async () => {
  await page.fill('[data-testid="url"]', url + '/norange/');
  await page.click('[data-testid="open-url"]');
  await page.waitForSelector('[data-testid="error"]:not([hidden])');
  assert.match(await page.textContent('[data-testid="error"]'), /ignores HTTP Range requests/);
});

await browser.close();
server.close();
fs.rmSync(work, { recursive: true, force: true });
if (consoleErrors.length) { console.error('browser console errors:\n' + consoleErrors.join('\n')); process.exit(1); }
console.log(`all ${step} browser checks passed; screenshots in ${path.relative(repo, artifacts)}/`);
