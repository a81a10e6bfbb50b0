// view_page.mjs — load detd's live-view page in headless Chromium and check,
// through the DevTools protocol, that it shows the stream (its MJPEG image
// decoded at the source size) and at least one object; save a screenshot.
//   node --experimental-websocket view_page.mjs URL STREAM W H SCREENSHOT.png
// Exit 0 when seen, 1 otherwise.  Needs Node ≥ 20 and /usr/bin/chromium.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, stream, w, h, shot] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'detd-chromium-'));
const chrome = spawn('/usr/bin/chromium', [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', `--user-data-dir=${dir}`, '--remote-debugging-port=0',
  '--window-size=1100,800', 'about:blank'], { stdio: 'ignore' });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function done(code, msg) {
  if (msg) console.log(msg);
  chrome.kill('SIGKILL');
  try { rmSync(dir, { recursive: true, force: true }); } catch { /* still in use */ }
  process.exit(code);
}
setTimeout(() => done(1, 'FAIL: timed out'), 60000);

let port;
for (let i = 0; i < 200 && !port; i++) {
  const f = join(dir, 'DevToolsActivePort');
  if (existsSync(f)) port = readFileSync(f, 'utf8').split('\n')[0];
  else await sleep(100);
}
if (!port) done(1, 'FAIL: chromium did not open its DevTools port');
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = targets.find((t) => t.type === 'page');
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
let id = 0;
const pending = new Map();
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
};
const call = (method, params = {}) => new Promise((r) => {
  pending.set(++id, r);
  ws.send(JSON.stringify({ id, method, params }));
});
const evaluate = async (expr) =>
  (await call('Runtime.evaluate', { expression: expr, returnByValue: true })).result?.result?.value;

await call('Page.enable');
await call('Page.navigate', { url });
const probe = `(() => {
  const s = document.querySelector('section.stream[data-stream="${stream}"]');
  if (!s) return null;
  const img = s.querySelector('img');
  return { state: s.querySelector('.state').textContent, objects: s.querySelectorAll('li.obj').length,
           labels: [...s.querySelectorAll('li.obj')].map((l) => l.dataset.label),
           imgw: img.naturalWidth, imgh: img.naturalHeight };
})()`;
let seen = null;
for (let i = 0; i < 100; i++) {
  seen = await evaluate(probe);
  if (seen && seen.objects > 0 && seen.imgw === Number(w) && seen.imgh === Number(h)) break;
  await sleep(200);
}
console.log('page:', JSON.stringify(seen));
if (!(seen && seen.objects > 0 && seen.imgw === Number(w) && seen.imgh === Number(h)))
  done(1, 'FAIL: the page does not show the stream with objects');
await sleep(500); // one more MJPEG part for the picture
const png = await call('Page.captureScreenshot', { format: 'png' });
writeFileSync(shot, Buffer.from(png.result.data, 'base64'));
done(0, `ok: page shows ${stream} (${seen.imgw}x${seen.imgh}, ${seen.objects} objects: ${seen.labels.join(', ')})`);
