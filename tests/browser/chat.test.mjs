// End-to-end test of the kchat page (web/index.html) in Debian's Chromium,
// driven by playwright-core. Started by tests/browser/run.sh, which runs a
// `kchat dev` and passes its URL.
//
// Two browser contexts (two users, separate cookie jars) register, log in,
// befriend each other, create a room, and each sees the other's messages
// appear live (SSE). A message with <script> and an onerror handler must be
// shown as text and run nothing. Screenshots go to ARTIFACT_DIR.
//
// Environment: KCHAT_URL (base URL, required), ARTIFACT_DIR (screenshots),
// RESULT_FILE (where "passed failed" is written for run.sh).
//
// Every step is one test; once a step fails, the steps depending on it fail
// at once ("skipped: ... failed"), so the counts stay honest and the run short.
import { chromium } from 'playwright-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const BASE = (process.env.KCHAT_URL || '').replace(/\/+$/, '');
const ARTIFACTS = process.env.ARTIFACT_DIR || new URL('./artifacts', import.meta.url).pathname;
const RESULT_FILE = process.env.RESULT_FILE || '';
const STEP_TIMEOUT_MS = 20000;
const WAIT_MS = 10000;

// The page's element ids (the contract with web/index.html).
const SEL = {
  regUserId: '#reg-userId', regUserPw: '#reg-userPw', regEmail: '#reg-email',
  regUserName: '#reg-userName', regSubmit: '#reg-submit',
  loginUserId: '#login-userId', loginUserPw: '#login-userPw', loginSubmit: '#login-submit',
  logout: '#logout',
  statusInput: '#status-input', statusSubmit: '#status-submit',
  friendInput: '#friend-input', friendSubmit: '#friend-submit', friendList: '#friend-list',
  roomName: '#room-name', roomCreate: '#room-create', roomFriends: '#room-friends',
  roomList: '#room-list',
  messageList: '#message-list', messageInput: '#message-input', messageSend: '#message-send',
  connState: '#conn-state', error: '#error', me: '#me',
};

let passed = 0;
let failed = 0;
const failedSteps = new Set();

function log(...a) {
  console.log(`[${(process.uptime()).toFixed(1).padStart(6)}s]`, ...a);
}

// Run one step with a bound; `needs` are steps that must have passed.
async function step(name, needs, fn) {
  const missing = needs.filter((n) => failedSteps.has(n));
  if (missing.length) {
    failed++;
    failedSteps.add(name);
    log(`not ok - ${name} (skipped: ${missing.join(', ')} failed)`);
    return;
  }
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`step timed out after ${STEP_TIMEOUT_MS} ms`)),
          STEP_TIMEOUT_MS);
      }),
    ]);
    passed++;
    log(`ok - ${name}`);
  } catch (e) {
    failed++;
    failedSteps.add(name);
    log(`not ok - ${name}\n    ${String(e && e.stack || e).split('\n').slice(0, 6).join('\n    ')}`);
    await diagnose(name);
  } finally {
    clearTimeout(timer);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const uniq = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const users = [
  { tag: 'alice', id: `alice-${uniq}`, pw: `Pw-${uniq}-alice-secret`, name: 'Alice E2E' },
  { tag: 'bob', id: `bob-${uniq}`, pw: `Pw-${uniq}-bob-secret`, name: 'Bob E2E' },
];
for (const u of users) u.email = `${u.id}@example.com`;

let browser;
const dialogs = [];      // every dialog (alert/confirm/prompt) any page opened
const pageErrors = [];   // uncaught exceptions in the pages
let roomId = '';

async function diagnose(why) {
  for (const u of users) {
    if (!u.page) continue;
    try {
      const file = join(ARTIFACTS, `failure-${u.tag}-${why.replace(/[^a-z0-9]+/gi, '-')}.png`);
      await u.page.screenshot({ path: file, fullPage: true, timeout: 5000 });
      const err = await u.page.locator(SEL.error).textContent({ timeout: 1000 }).catch(() => '?');
      const conn = await u.page.locator(SEL.connState).textContent({ timeout: 1000 }).catch(() => '?');
      log(`    ${u.tag}: #error=${JSON.stringify(err)} #conn-state=${JSON.stringify(conn)} screenshot ${file}`);
    } catch (e) {
      log(`    ${u.tag}: no diagnostics (${e.message})`);
    }
  }
  if (u0Console.length) log(`    console: ${u0Console.slice(-10).join('\n    console: ')}`);
}
const u0Console = [];

// The response of the next request matching method and path, after `action`.
async function responseOf(page, method, pathRe, action) {
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === method &&
      pathRe.test(new URL(r.url()).pathname), { timeout: WAIT_MS }),
    action(),
  ]);
  return resp;
}

