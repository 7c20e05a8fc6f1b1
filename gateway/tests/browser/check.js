// Browser check of the web page (gateway/web/index.html, served by the gateway at `/`).
//
//   deploy/check-browser.sh http://127.0.0.1:8080      # installs what it needs, then runs this
//   NODE_PATH=/var/tmp/ringchat-tools/node/node_modules node gateway/tests/browser/check.js BASE_URL
//
// Two people (alice and bob, two browser contexts) use the page in headless Chromium the way
// a person would: register, chat live both ways, reload and read the history, the world
// room, log out. Then the same page served from another origin (a tiny server started here)
// with ?api=BASE_URL logs in, sends and receives: CORS and the cross-origin WebSocket.
// Prints "ok: ..." per step, then "RESULT: OK" (exit 0) or "RESULT: FAIL <reason>" (exit 1).
// A screenshot of alice's page goes to /tmp/ringchat-web.png.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.log('RESULT: FAIL playwright-core not found: run deploy/check-browser.sh, or set NODE_PATH to a node_modules that has it');
  process.exit(1);
}

const BASE = (process.argv[2] || '').replace(/\/+$/, '');
const T = 15000;                      // deadline of one wait
const PAGE_FILE = path.resolve(__dirname, '../../web/index.html');
const SHOT = '/tmp/ringchat-web.png';
const PASSWORD = 'secret-pw1';

let browser = null, server = null, alicePage = null;
const pageErrors = [], consoleErrors = [];

function ok(msg) { console.log('ok: ' + msg); }
function finish(err) {
  if (err) {
    for (const e of pageErrors) console.log('note: page error: ' + e);
    for (const e of consoleErrors.slice(-10)) console.log('note: console: ' + e);
  }
  console.log(err ? 'RESULT: FAIL ' + String(err.message || err).split('\n')[0] : 'RESULT: OK');
  process.exit(err ? 1 : 0);
}
// The whole run has a deadline too, whatever hangs.
const watchdog = setTimeout(() => finish(new Error('overall deadline (180 s) passed')), 180000);

async function errorText(page) {
  try { return (await page.textContent('#error', { timeout: 1000 })) || ''; } catch (e) { return '?'; }
}
// waitForFunction with a deadline and a readable failure (including the page's #error).
async function waitFor(page, what, fn, arg, timeout = T) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    const shown = await errorText(page);
    throw new Error(what + ': not seen within ' + timeout / 1000 + ' s' + (shown ? ' (page shows: "' + shown + '")' : ''));
  }
}

async function newPerson(url, who) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => pageErrors.push(who + ': ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(who + ': ' + m.text()); });
  await page.goto(url, { timeout: T });
  await page.waitForSelector('#username', { state: 'visible', timeout: T });
  return page;
}

async function enter(page, button, name, password) {
  await page.fill('#username', name);
  await page.fill('#password', password);
  await page.click(button);
  await waitFor(page, name + ' logged in (#me)', (n) => document.getElementById('me').dataset.username === n, name);
  await waitFor(page, name + "'s WebSocket connected (#status)",
    () => document.getElementById('status').textContent.trim() === 'connected');
}

// A message in the open chat, acknowledged or received (it has a seqId), with this text.
function hasMessage(page, who, text) {
  return waitFor(page, who + ' sees "' + text + '" in the chat', (t) =>
    [...document.querySelectorAll('#messages .msg[data-seq]')]
      .some((m) => !m.classList.contains('pending') && m.querySelector('.body').textContent === t), text);
}

async function send(page, who, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await hasMessage(page, who, text); // shown at once as pending, then acked with a seqId
}

async function openChatWith(page, peer) {
  await page.fill('#peer', peer);
  await page.click('#open-chat');
  await waitFor(page, 'chat with ' + peer + ' open', (p) => document.getElementById('chat-title').textContent === p, peer);
  await waitFor(page, 'the chat with ' + peer + ' marked active in the list',
    () => !!document.querySelector('#conversations li.active[data-conversation-id]'));
  return page.getAttribute('#conversations li.active', 'data-conversation-id');
}

async function openFromList(page, id, title) {
  await page.click(`#conversations li[data-conversation-id="${id}"]`);
  await waitFor(page, 'conversation ' + id + ' open', (t) => document.getElementById('chat-title').textContent === t, title);
}

