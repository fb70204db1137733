// The clinic booking page in Debian's headless Chromium, against a running
// `yilian serve` on the example consortium (started by console_booking_test.py,
// which passes its address in YILIAN_URL).
//
// A clinic user logs in, searches CT-HEAD-PLAIN slots at tertiary hospitals
// over 14 days, loses a race for a slot (another clinic books it first: the
// page says so and refreshes), books the next one with a double click (one
// booking), and — while this script acts as the tertiary hospital's HIS
// through the REST API — sees the booking go BOOKED -> CHECKED_IN -> PERFORMED
// without reloading. Then another clinic logs in and must not see it.
//
// playwright-core only drives the browser; it never downloads one.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { chromium } from 'playwright-core';

const BASE = process.env.YILIAN_URL;
const SHOT = process.env.YILIAN_SCREENSHOT;
const CHROMIUM = process.env.YILIAN_CHROMIUM || '/usr/bin/chromium';
const CLINIC = 'dev-dc-chc-user-token';
const OTHER_CLINIC = 'dev-xz-thc-user-token';
const TERTIARY_HIS = 'dev-zs-tertiary-his-token';
const STEP_TIMEOUT = 10_000;  // the page polls every 2 s

if (!BASE || !SHOT) {
  console.error('booking.mjs: set YILIAN_URL (http://host:port of yilian serve) and YILIAN_SCREENSHOT (a .png path)');
  process.exit(2);
}

const started = Date.now();
function step(what) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${what}`);
}

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

// The test driver's own HTTP calls (a hospital system, not the browser).
async function call(method, path, token, body) {
  const headers = { Authorization: 'Bearer ' + token, 'Idempotency-Key': randomUUID() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

async function expectCall(method, path, token, body, status) {
  const r = await call(method, path, token, body);
  check(r.status === status, `${method} ${path}: expected ${status}, got ${r.status}: ${r.text}`);
  return r.json;
}

function isoDate(d) {
  return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
}

async function login(page, token, hospitalName) {
  await page.goto(BASE + '/console');
  check(new URL(page.url()).pathname === '/console/', '/console redirects to /console/ (at ' + page.url() + ')');
  await page.getByLabel('访问令牌').fill(token);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.locator('#who').filter({ hasText: hospitalName }).waitFor({ timeout: STEP_TIMEOUT });
  await page.locator('#mine-updated').filter({ hasText: /\d\d:\d\d:\d\d/ }).waitFor({ timeout: STEP_TIMEOUT });
}

async function waitForState(page, bookingId, state, zh) {
  const row = page.locator(`#mine tr[data-booking="${bookingId}"][data-state="${state}"]`);
  await row.waitFor({ timeout: STEP_TIMEOUT });
  const text = await row.locator('.state').innerText();
  check(text.includes(zh) && text.includes(state), `state cell shows ${zh} and ${state} (it shows ${JSON.stringify(text)})`);
}

