// A static file server for the browser tests: the built app, plus checkpoint folders served
// with HTTP Range support (as the Hugging Face Hub does) or without it (to test the error).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json' };

// mounts: { '/prefix/': { dir, ranges: true|false } }; everything else comes from `root`.
export function serve(root, mounts = {}) {
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let dir = root, rel = url, ranges = true;
    for (const [prefix, m] of Object.entries(mounts)) {
      if (url.startsWith(prefix)) { dir = m.dir; rel = url.slice(prefix.length); ranges = m.ranges; }
    }
    if (rel === '/' || rel === '') rel = 'index.html';
    const file = path.join(dir, path.normalize(rel).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404); res.end('not found'); return;
    }
    const size = fs.statSync(file).size;
    const headers = { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Content-Range, Content-Length' };
    const m = ranges && req.headers.range && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range);
    if (m) {
      const start = +m[1], end = m[2] ? Math.min(+m[2], size - 1) : size - 1;
      if (start >= size) { res.writeHead(416, { 'Content-Range': `bytes */${size}` }); res.end(); return; }
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
      fs.createReadStream(file, { start, end }).pipe(res);
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      fs.createReadStream(file).pipe(res);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

// Headless Debian Chromium with WebGPU (SwiftShader) enabled; see ../shared/platform-notes.md.
export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
