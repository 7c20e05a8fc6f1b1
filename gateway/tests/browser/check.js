// Manual browser check (not part of deploy/test.sh: it needs Chromium and playwright-core).
// A page written against the GoChat client API only, served from another origin (:5173),
// logs in, lists conversations, opens a chat, sends over one WebSocket and receives on
// another, and reads the history, all through CORS, in headless Chromium.
//
//   apt-get install chromium; npm install playwright-core
//   cargo run --release &                                   # ringchat on :8080
//   (cd gateway/tests/browser && python3 -m http.server 5173 --bind 127.0.0.1) &
//   node gateway/tests/browser/check.js                     # prints RESULT: OK
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  await page.goto('http://127.0.0.1:5173/index.html');
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('RESULT'), null, { timeout: 20000 });
  const log = await page.textContent('#log');
  console.log(log);
  await browser.close();
  process.exit(log.includes('RESULT: OK') ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(1); });