function serveElsewhere() {
  const html = fs.readFileSync(PAGE_FILE);
  return new Promise((resolve, reject) => {
    const s = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(html);
    });
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

async function main() {
  if (!/^https?:\/\/[^/]+$/.test(BASE)) throw new Error('usage: node check.js BASE_URL (e.g. http://127.0.0.1:8080)');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  ok('chromium ' + browser.version() + ' started');

  const suffix = Math.random().toString(36).slice(2, 8);
  const alice = 'alice_' + suffix, bob = 'bob_' + suffix;

  // ---- same origin: the page the gateway serves at / ----
  const a = alicePage = await newPerson(BASE + '/', 'alice');
  ok('page loads from ' + BASE + '/ and shows the login form');
  await enter(a, '#register', alice, PASSWORD);
  ok(alice + ' registered and logged in through the page; WebSocket connected');
  await waitFor(a, 'conversation list with the world room first',
    () => { const f = document.querySelector('#conversations li'); return !!f && f.dataset.conversationId === 'world'; });
  ok('conversation list shows the world room first');

  const b = await newPerson(BASE + '/', 'bob');
  await enter(b, '#register', bob, PASSWORD);
  ok(bob + ' registered and logged in through the page; WebSocket connected');

  const cid = await openChatWith(a, bob);
  ok('alice opened a chat with ' + bob + ' by username (conversation ' + cid + ')');
  await send(a, 'alice', 'hello bob');
  ok('alice sent "hello bob" and it was acknowledged');

  await waitFor(b, "bob's list shows the new chat with preview \"hello bob\" and 1 unread", (id) => {
    const li = document.querySelector(`#conversations li[data-conversation-id="${id}"]`);
    return !!li && li.querySelector('.preview').textContent === 'hello bob' && li.querySelector('.unread').textContent === '1';
  }, cid);
  ok('bob sees the chat appear live in his list, preview "hello bob", unread 1');
  await openFromList(b, cid, alice);
  await hasMessage(b, 'bob', 'hello bob');
  await waitFor(b, "bob's unread count back to 0", (id) =>
    document.querySelector(`#conversations li[data-conversation-id="${id}"] .unread`).textContent === '0', cid);
  ok('bob opened the chat: "hello bob" is there, unread back to 0');
  await send(b, 'bob', 'hi alice');
  ok('bob replied "hi alice"');
  await hasMessage(a, 'alice', 'hi alice');
  ok('alice sees "hi alice" live');

  await a.reload({ timeout: T });
  await waitFor(a, 'alice still logged in after reload', (n) => document.getElementById('me').dataset.username === n, alice);
  if (await a.getAttribute(`#conversations li[data-conversation-id="${cid}"]`, 'class', { timeout: T }) !== 'active') {
    await openFromList(a, cid, bob);
  }
  await waitFor(a, 'history after reload: "hello bob" then "hi alice"', () => {
    const ms = [...document.querySelectorAll('#messages .msg[data-seq]')];
    const texts = ms.map((m) => m.querySelector('.body').textContent);
    const seqs = ms.map((m) => Number(m.dataset.seq));
    const i = texts.indexOf('hello bob'), j = texts.indexOf('hi alice');
    return i >= 0 && j === i + 1 && seqs[j] > seqs[i] && seqs.every((s, k) => k === 0 || s > seqs[k - 1]);
  });
  ok('after a reload alice reads the history: "hello bob" then "hi alice", seqIds in order');

  await openFromList(a, 'world', await a.textContent('#conversations li[data-conversation-id="world"] .name'));
  await waitFor(a, 'world room header shows memberCount >= 2',
    () => Number(document.getElementById('member-count').dataset.count) >= 2);
  ok('world room header shows "' + (await a.textContent('#member-count')) + '"');
  await openFromList(b, 'world', await b.textContent('#conversations li[data-conversation-id="world"] .name'));
  const hi = 'hello world ' + suffix;
  await send(a, 'alice', hi);
  await hasMessage(b, 'bob', hi);
  ok('a message alice sent in the world room appears live for bob');

  await a.click('#logout');
  await waitFor(a, 'login form back after logout', () =>
    getComputedStyle(document.getElementById('login-view')).display !== 'none' &&
    document.getElementById('me').textContent === '' && !sessionStorage.getItem('ringchat.token') &&
    document.getElementById('status').textContent === 'offline');
  const after = await errorText(a);
  if (after) throw new Error('after logout the page shows an error: "' + after + '"');
  ok('alice logged out: the login form is back, the token is gone, no error shown');

  // ---- another origin: the same file, API and WebSocket cross-origin (CORS) ----
  server = await serveElsewhere();
  const other = 'http://127.0.0.1:' + server.address().port;
  const url = other + '/?api=' + encodeURIComponent(BASE);
  const a2 = alicePage = await newPerson(url, 'alice@other-origin');
  const b2 = await newPerson(url, 'bob@other-origin');
  const origin = await a2.evaluate(() => location.origin);
  if (origin === new URL(BASE).origin) throw new Error('the second page is not on another origin (' + origin + ')');
  await enter(a2, '#login', alice, PASSWORD);
  await enter(b2, '#login', bob, PASSWORD);
  ok('from ' + origin + ' alice and bob logged in with #login; WebSockets connected');
  const cid2 = await openChatWith(a2, bob);
  if (cid2 !== cid) throw new Error('opening the chat again gave ' + cid2 + ', not the same conversation ' + cid);
  await openFromList(b2, cid, alice);
  await hasMessage(b2, 'bob', 'hi alice');
  await send(a2, 'alice', 'cross-origin hi');
  await hasMessage(b2, 'bob', 'cross-origin hi');
  ok('cross-origin: same conversation, history loaded, "cross-origin hi" sent and received live');

  if (pageErrors.length) throw new Error('uncaught errors in the page: ' + pageErrors[0]);
}

main().then(() => null, (e) => e).then(async (err) => {
  clearTimeout(watchdog);
  if (alicePage) {
    try { await alicePage.screenshot({ path: SHOT, timeout: 5000 }); console.log('screenshot: ' + SHOT); } catch (e) { /* best effort */ }
  }
  if (server) server.close();
  if (browser) await browser.close().catch(() => {});
  finish(err);
});
