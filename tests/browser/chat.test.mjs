// End-to-end test of the kchat page (web/index.html) in Debian's Chromium,
// driven by playwright-core. Started by tests/browser/run.sh, which runs a
// `kchat dev` and passes its URL.
//
// Two browser contexts (two users, separate cookie jars) register, log in,
// befriend each other, create a room, and each sees the other's messages
// appear live (SSE). A message with <script> and an onerror handler must be
// shown as text and run nothing. Protocol v1.1: a third user (carol) comes
// online and alice's friend dot turns green live (presence); an unread badge
// appears in both of bob's tabs and clears when he reads the room in one;
// alice sees "Seen by Bob"; carol, invited, sees the room and its history;
// after leaving she receives nothing more, and a stale tab of hers opening
// the room shows 403 NOT_A_MEMBER; closing her page turns her
// "last seen". Screenshots go to ARTIFACT_DIR.
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
async function step(name, needs, fn, timeoutMs = STEP_TIMEOUT_MS) {
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
        timer = setTimeout(() => rej(new Error(`step timed out after ${timeoutMs} ms`)),
          timeoutMs);
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
// carol logs in later (presence, invite, leave); bob2 is bob's second tab
const carol = { tag: 'carol', id: `carol-${uniq}`, pw: `Pw-${uniq}-carol-secret`, name: 'Carol E2E' };
for (const u of [...users, carol]) u.email = `${u.id}@example.com`;
const bob2 = { tag: 'bob2' };
// carol's second tab, cut off from live events: it still lists a room she left
const carol2 = { tag: 'carol2', expectErrors: true };
// the messages of the first room (carol, invited later, must see them all)
const M1 = `hello bob from alice ${uniq}`;
const M2 = `hi alice, bob here ${uniq}`;
const EVIL = `<script>alert("xss-script")</script><img src=x onerror="alert('xss-img');window.__xss=1"> & <b>bold</b> ${uniq}`;

let browser;
const dialogs = [];      // every dialog (alert/confirm/prompt) any page opened
const pageErrors = [];   // uncaught exceptions in the pages
let roomId = '';
let room2Id = '';
const apiErrors = [];    // every /api/ answer >= 400 a page received

async function diagnose(why) {
  for (const u of [...users, carol, bob2, carol2]) {
    if (!u.page || u.page.isClosed()) continue;
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

// A new page in `u.context` with the same listeners as the first ones.
async function newPage(u, context) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('dialog', async (d) => {
    dialogs.push(`${u.tag}: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => pageErrors.push(`${u.tag}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') u0Console.push(`${u.tag}: ${m.text()}`); });
  page.on('response', (r) => {
    const path = new URL(r.url()).pathname;
    const method = r.request().method();
    // the page's start-up session check answers 401 before anyone logged in
    if (method === 'GET' && path === '/api/friends' && r.status() === 401) return;
    if (u.expectErrors) return;
    if (path.startsWith('/api/') && r.status() >= 400)
      apiErrors.push(`${u.tag}: ${method} ${path} -> ${r.status()}`);
  });
  return page;
}

// Poll `cond` (async, returns truthy when met) every 100 ms for at most `ms`.
async function until(what, cond, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await cond();
    if (last) return last;
    if (Date.now() >= deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function friendItem(page, id) {
  return page.locator(`${SEL.friendList} li[data-user-id="${id}"]`).first();
}

function roomItem(page, id) {
  return page.locator(`${SEL.roomList} li[data-room-id="${id}"]`).first();
}

// The friend item of `id` on `page` shows online (or not) within `ms`.
async function expectOnline(page, id, online, ms = WAIT_MS) {
  const item = friendItem(page, id);
  await until(`friend ${id} shown ${online ? 'online' : 'offline'}`, async () =>
    (await item.getAttribute('data-online').catch(() => null)) === String(online), ms);
  const text = (await item.locator('.friend-presence').textContent()) || '';
  if (online) assert(text === 'online', `friend ${id}: presence text ${JSON.stringify(text)}`);
  else assert(/^(offline|last seen .+)$/.test(text), `friend ${id}: presence text ${JSON.stringify(text)}`);
  return text;
}

// The room item's unread count (data-unread) on `page` becomes `n`; its badge shows it.
async function expectUnread(page, id, n) {
  const item = roomItem(page, id);
  await until(`room ${id} unread ${n}`, async () =>
    (await item.getAttribute('data-unread').catch(() => null)) === String(n));
  const badge = item.locator('.unread-dot');
  if (n > 0) {
    assert(await badge.isVisible(), `room ${id}: unread badge not visible`);
    const t = await badge.textContent();
    assert(t === String(n), `room ${id}: badge shows ${JSON.stringify(t)}, want "${n}"`);
  } else {
    assert(!(await badge.isVisible()), `room ${id}: unread badge still visible`);
  }
}

async function openRoomIn(page, id) {
  await roomItem(page, id).locator('.room-btn').click();
  await page.locator(`${SEL.messageList}[data-room-id="${id}"]`).waitFor({ state: 'attached' });   // an empty list has no size
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
      u.page = await newPage(u, u.context);
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
    const m1 = M1;
    const r1 = await send(a.page, m1);
    assert(r1 && r1.writerId === a.id, `chat answer: ${JSON.stringify(r1)}`);
    await expectMessage(a.page, m1, 'mine');
    await expectMessage(b.page, m1, 'theirs');
    const m2 = M2;
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
    const evil = EVIL;
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

  // ---------- protocol v1.1 ----------

  const loginStep = 'both users log in (HttpOnly SameSite=Strict cookie)';
  const friendsStep = 'they befriend each other';
  const presenceStep = 'presence: friends see each other online; carol coming online turns alice\'s dot green live';
  await step(presenceStep, [friendsStep], async () => {
    const [a, b] = users;
    // alice and bob have had their event streams open since logging in
    await expectOnline(a.page, b.id, true);
    await expectOnline(b.page, a.id, true);
    // carol registers on the page but logs in through the API only: no event
    // stream yet, so she is offline while she and alice befriend each other
    carol.context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    carol.page = await newPage(carol, carol.context);
    const p = carol.page;
    const r0 = await p.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    assert(r0 && r0.status() === 200, `GET / answered ${r0 && r0.status()}`);
    await p.fill(SEL.regUserId, carol.id);
    await p.fill(SEL.regUserPw, carol.pw);
    await p.fill(SEL.regEmail, carol.email);
    await p.fill(SEL.regUserName, carol.name);
    const r1 = await responseOf(p, 'POST', /^\/api\/users$/, () => p.click(SEL.regSubmit));
    assert(r1.status() === 201, `POST /api/users: ${r1.status()} ${await r1.text()}`);
    const r2 = await carol.context.request.post(`${BASE}/api/login`,
      { data: { userId: carol.id, userPw: carol.pw }, timeout: WAIT_MS });
    assert(r2.status() === 200, `POST /api/login (API): ${r2.status()} ${await r2.text()}`);
    const r3 = await carol.context.request.post(`${BASE}/api/friends`,
      { data: { friendId: [a.id] }, timeout: WAIT_MS });
    assert(r3.status() === 200, `POST /api/friends (API): ${r3.status()} ${await r3.text()}`);
    await a.page.fill(SEL.friendInput, carol.id);
    const r4 = await responseOf(a.page, 'POST', /^\/api\/friends$/, () => a.page.click(SEL.friendSubmit));
    assert(r4.status() === 200, `POST /api/friends: ${r4.status()} ${await r4.text()}`);
    const before = await expectOnline(a.page, carol.id, false);
    assert(before === 'offline', `carol, never online, shown as ${JSON.stringify(before)}`);
    // carol opens the page (already signed in): her stream opens
    const opened = Date.now();
    await p.reload({ waitUntil: 'domcontentloaded' });
    await p.locator(SEL.me).filter({ hasText: carol.id }).first().waitFor();
    await expectOnline(a.page, carol.id, true);
    log(`    alice saw carol come online ${Date.now() - opened} ms after carol's page opened`);
    await expectOnline(p, a.id, true);
  });

  const roomStep2 = 'unread: alice writes in a room bob is not viewing; a badge shows in both of bob\'s tabs';
  await step(roomStep2, [roomStep], async () => {
    const [a, b] = users;
    bob2.page = await newPage(bob2, b.context);
    const r0 = await bob2.page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    assert(r0 && r0.status() === 200, `GET / (second tab) answered ${r0 && r0.status()}`);
    await bob2.page.locator(SEL.me).filter({ hasText: b.id }).first().waitFor();
    await roomItem(bob2.page, roomId).waitFor();
    await expectUnread(bob2.page, roomId, 0);
    // bob's first tab keeps the first room open; alice makes a second one
    await a.page.fill(SEL.roomName, 'Unread E2E');
    const box = await friendCheckbox(a.page, b.id);
    await box.check();
    const resp = await responseOf(a.page, 'POST', /^\/api\/rooms$/, () => a.page.click(SEL.roomCreate));
    assert(resp.status() === 201, `POST /api/rooms: ${resp.status()} ${await resp.text()}`);
    room2Id = ((await bodyOf(resp)) || {}).roomId;
    assert(room2Id, 'no roomId for the second room');
    await a.page.locator(`${SEL.messageList}[data-room-id="${room2Id}"]`).waitFor({ state: 'attached' });
    for (const p of [b.page, bob2.page]) await roomItem(p, room2Id).waitFor();
    await send(a.page, `unread test ${uniq}`);
    await expectMessage(a.page, `unread test ${uniq}`, 'mine');
    for (const p of [b.page, bob2.page]) await expectUnread(p, room2Id, 1);
    // the first room, open in bob's first tab, has nothing unread
    await expectUnread(b.page, roomId, 0);
  });

  const readStep = 'unread: bob opens the room in one tab; the badge clears in both';
  await step(readStep, [roomStep2], async () => {
    const b = users[1];
    await b.page.bringToFront();
    const resp = await responseOf(b.page, 'POST', new RegExp(`^/api/rooms/${room2Id}/read$`),
      () => openRoomIn(b.page, room2Id));
    assert(resp.status() === 200, `POST read: ${resp.status()} ${await resp.text()}`);
    const body = await bodyOf(resp);
    assert(body && body.readSeq === 1, `read answer ${JSON.stringify(body)}, want readSeq 1`);
    await expectMessage(b.page, `unread test ${uniq}`, 'theirs');
    await expectUnread(b.page, room2Id, 0);
    await expectUnread(bob2.page, room2Id, 0);   // from the read event (readerId = bob)
  });

  await step('seen by: alice sees "Seen by Bob E2E" under her message', [readStep], async () => {
    const [a, b] = users;
    const seen = messageItem(a.page, `unread test ${uniq}`).first().locator('.seen');
    await seen.waitFor();
    const t = (await seen.textContent()) || '';
    assert(t === `Seen by ${b.name}`, `seen-by text ${JSON.stringify(t)}, want "Seen by ${b.name}"`);
    const readers = await seen.getAttribute('data-readers');
    assert(readers === b.id, `data-readers ${JSON.stringify(readers)}, want bob only`);
    // bob's own view says nothing about himself
    const own = await b.page.locator(`${SEL.messageList} .seen`).count();
    assert(own === 0, `bob sees ${own} "seen by" lines in a room only he and the writer are in`);
  });

  const inviteStep = 'invite: alice invites carol; carol sees the room and its whole history';
  await step(inviteStep, [roomStep, presenceStep], async () => {
    const [a, b] = users;
    await openRoomIn(a.page, roomId);
    const names = (await a.page.locator('#room-participants').textContent()) || '';
    assert(names.includes(b.name) && !names.includes(b.id),
      `alice's participant line ${JSON.stringify(names)} does not name bob by his name`);
    await a.page.click('#room-invite');
    const box = a.page.locator(`#invite-friends input[data-user-id="${carol.id}"]`);
    await box.waitFor();
    const bobBox = await a.page.locator(`#invite-friends input[data-user-id="${b.id}"]`).count();
    assert(bobBox === 0, 'bob, already in the room, is offered for invitation');
    await box.check();
    const resp = await responseOf(a.page, 'POST', new RegExp(`^/api/rooms/${roomId}/members$`),
      () => a.page.click('#invite-submit'));
    assert(resp.status() === 200, `POST members: ${resp.status()} ${await resp.text()}`);
    const body = await bodyOf(resp);
    assert(body && Array.isArray(body.participants) && body.participants.includes(carol.id),
      `invite answer ${JSON.stringify(body)}`);
    await until('alice\'s participant line names carol', async () =>
      ((await a.page.locator('#room-participants').textContent()) || '').includes(carol.name));
    // bob (not carol's friend) sees her id in the room list, live (members event)
    await until('bob\'s room list shows carol in the first room', async () =>
      ((await roomItem(b.page, roomId).locator('.room-participants').textContent()) || '').includes(carol.id));
    // carol: the room appears live (room event), nothing unread, whole history
    const c = carol.page;
    await roomItem(c, roomId).waitFor();
    await expectUnread(c, roomId, 0);
    await openRoomIn(c, roomId);
    await expectMessage(c, M1, 'theirs');
    await expectMessage(c, M2, 'theirs');
    await expectMessage(c, EVIL, 'theirs');
    const n = await c.locator(`${SEL.messageList} [data-seq]`).count();
    assert(n === 3, `carol sees ${n} messages in the first room, want 3`);
    const seqs = await c.locator(`${SEL.messageList} [data-seq]`).evaluateAll(
      (els) => els.map((e) => Number(e.dataset.seq)));
    assert(seqs.join(',') === '1,2,3', `carol's seqs ${seqs.join(',')}, want 1,2,3`);
  });

  const leaveStep = 'leave: carol leaves; the room is gone for her and alice\'s next message does not reach her';
  await step(leaveStep, [inviteStep], async () => {
    const [a, b] = users;
    const c = carol.page;
    // a second tab of carol's that gets no live events keeps listing the room
    carol2.page = await newPage(carol2, carol.context);
    await carol2.page.route('**/api/events', (route) => route.abort());
    await carol2.page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    await roomItem(carol2.page, roomId).waitFor();
    await c.click('#room-leave');
    const resp = await responseOf(c, 'DELETE', new RegExp(`^/api/rooms/${roomId}/members/me$`),
      () => c.click('#room-leave-confirm'));
    assert(resp.status() === 200, `DELETE members/me: ${resp.status()} ${await resp.text()}`);
    await roomItem(c, roomId).waitFor({ state: 'detached' });
    const title = await c.locator('#room-title').textContent();
    assert(title === 'No room open', `carol's room view still shows ${JSON.stringify(title)}`);
    await until('alice\'s participant line drops carol', async () =>
      !((await a.page.locator('#room-participants').textContent()) || '').includes(carol.name));
    // bob watches the room: his copy of the next message is the sync point
    await openRoomIn(b.page, roomId);
    const m4 = `after carol left ${uniq}`;
    await send(a.page, m4);
    await expectMessage(b.page, m4, 'theirs');
    await c.waitForTimeout(1000);   // let a wrongly routed event arrive
    const leak = await c.evaluate((t) => document.body.textContent.includes(t), m4);
    assert(!leak, 'carol\'s page shows the message sent after she left');
    assert(await roomItem(c, roomId).count() === 0, 'the room came back into carol\'s list');
    const h = await carol.context.request.get(`${BASE}/api/rooms/${roomId}/messages`, { timeout: WAIT_MS });
    const hb = await h.json().catch(() => null);
    assert(h.status() === 403 && hb && hb.errorCode === 'NOT_A_MEMBER',
      `carol's history after leaving: ${h.status()} ${JSON.stringify(hb)}, want 403 NOT_A_MEMBER`);
  });

  await step('errors: a stale tab opening a room carol left says 403 NOT_A_MEMBER and drops the room',
    [leaveStep], async () => {
      const p = carol2.page;
      const resp = await responseOf(p, 'GET', new RegExp(`^/api/rooms/${roomId}/messages$`),
        () => roomItem(p, roomId).locator('.room-btn').click());
      assert(resp.status() === 403, `history in the stale tab: ${resp.status()}, want 403`);
      const banner = p.locator(SEL.error);
      await banner.waitFor();
      const t = (await banner.textContent()) || '';
      assert(t.includes('NOT_A_MEMBER') && /not a member/i.test(t), `error banner ${JSON.stringify(t)}`);
      await roomItem(p, roomId).waitFor({ state: 'detached' });
      await p.close();
    });

  await step('no failed API calls, dialogs or page errors in the v1.1 steps', [loginStep], async () => {
    assert(apiErrors.length === 0, `API errors: ${apiErrors.join('; ')}`);
    assert(dialogs.length === 0, `dialogs opened: ${dialogs.join('; ')}`);
    assert(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join('; ')}`);
    for (const u of [...users, carol, bob2]) {
      if (!u.page || u.page.isClosed()) continue;
      const e = await u.page.locator(SEL.error).isVisible();
      assert(!e, `${u.tag}: error banner ${JSON.stringify(await u.page.locator(SEL.error).textContent())}`);
    }
  });

  // Spec: followers learn within 20 s of the last stream closing cleanly.
  await step('presence: carol closes her page; alice sees her offline with "last seen"', [presenceStep], async () => {
    const a = users[0];
    const closed = Date.now();
    await carol.page.close();
    const text = await expectOnline(a.page, carol.id, false, 25000);
    assert(/^last seen .+/.test(text), `after going offline carol shows ${JSON.stringify(text)}`);
    log(`    alice saw carol go offline ${Date.now() - closed} ms after carol's page closed`);
  }, 30000);

  await step('screenshot artifact', ['page loads in two browser contexts'], async () => {
    for (const u of [...users, bob2]) {
      if (!u.page || u.page.isClosed()) continue;
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