const profile = mkdtempSync(join(tmpdir(), 'yilian-console-chromium-'));
let context;
let exitCode = 0;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 768 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const browserErrors = [];
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => browserErrors.push(String(e)));
  // Chromium logs every 4xx as "Failed to load resource"; the 409 of the lost
  // race is expected, so only script errors count.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) browserErrors.push(m.text());
  });

  step('log in as the dc-chc clinic user');
  await login(page, CLINIC, '东城街道社区卫生服务中心');
  check(await page.evaluate(() => sessionStorage.getItem('yilian.console.token')) === CLINIC, 'token kept in sessionStorage');

  step('search CT-HEAD-PLAIN at tertiary hospitals over 14 days');
  await page.getByLabel('检查项目').selectOption('CT-HEAD-PLAIN');
  await page.getByLabel('医院等级').selectOption('TERTIARY');
  // From tomorrow, 14 days: slots come from "now", so no weekday is assumed,
  // and none of them can start (and turn un-bookable) while the test runs.
  const today = new Date();
  const first = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 1);
  const last = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 14);
  await page.getByLabel('开始日期').fill(isoDate(first));
  await page.getByLabel('结束日期（含）').fill(isoDate(last));
  await page.getByRole('button', { name: '查找', exact: true }).click();
  const rows = page.locator('#slots tbody tr');
  await rows.first().waitFor();
  const count = await rows.count();
  check(count > 1, `more than one free slot in 14 days (got ${count})`);
  for (const h of await page.locator('#slots tbody tr td:nth-child(2)').allInnerTexts()) {
    check(h === '中山市人民医院', 'tier TERTIARY shows only the tertiary hospital, not ' + h);
  }
  const times = await page.locator('#slots tbody tr td:first-child').allInnerTexts();
  check(times.every((t, i) => i === 0 || times[i - 1] <= t), 'slots earliest first: ' + times.slice(0, 5).join(', '));
  check(times[0] >= isoDate(first) && times[times.length - 1] < isoDate(last) + '~', 'slots within the range: ' + times[0]);
  await page.getByText(/找到 \d+ 个空闲时段/).waitFor();

  step('choose the first slot; another clinic books it first');
  const stolen = await rows.first().getAttribute('data-slot');
  await rows.first().getByRole('button', { name: '选择此时段' }).click();
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'mrn',
        'choosing a slot moves the focus to the MRN field');
  const theirs = await expectCall('POST', '/api/v1/bookings', OTHER_CLINIC, {
    slot_id: stolen,
    patient: { name: { hanzi: '李四' }, birth_date: '1960-02-02', sex: 'SEX_FEMALE' },
    identifiers: [{ system: 'urn:yilian:id:xz-thc:mrn', value: 'XZ-0001' }],
  }, 201);
  await page.getByLabel('病历号').fill('DC-000123');
  await page.getByLabel('患者姓名').fill('张三');
  await page.getByLabel('出生日期').fill('1958-07-15');
  await page.getByLabel('男', { exact: true }).check();
  await page.getByRole('button', { name: '确认预约' }).click();
  await page.locator('#book-result.taken').filter({ hasText: '该时段已被预约 / Slot already taken' }).waitFor();
  await page.getByText('空闲时段已刷新').waitFor();
  check(await page.locator(`#slots tbody tr[data-slot="${stolen}"]`).count() === 0, 'the taken slot left the list');

  step('book the new first slot with a double click');
  const slotId = await rows.first().getAttribute('data-slot');
  await rows.first().getByRole('button', { name: '选择此时段' }).click();
  await page.getByLabel('病历号').fill('DC-000123');
  await page.getByLabel('患者姓名').fill('张三');
  await page.getByLabel('出生日期').fill('1958-07-15');
  await page.getByLabel('男', { exact: true }).check();
  await page.getByRole('button', { name: '确认预约' }).dblclick();
  const ok = page.locator('#book-result.ok');
  await ok.filter({ hasText: '预约成功' }).waitFor();
  const bookingId = await ok.getAttribute('data-booking');
  check(bookingId && bookingId.startsWith('bk-'), 'booking id shown: ' + bookingId);
  const mine = (await expectCall('GET', '/api/v1/bookings', CLINIC, undefined, 200)).bookings;
  check(mine.length === 1 && mine[0].id === bookingId, `a double click booked once (dc-chc has ${mine.length} booking(s))`);
  check(`${mine[0].equipment_id}.${mine[0].start.slice(0, 16).replace(/[-T:]/g, '')}.${mine[0].exam_code}` === slotId,
        'the booking is for the chosen slot ' + slotId);
  check(mine[0].patient.name.hanzi === '张三' && mine[0].patient.sex === 'SEX_MALE' &&
        mine[0].identifiers.some((i) => i.system === 'urn:yilian:id:dc-chc:mrn' && i.value === 'DC-000123'),
        'patient and MRN as entered: ' + JSON.stringify([mine[0].patient, mine[0].identifiers]));
  await waitForState(page, bookingId, 'BOOKED', '已预约');
  check(await page.locator('#mine tbody tr').count() === 1, 'dc-chc sees exactly its own booking');

  step('the tertiary hospital checks the patient in (REST, as zs-tertiary-his)');
  await expectCall('POST', `/api/v1/bookings/${bookingId}/check-in`, TERTIARY_HIS, {}, 200);
  await waitForState(page, bookingId, 'CHECKED_IN', '已到检');
  await page.getByText(new RegExp(`预约 ${bookingId} 状态变为 已到检`)).waitFor();

  step('the tertiary hospital performs the exam');
  await expectCall('POST', `/api/v1/bookings/${bookingId}/perform`, TERTIARY_HIS, {}, 200);
  await waitForState(page, bookingId, 'PERFORMED', '已检查');
  check(await page.locator(`#mine tr[data-booking="${bookingId}"] button.cancel`).count() === 0,
        'no cancel button once performed');

  mkdirSync(dirname(SHOT), { recursive: true });
  await page.screenshot({ path: SHOT });
  step('screenshot: ' + SHOT);

  step('the detail view shows the history');
  await page.locator(`#mine tr[data-booking="${bookingId}"]`).getByRole('button', { name: '详情' }).click();
  const history = page.locator('#detail-history tbody tr');
  await page.locator('#detail[open]').waitFor();
  await page.locator('#detail-history tbody tr[data-state="PERFORMED"]').waitFor();
  const states = await history.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-state')));
  check(JSON.stringify(states) === JSON.stringify(['BOOKED', 'CHECKED_IN', 'PERFORMED']), 'history ' + states.join(' -> '));
  const detailShot = SHOT.replace(/\.png$/, '-detail.png');
  await page.screenshot({ path: detailShot });
  step('screenshot: ' + detailShot);
  await page.keyboard.press('Escape');
  await page.locator('#detail[open]').waitFor({ state: 'detached' });

  step('the English labels');
  await page.getByRole('button', { name: 'Switch language / 切换语言' }).click();
  await page.getByRole('heading', { name: 'Yilian · Exam booking' }).waitFor();
  await page.getByRole('heading', { name: "Our clinic's bookings" }).waitFor();
  await page.locator('#search-status').filter({ hasText: /free slot\(s\), earliest first/ }).waitFor();
  await page.locator('#book-result').filter({ hasText: /^Booked: / }).waitFor();
  const stateText = await page.locator(`#mine tr[data-booking="${bookingId}"] .state`).innerText();
  check(stateText.includes('已检查') && stateText.includes('PERFORMED'), 'the state shows both languages: ' + stateText);
  const englishShot = SHOT.replace(/\.png$/, '-en.png');
  await page.screenshot({ path: englishShot });
  step('screenshot: ' + englishShot);
  await page.getByRole('button', { name: 'Switch language / 切换语言' }).click();
  await page.getByRole('heading', { name: '本机构的预约' }).waitFor();

  step('log out');
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.getByLabel('访问令牌').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('yilian.console.token')) === null, 'log-out forgets the token');
  check(await page.locator('#mine tbody tr').count() === 0, 'log-out clears the bookings from the page');

  step('another clinic (xz-thc) logs in: its booking, not dc-chc\'s');
  const other = await context.newPage();
  other.on('pageerror', (e) => browserErrors.push(String(e)));
  await login(other, OTHER_CLINIC, '西镇卫生院');
  await other.locator(`#mine tr[data-booking="${theirs.id}"]`).waitFor();
  check(await other.locator(`#mine tr[data-booking="${bookingId}"]`).count() === 0, "xz-thc does not see dc-chc's booking");
  check(await other.locator('#mine tbody tr').count() === 1, 'xz-thc sees only its own booking');
  await expectCall('GET', `/api/v1/bookings/${bookingId}`, OTHER_CLINIC, undefined, 404);

  step('a bad token is refused on the page');
  await other.getByRole('button', { name: '退出登录' }).click();
  await other.getByLabel('访问令牌').fill('not-a-token');
  await other.getByRole('button', { name: '登录', exact: true }).click();
  await other.getByText('令牌无效，请检查后重试。').waitFor();
  check(await other.locator('#notice').isHidden(), 'a refused log-in is not reported as an expired session');

  check(browserErrors.length === 0, 'no script errors in the page: ' + browserErrors.join('; '));
  step('passed');
} catch (e) {
  exitCode = 1;
  console.error(e && e.stack ? e.stack : String(e));
  if (context) {
    const failShot = SHOT.replace(/\.png$/, '-failure.png');
    try {
      const pages = context.pages();
      await pages[pages.length - 1].screenshot({ path: failShot });
      console.error('failure screenshot: ' + failShot);
    } catch { /* the browser is gone */ }
  }
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
