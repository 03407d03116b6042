// moegrow explorer page: draws what the wasm module (web/src, Rust) computes. No computation
// happens here beyond layout and drawing.

const $ = (id) => document.getElementById(id);
const state = { ex: null, summary: null, tensors: [], baseProfile: null, route: null };

// ---------- wasm start-up ----------
function bindings() {
  return new Promise((resolve) => {
    if (window.wasmBindings) return resolve(window.wasmBindings);
    addEventListener('TrunkApplicationStarted', () => resolve(window.wasmBindings), { once: true });
  });
}
const wasm = await bindings();
$('version').textContent = wasm.version();
if (!('gpu' in navigator)) {
  $('gpu-status').textContent = 'This browser has no WebGPU: statistics and the forward pass run on the CPU (slower, same results).';
  $('profile-gpu').checked = false; $('router-gpu').checked = false;
} else {
  $('gpu-status').textContent = 'WebGPU available; the device is opened on first use.';
}

// ---------- helpers ----------
function fmtBytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
  if (n >= 1e3) return (n / 1e3).toFixed(1) + ' KB';
  return n + ' B';
}
function human(n) {
  const u = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']];
  for (const [v, s] of u) if (n >= v) return (n / v).toFixed(2) + s;
  return String(n);
}
function showError(e) {
  const msg = e && e.message ? e.message : String(e);
  if (msg === 'cancelled') { notice('Cancelled.'); return; }
  $('error').textContent = msg; $('error').hidden = false;
}
function clearMessages() { $('error').hidden = true; $('notice').hidden = true; }
function notice(msg) { $('notice').textContent = msg; $('notice').hidden = false; }
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// Run one long job with the progress bar and Cancel button.
async function run(label, fn) {
  clearMessages();
  $('job').hidden = false; $('job-label').textContent = label; $('job-bar').value = 0;
  const progress = (done, total, what) => {
    $('job-bar').max = total || 1; $('job-bar').value = done;
    $('job-label').textContent = `${label}: ${what}`;
  };
  try { return await fn(progress); } catch (e) { showError(e); return null; } finally { $('job').hidden = true; }
}
$('job-cancel').addEventListener('click', () => state.ex && state.ex.cancel());

// ---------- charts (canvas) ----------
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];
function setupCanvas(c) {
  const w = c.clientWidth || c.width, h = c.height * (w / c.width);
  const dpr = window.devicePixelRatio || 1;
  c.style.height = h + 'px';
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext('2d'); g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h); g.font = '12px system-ui, sans-serif';
  return [g, w, h];
}
function resetCanvas(c, w0, h0) { c.width = w0; c.height = h0; c.style.height = ''; }

function lineChart(c, series, { xlabel = '', ylabel = '', w0 = 800, h0 = 300, marks = [] } = {}) {
  resetCanvas(c, w0, h0);
  const [g, w, h] = setupCanvas(c);
  const pad = { l: 64, r: 12, t: 12, b: 40 };
  const all = series.flatMap((s) => s.values.filter((v) => v != null));
  if (!all.length) { g.fillStyle = '#6b7280'; g.fillText(series.length ? 'no MoE layers' : 'no data yet', pad.l, pad.t + 20); return; }
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += Math.abs(hi) * 0.05 + 1e-6; lo -= Math.abs(lo) * 0.05 + 1e-6; }
  const n = Math.max(...series.map((s) => s.values.length));
  const X = (i) => pad.l + (n > 1 ? i / (n - 1) : 0.5) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - (v - lo) / (hi - lo) * (h - pad.t - pad.b);
  g.strokeStyle = '#999'; g.beginPath(); g.moveTo(pad.l, pad.t); g.lineTo(pad.l, h - pad.b); g.lineTo(w - pad.r, h - pad.b); g.stroke();
  g.fillStyle = '#444';
  for (let k = 0; k <= 4; k++) { const v = lo + (hi - lo) * k / 4; g.fillText(v.toPrecision(3), 4, Y(v) + 4); }
  const step = Math.max(1, Math.ceil(n / 16));
  for (let i = 0; i < n; i += step) g.fillText(String(i), X(i) - 4, h - pad.b + 14);
  g.fillText(xlabel, w / 2 - 20, h - 6);
  for (const m of marks) { g.strokeStyle = '#f59e0b'; g.setLineDash([4, 4]); g.beginPath(); g.moveTo(X(m), pad.t); g.lineTo(X(m), h - pad.b); g.stroke(); g.setLineDash([]); }
  series.forEach((s, si) => {
    g.strokeStyle = g.fillStyle = s.color || COLORS[si % COLORS.length]; g.lineWidth = si === 0 && series.length > 1 ? 5 : 2;
    if (si === 0 && series.length > 1) g.globalAlpha = 0.45;
    g.beginPath(); let pen = false;
    s.values.forEach((v, i) => { if (v == null) { pen = false; return; } if (pen) g.lineTo(X(i), Y(v)); else g.moveTo(X(i), Y(v)); pen = true; });
    g.stroke();
    s.values.forEach((v, i) => { if (v != null) { g.beginPath(); g.arc(X(i), Y(v), 2.5, 0, 7); g.fill(); } });
    g.globalAlpha = 1;
    g.fillRect(pad.l + 8 + si * 130, pad.t + 4, 14, 3); g.fillText(s.name, pad.l + 26 + si * 130, pad.t + 10);
  });
  g.lineWidth = 1;
}