async function bodyOf(resp) {
  try { return await resp.json(); } catch { return null; }
}

// A checkbox for friend `id` inside #room-friends: the element carrying
// data-user-id if it is an input, else the input inside it.
async function friendCheckbox(page, id) {
  const el = page.locator(`${SEL.roomFriends} [data-user-id="${id}"]`).first();
  await el.waitFor({ timeout: WAIT_MS });
  const tag = await el.evaluate((n) => n.tagName.toLowerCase());
  return tag === 'input' ? el : el.locator('input[type=checkbox]').first();
}

// The message item (data-seq) whose .text is exactly `text`.
function messageItem(page, text) {
  return page.locator(`${SEL.messageList} [data-seq]`).filter({
    has: page.locator('.text', { hasText: text }),
  });
}

async function expectMessage(page, text, cls) {
  const item = messageItem(page, text).first();
  await item.waitFor({ timeout: WAIT_MS });
  const got = await item.locator('.text').first().textContent();
  assert(got === text, `message text shown as ${JSON.stringify(got)}, want ${JSON.stringify(text)}`);
  const classes = (await item.getAttribute('class')) || '';
  assert(classes.split(/\s+/).includes(cls), `message item class "${classes}", want "${cls}"`);
  const seq = await item.getAttribute('data-seq');
  assert(/^[1-9][0-9]*$/.test(seq || ''), `data-seq "${seq}" is not a positive integer`);
  return Number(seq);
}

async function send(page, text) {
  await page.fill(SEL.messageInput, text);
  const resp = await responseOf(page, 'POST', /^\/api\/rooms\/[^/]+\/messages$/,
    () => page.click(SEL.messageSend));
  assert(resp.status() === 201, `POST messages: ${resp.status()} ${await resp.text()}`);
  return bodyOf(resp);
}