function barChart(c, values, { w0 = 800, h0 = 220, label = (i) => i, color = '#2563eb' } = {}) {
  resetCanvas(c, w0, h0);
  const [g, w, h] = setupCanvas(c);
  const pad = { l: 40, r: 8, t: 10, b: 24 };
  const max = Math.max(1e-12, ...values);
  const bw = (w - pad.l - pad.r) / values.length;
  g.fillStyle = '#444'; g.fillText(String(+max.toPrecision(3)), 4, pad.t + 8); g.fillText('0', 4, h - pad.b);
  values.forEach((v, i) => {
    const bh = v / max * (h - pad.t - pad.b);
    g.fillStyle = color; g.fillRect(pad.l + i * bw + 1, h - pad.b - bh, Math.max(1, bw - 2), bh);
    if (values.length <= 64 && (values.length <= 16 || i % 4 === 0)) { g.fillStyle = '#444'; g.fillText(String(label(i)), pad.l + i * bw + 2, h - 8); }
  });
}

function heatmap(c, n, cells) {
  resetCanvas(c, 520, 520);
  const [g, w] = setupCanvas(c);
  const pad = 28, cell = (w - pad - 8) / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    const v = cells[i * n + j];
    // −1 blue … 0 white … 1 red
    const t = Math.max(-1, Math.min(1, v));
    const r = t > 0 ? 255 : Math.round(255 * (1 + t)), b = t < 0 ? 255 : Math.round(255 * (1 - t)), gr = Math.round(255 * (1 - Math.abs(t)));
    g.fillStyle = `rgb(${r},${gr},${b})`;
    g.fillRect(pad + j * cell, pad + i * cell, Math.ceil(cell), Math.ceil(cell));
  }
  g.fillStyle = '#444';
  const step = Math.max(1, Math.ceil(n / 16));
  for (let i = 0; i < n; i += step) { g.fillText(String(i), 2, pad + (i + 0.7) * cell); g.fillText(String(i), pad + i * cell, 18); }
}

// ---------- opening ----------
async function openWith(opener, label) {
  clearMessages();
  const ex = await run(label, () => opener());
  if (!ex) return;
  if (state.ex) state.ex.free();
  state.ex = ex; state.baseProfile = null; state.route = null;
  delete $('profile-chart').dataset.values;
  state.summary = JSON.parse(ex.summary());
  state.tensors = JSON.parse(ex.tensors());
  renderSummary(); renderTensors(); setupLayers(); updatePreview();
  $('views').hidden = false; show('summary');
  $('grow-files').replaceChildren(); $('router-table').replaceChildren(); $('router-info').textContent = '';
  ex.gpu_status().then(
    (d) => { $('gpu-status').textContent = `WebGPU: ${d}` + (/Cpu\)$/.test(d) ? ' (a software adapter: correct, but the CPU path may be faster here)' : ''); },
    (e) => { $('gpu-status').textContent = e.message || String(e); $('profile-gpu').checked = false; $('router-gpu').checked = false; });
  const ign = state.summary.ignored_files;
  if (ign.length) notice(`Ignored (not part of a Hugging Face checkpoint's weights): ${ign.join(', ')}`);
}
function folderName(files) {
  const p = files[0] && files[0].webkitRelativePath;
  return p && p.includes('/') ? p.split('/')[0] : 'checkpoint';
}
async function openFiles(list, name) {
  const files = [...list];
  if (!files.length) return;
  // A folder pick includes sub-folders; only the top level is the checkpoint.
  const top = files.filter((f) => !f.webkitRelativePath || f.webkitRelativePath.split('/').length <= 2);
  await openWith(() => wasm.Explorer.open_files(name || folderName(files), top), `reading ${top.length} file headers`);
}
// Clear the input after each pick so that choosing the same files again reopens them.
const picked = (e) => { const files = [...e.target.files]; e.target.value = ''; openFiles(files); };
$('pick-files').addEventListener('change', picked);
$('pick-folder').addEventListener('change', picked);
if (!('webkitdirectory' in document.createElement('input'))) $('folder-label').hidden = true;
$('url-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const url = $('url').value.trim();
  if (!url) return showError('Type the URL of a checkpoint folder first.');
  openWith(() => wasm.Explorer.open_url(url), 'reading remote headers');
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', async (e) => {
  e.preventDefault(); drop.classList.remove('over');
  const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (items.length === 1 && items[0].isDirectory) {
    // readEntries returns at most ~100 entries per call: read until it returns none.
    const reader = items[0].createReader();
    const entries = [];
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      entries.push(...batch);
    }
    const files = await Promise.all(entries.filter((x) => x.isFile).map((x) => new Promise((res, rej) => x.file(res, rej))));
    return openFiles(files, items[0].name);
  }
  openFiles(e.dataTransfer.files);
});