async function main() {
  assert(BASE.startsWith('http'), 'KCHAT_URL is not set');
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  log(`chromium ${browser.version()}, page ${BASE}/`);

  await step('page loads in two browser contexts', [], async () => {
    for (const u of users) {
      u.context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
      u.page = await u.context.newPage();
      u.page.setDefaultTimeout(WAIT_MS);
      u.page.on('dialog', async (d) => {
        dialogs.push(`${u.tag}: ${d.type()} ${d.message()}`);
        await d.dismiss().catch(() => {});
      });
      u.page.on('pageerror', (e) => pageErrors.push(`${u.tag}: ${e.message}`));
      u.page.on('console', (m) => { if (m.type() === 'error') u0Console.push(`${u.tag}: ${m.text()}`); });
      const resp = await u.page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
      assert(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
      await u.page.locator(SEL.regUserId).waitFor({ state: 'visible' });
      await u.page.locator(SEL.loginUserId).waitFor({ state: 'visible' });
    }
  });

  await step('both users register', ['page loads in two browser contexts'], async () => {
    for (const u of users) {
      const p = u.page;
      await p.fill(SEL.regUserId, u.id);
      await p.fill(SEL.regUserPw, u.pw);
      await p.fill(SEL.regEmail, u.email);
      await p.fill(SEL.regUserName, u.name);
      const resp = await responseOf(p, 'POST', /^\/api\/users$/, () => p.click(SEL.regSubmit));
      assert(resp.status() === 201, `POST /api/users: ${resp.status()} ${await resp.text()}`);
    }
  });

  await step('both users log in (HttpOnly SameSite=Strict cookie)', ['both users register'], async () => {
    for (const u of users) {
      const p = u.page;
      await p.fill(SEL.loginUserId, u.id);
      await p.fill(SEL.loginUserPw, u.pw);
      const resp = await responseOf(p, 'POST', /^\/api\/login$/, () => p.click(SEL.loginSubmit));
      assert(resp.status() === 200, `POST /api/login: ${resp.status()} ${await resp.text()}`);
      const body = await bodyOf(resp);
      assert(body && !('sessionId' in body), 'the login body carries a sessionId');
      await p.locator(SEL.me).filter({ hasText: u.id }).first().waitFor({ timeout: WAIT_MS });
      const cookies = await u.context.cookies();
      const c = cookies.find((k) => k.name === 'kchat_session');
      assert(c, `no kchat_session cookie (cookies: ${cookies.map((k) => k.name).join(',')})`);
      assert(c.httpOnly, 'kchat_session is not HttpOnly');
      assert(c.sameSite === 'Strict', `kchat_session SameSite=${c.sameSite}`);
      const visible = await p.evaluate(() => document.cookie);
      assert(!visible.includes('kchat_session'), 'scripts can read kchat_session');
      const html = await p.content();
      assert(!html.includes(c.value), 'the session id appears in the page');
    }
  });

  await step('status change', ['both users log in (HttpOnly SameSite=Strict cookie)'], async () => {
    const p = users[1].page;
    await p.fill(SEL.statusInput, 'testing kchat');
    const resp = await responseOf(p, 'PUT', /^\/api\/status$/, () => p.click(SEL.statusSubmit));
    assert(resp.status() === 200, `PUT /api/status: ${resp.status()} ${await resp.text()}`);
  });

  await step('they befriend each other', ['both users log in (HttpOnly SameSite=Strict cookie)'], async () => {
    for (const [u, other] of [[users[0], users[1]], [users[1], users[0]]]) {
      const p = u.page;
      await p.fill(SEL.friendInput, other.id);
      const resp = await responseOf(p, 'POST', /^\/api\/friends$/, () => p.click(SEL.friendSubmit));
      assert(resp.status() === 200, `POST /api/friends: ${resp.status()} ${await resp.text()}`);
      await p.locator(`${SEL.friendList} [data-user-id="${other.id}"]`).first().waitFor({ timeout: WAIT_MS });
    }
  });

  await step('alice creates a room with bob; it appears live for both',
    ['they befriend each other'], async () => {
      const [a, b] = users;
      const p = a.page;
      await p.fill(SEL.roomName, 'E2E room');
      const box = await friendCheckbox(p, b.id);
      await box.check();
      const resp = await responseOf(p, 'POST', /^\/api\/rooms$/, () => p.click(SEL.roomCreate));
      assert(resp.status() === 201, `POST /api/rooms: ${resp.status()} ${await resp.text()}`);
      const body = await bodyOf(resp);
      roomId = body && body.roomId;
      assert(roomId, `no roomId in ${JSON.stringify(body)}`);
      // alice's list, and bob's without any reload (the `room` event)
      for (const u of users)
        await u.page.locator(`${SEL.roomList} [data-room-id="${roomId}"]`).first().waitFor({ timeout: WAIT_MS });
    });

  const roomStep = 'alice creates a room with bob; it appears live for both';
  await step('each sees the other\'s message live', [roomStep], async () => {
    const [a, b] = users;
    for (const u of users)
      await u.page.locator(`${SEL.roomList} [data-room-id="${roomId}"]`).first().click();
    const m1 = `hello bob from alice ${uniq}`;
    const r1 = await send(a.page, m1);
    assert(r1 && r1.writerId === a.id, `chat answer: ${JSON.stringify(r1)}`);
    await expectMessage(a.page, m1, 'mine');
    await expectMessage(b.page, m1, 'theirs');
    const m2 = `hi alice, bob here ${uniq}`;
    await send(b.page, m2);
    await expectMessage(b.page, m2, 'mine');
    await expectMessage(a.page, m2, 'theirs');
    // order: both lists show m1 before m2
    for (const u of users) {
      const s1 = Number(await messageItem(u.page, m1).first().getAttribute('data-seq'));
      const s2 = Number(await messageItem(u.page, m2).first().getAttribute('data-seq'));
      assert(s1 < s2, `${u.tag}: seq of the first message ${s1} is not below the second's ${s2}`);
    }
  });

  await step('a <script> message shows as text and runs nothing', [roomStep], async () => {
    const [a, b] = users;
    const evil = `<script>alert("xss-script")</script><img src=x onerror="alert('xss-img');window.__xss=1"> & <b>bold</b> ${uniq}`;
    await send(a.page, evil);
    await expectMessage(b.page, evil, 'theirs');
    await expectMessage(a.page, evil, 'mine');
    await b.page.waitForTimeout(500);   // let an injected handler fire if it could
    for (const u of users) {
      const injected = await u.page.evaluate(() => ({
        xss: window.__xss,
        imgs: document.querySelectorAll('#message-list img, #message-list script, #message-list b').length,
      }));
      assert(injected.xss === undefined, `${u.tag}: the onerror handler ran`);
      assert(injected.imgs === 0, `${u.tag}: the message was parsed as HTML (${injected.imgs} elements)`);
    }
    assert(dialogs.length === 0, `dialogs opened: ${dialogs.join('; ')}`);
  });

  await step('connection state and no page errors', ['both users log in (HttpOnly SameSite=Strict cookie)'], async () => {
    for (const u of users) {
      const t = (await u.page.locator(SEL.connState).textContent()) || '';
      assert(t.trim() !== '', `${u.tag}: #conn-state is empty`);
    }
    assert(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join('; ')}`);
  });

  await step('screenshot artifact', ['page loads in two browser contexts'], async () => {
    for (const u of users) {
      const file = join(ARTIFACTS, `chat-${u.tag}.png`);
      await u.page.screenshot({ path: file, fullPage: true });
      log(`    screenshot ${file}`);
    }
  });

  await step('logout clears the session', ['both users log in (HttpOnly SameSite=Strict cookie)'], async () => {
    const u = users[0];
    const resp = await responseOf(u.page, 'POST', /^\/api\/logout$/, () => u.page.click(SEL.logout));
    assert(resp.status() === 200, `POST /api/logout: ${resp.status()} ${await resp.text()}`);
    const deadline = Date.now() + WAIT_MS;
    let c;
    do {
      c = (await u.context.cookies()).find((k) => k.name === 'kchat_session' && k.value !== '');
      if (c) await u.page.waitForTimeout(100);
    } while (c && Date.now() < deadline);
    assert(!c, 'kchat_session still set after logout');
    const r = await u.context.request.get(`${BASE}/api/friends`);
    assert(r.status() === 401, `GET /api/friends after logout: ${r.status()}`);
  });
}

let crashed = false;
try {
  await main();
} catch (e) {
  crashed = true;
  failed++;
  log(`not ok - harness: ${e && e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
if (RESULT_FILE) writeFileSync(RESULT_FILE, `${passed} ${failed}\n`);
// run.sh prints the one summary line; alone, this script prints its own
console.log(RESULT_FILE ? `chat.test.mjs: ${passed} ok, ${failed} not ok`
  : `${passed} passed, ${failed} failed`);
process.exit(failed === 0 && !crashed ? 0 : 1);