// ---------- tabs ----------
function show(view) {
  document.querySelectorAll('[data-panel]').forEach((p) => { p.hidden = p.dataset.panel !== view; });
  document.querySelectorAll('[data-view]').forEach((b) => b.classList.toggle('active', b.dataset.view === view));
  if (view === 'grow') updatePreview();
}
document.querySelectorAll('[data-view]').forEach((b) => b.addEventListener('click', () => show(b.dataset.view)));

// ---------- summary ----------
function renderSummary() {
  const s = state.summary, p = s.parameters;
  $('ckpt-name').textContent = s.name;
  const rows = [
    ['family', `${s.family} (${s.model_type})`],
    ['files', `${s.files.length} safetensors file(s), ${fmtBytes(s.bytes)}, ${s.layout} expert layout`],
    ['layers', `${s.layers} (${s.moe_layers.length} MoE), hidden ${s.hidden_size}, vocab ${s.vocab_size}`],
    ['attention', s.attention],
    ['experts', `${s.experts} routed, top-${s.top_k}, expert FFN ${s.expert_intermediate}` + (s.shared_expert_intermediate ? `, shared expert FFN ${s.shared_expert_intermediate}` : '')],
    ['routing', s.routing],
    ['parameters', `${human(p.total)} total, ${human(p.activated)} activated per token (${(100 * p.activated / p.total).toFixed(1)}%), ${human(p.routed_experts)} in routed experts, ${human(p.embedding)} embedding`],
    ['train FLOPs', `${human(s.train_flops_per_token)} per token (6 × activated)`],
    ['tensors', `${s.tensors} (` + Object.entries(s.bytes_by_dtype).map(([d, v]) => `${d}: ${v.tensors} tensors, ${fmtBytes(v.bytes)}`).join('; ') + ')'],
    ['tokenizer', s.tokenizer ? 'tokenizer.json present' : 'none (the router view takes token ids)'],
    ['opened in', `${s.open_ms.toFixed(0)} ms (headers only)`],
  ];
  if (s.growth) rows.push(['grown from', `${s.growth.source.path}: ${s.growth.source.layers} layers, ${s.growth.source.experts} experts → ${s.growth.result.layers} layers, ${s.growth.result.experts} experts (seed ${s.growth.seed})`]);
  if (s.sunk_flops) rows.push(['sunk compute', `${s.sunk_flops.toExponential(3)} FLOPs of training`]);
  $('summary').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-fact': k }, v)]));
}

// ---------- tensors ----------
function renderTensors() {
  const q = $('tensor-filter').value.trim().toLowerCase();
  let list = state.tensors.map((t, i) => ({ ...t, i })).filter((t) => !q || t.name.toLowerCase().includes(q));
  const sort = $('tensor-sort').value;
  if (sort === 'size') list.sort((a, b) => b.bytes - a.bytes);
  if (sort === 'name') list.sort((a, b) => a.name.localeCompare(b.name));
  if (sort === 'dtype') list.sort((a, b) => a.dtype.localeCompare(b.dtype) || a.i - b.i);
  const shown = list.slice(0, 500);
  $('tensor-count').textContent = `${list.length} of ${state.tensors.length} tensors` + (list.length > shown.length ? ` (first ${shown.length} shown)` : '');
  $('tensor-table').tBodies[0].replaceChildren(...shown.map((t) => el('tr', { onclick: () => tensorStats(t.name), tabindex: 0 },
    el('td', { class: 'mono' }, t.name), el('td', {}, t.dtype), el('td', { class: 'mono' }, `[${t.shape.join(', ')}]`), el('td', { class: 'num' }, fmtBytes(t.bytes)))));
}
$('tensor-filter').addEventListener('input', renderTensors);
$('tensor-sort').addEventListener('change', renderTensors);
async function tensorStats(name) {
  const r = await run(`statistics of ${name}`, (p) => state.ex.tensor_stats(name, 48, p));
  if (!r) return;
  const v = JSON.parse(r), s = v.stats, hcan = el('canvas', { width: 420, height: 180, 'data-testid': 'histogram' });
  $('tensor-detail').classList.remove('muted');
  $('tensor-detail').replaceChildren(
    el('h3', { class: 'mono' }, name),
    el('dl', { class: 'facts small', 'data-testid': 'tensor-stats' }, ...[['elements', s.count], ['mean', s.mean.toPrecision(5)], ['std', s.std.toPrecision(5)], ['rms', s.rms.toPrecision(5)], ['min', s.min.toPrecision(5)], ['max', s.max.toPrecision(5)], ['zeros', s.zeros], ['NaN/inf', s.non_finite]].flatMap(([k, x]) => [el('dt', {}, k), el('dd', {}, String(x))])),
    hcan, el('p', { class: 'muted' }, `histogram: ${v.histogram.counts.length} bins over [${v.histogram.lo.toPrecision(3)}, ${v.histogram.hi.toPrecision(3)}]`));
  barChart(hcan, v.histogram.counts, { w0: 420, h0: 180, label: () => '', color: '#64748b' });
}

// ---------- norm profile ----------
$('profile-run').addEventListener('click', async () => {
  const r = await run('expert weight-norm profile', (p) => state.ex.norm_profile($('profile-gpu').checked, p));
  if (!r) return;
  const v = JSON.parse(r);
  state.baseProfile = v.profile;
  $('profile-info').textContent = `${v.device}, ${v.ms.toFixed(0)} ms` + (v.fallback ? ` — ${v.fallback}` : '');
  if (v.fallback) notice(v.fallback);
  lineChart($('profile-chart'), [{ name: state.summary.name, values: v.profile }], { xlabel: 'layer', w0: 800, h0: 320 });
  $('profile-chart').dataset.values = JSON.stringify(v.profile);
  updatePreview();
});

// ---------- similarity ----------
function setupLayers() {
  const opts = (sel) => sel.replaceChildren(...state.summary.moe_layers.map((l) => el('option', { value: l }, l)));
  opts($('sim-layer')); opts($('load-layer'));
}
$('sim-run').addEventListener('click', async () => {
  const layer = +$('sim-layer').value;
  const r = await run(`expert similarity, layer ${layer}`, (p) => state.ex.similarity(layer, p));
  if (!r) return;
  const v = JSON.parse(r);
  const n = v.experts;
  let best = -2, pair = '';
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (v.cosine[i * n + j] > best) { best = v.cosine[i * n + j]; pair = `${i}–${j}`; }
  $('sim-info').textContent = n > 1 ? `most similar pair: experts ${pair}, cosine ${best.toFixed(4)}` : '';
  heatmap($('sim-chart'), n, v.cosine);
});

// ---------- router ----------
$('router-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await run('routing', (p) => state.ex.route($('prompt').value, $('router-gpu').checked, p));
  if (!r) return;
  const v = JSON.parse(r);
  state.route = v;
  $('router-info').textContent = `${v.tokens.length} tokens on ${v.device}; routing: ${v.routing}; next token: ` + v.next_token.map((t) => `${t.text} (${t.logit.toFixed(2)})`).join(', ') + (v.fallback ? ` — ${v.fallback}` : '');
  const head = el('tr', {}, el('th', {}, 'layer'), ...v.tokens.map((t) => el('th', { class: 'mono', title: `id ${t.id}` }, t.text)));
  const rows = v.layers.map((L, l) => L && el('tr', {}, el('th', {}, l), ...L.experts.map((ex, t) => el('td', { class: 'mono', title: L.weights[t].map((w) => w.toFixed(3)).join(', ') }, ex.join(' '))))).filter(Boolean);
  $('router-table').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
  drawLoad();
});
function drawLoad() {
  if (!state.route) return;
  const L = state.route.layers[+$('load-layer').value];
  if (L) barChart($('load-chart'), L.load, { w0: 800, h0: 220 });
}
$('load-layer').addEventListener('change', drawLoad);

// ---------- grow ----------
function growOptions() {
  const f = new FormData($('grow-form'));
  return {
    depth: +f.get('depth'), depth_method: f.get('depth_method'), experts: +f.get('experts'),
    noise: +f.get('noise'), new_experts: f.get('new_experts'), seed: +f.get('seed'),
    max_shard_size: f.get('max_shard_size'), width_first: f.get('width_first') === 'on',
  };
}
function updatePreview() {
  if (!state.ex) return;
  const o = growOptions();
  if (o.depth <= 1 && o.experts <= 1) {
    $('grow-preview').replaceChildren(el('p', { class: 'muted' }, 'Choose a depth factor or a width multiplier.'));
    $('grow-run').disabled = true; return;
  }
  let v;
  try { v = JSON.parse(state.ex.preview(JSON.stringify(o))); } catch (e) {
    $('grow-preview').replaceChildren(el('p', { class: 'error' }, e.message || String(e))); $('grow-run').disabled = true; return;
  }
  $('grow-run').disabled = false;
  const b = v.before, a = v.after;
  $('grow-preview').replaceChildren(el('table', { class: 'compare' },
    el('tr', {}, el('th', {}, ''), el('th', {}, 'base'), el('th', {}, 'grown')),
    el('tr', {}, el('th', {}, 'layers'), el('td', {}, b.layers), el('td', {}, a.layers)),
    el('tr', {}, el('th', {}, 'experts / top-k'), el('td', {}, `${b.experts} / ${b.top_k}`), el('td', {}, `${a.experts} / ${a.top_k}`)),
    el('tr', {}, el('th', {}, 'parameters'), el('td', {}, human(b.parameters.total)), el('td', {}, human(a.parameters.total))),
    el('tr', {}, el('th', {}, 'activated'), el('td', {}, human(b.parameters.activated)), el('td', {}, human(a.parameters.activated)))),
    el('p', { class: 'muted' }, `${fmtBytes(v.output_bytes)} in ${v.shards.length} file(s), ${v.layout} layout. ` + v.notes.join('; ')));
  // Norm profile preview: the base's, mapped through the layer map, for both depth methods.
  const base = state.baseProfile;
  if (!base) {
    $('grow-preview').append(el('p', { class: 'muted' }, 'Compute the norm profile (Norm profile tab) to see the grown profile beside the base: stacking puts a seam where the copy restarts, interposition keeps it smooth.'));
    lineChart($('grow-chart'), [], {}); return;
  }
  const series = [{ name: 'base', values: base, color: '#64748b' }];
  if (o.depth > 1) {
    for (const m of ['interpose', 'stack']) {
      try {
        const pv = JSON.parse(state.ex.preview(JSON.stringify({ ...o, depth_method: m })));
        series.push({ name: m === 'interpose' ? 'interposition' : 'stacking', values: pv.layer_sources.map((s) => base[s]), color: m === 'interpose' ? '#16a34a' : '#dc2626' });
      } catch (_) { /* the other method may be invalid for this family; leave it out */ }
    }
  } else {
    series.push({ name: 'grown', values: v.layer_sources.map((s) => base[s]), color: '#16a34a' });
  }
  lineChart($('grow-chart'), series, { xlabel: 'layer', w0: 800, h0: 300 });
}
$('grow-form').addEventListener('input', updatePreview);
$('grow-form').addEventListener('change', updatePreview);
$('grow-run').addEventListener('click', async () => {
  const o = growOptions();
  const t0 = performance.now();
  const files = await run('growing', (p) => state.ex.grow(JSON.stringify(o), p));
  if (!files) return;
  const total = files.reduce((n, f) => n + f.blob.size, 0);
  $('grow-info').textContent = `${files.length} files, ${fmtBytes(total)}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const links = files.map((f) => {
    const a = el('a', { href: URL.createObjectURL(f.blob), download: f.name, 'data-testid': 'download' }, f.name);
    return el('li', {}, a, ` (${fmtBytes(f.blob.size)})`);
  });
  const all = el('button', { 'data-testid': 'download-all', onclick: async () => {
    for (const li of links) { li.querySelector('a').click(); await new Promise((r) => setTimeout(r, 250)); }
  } }, 'Download all');
  $('grow-files').replaceChildren(...links, el('li', {}, all));
});

document.body.dataset.ready = 'true';
