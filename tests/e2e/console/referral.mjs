// The referrals tab of the clinic console in Debian's headless Chromium,
// against a running `yilian serve` on a copy of the example consortium
// (started by console_referral_test.py, which passes its address in
// YILIAN_URL and zs-tertiary's inbound MLLP port in YILIAN_MLLP_ZS_TERTIARY).
//
// The xz-thc clinic refers a patient up to zs-tertiary (REST, as the clinic's
// user) and logs in on the page: the referral is REQUESTED. While this script
// plays the other parties — the tertiary hospital accepts (REST), the clinic
// books the CT for the referral (REST), the tertiary RIS sends the report with
// its PDF (ORU^R01 over MLLP), the tertiary hospital refers the patient back
// down linked to the first referral (REST) — the page shows each change
// without reloading: the state, the timeline, the booking, the report (its
// PDF fetched with the token), and the downward referral as received/下转
// with its link to the upward one. Then the filters, the English labels, and
// another clinic that must see none of it.
//
// playwright-core only drives the browser; it never downloads one.
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { chromium } from 'playwright-core';

const BASE = process.env.YILIAN_URL;
const SHOT = process.env.YILIAN_SCREENSHOT;
const MLLP_PORT = Number(process.env.YILIAN_MLLP_ZS_TERTIARY || 0);
const CHROMIUM = process.env.YILIAN_CHROMIUM || '/usr/bin/chromium';
const CLINIC = 'dev-xz-thc-user-token';          // 西镇卫生院's clinic user
const OTHER_CLINIC = 'dev-dc-chc-user-token';    // 东城社区: takes no part in these referrals
const TERTIARY_HIS = 'dev-zs-tertiary-his-token';
const STEP_TIMEOUT = 10_000;  // the referrals tab polls every 3 s
const PDF = Buffer.from('%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n');

if (!BASE || !SHOT || !MLLP_PORT) {
  console.error('referral.mjs: set YILIAN_URL (http://host:port of yilian serve), YILIAN_SCREENSHOT (a .png path) ' +
                'and YILIAN_MLLP_ZS_TERTIARY (zs-tertiary\'s inbound MLLP port)');
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

// One HL7 v2 message over MLLP; resolves the ACK's text.
function mllp(port, segments) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no ACK within 10 s')); }, 10_000);
    socket.on('connect', () => {
      socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(segments.join('\r') + '\r', 'utf8'),
                                  Buffer.from([0x1c, 0x0d])]));
    });
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf(Buffer.from([0x1c, 0x0d]));
      if (end >= 0) {
        clearTimeout(timer);
        socket.end();
        resolve(buf.subarray(buf.indexOf(0x0b) + 1, end).toString('utf8'));
      }
    });
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

// A valid 18-digit resident ID (GB 11643 check digit) for a synthetic person.
function residentId(seq) {
  const body = '44200019' + String(50 + seq % 40).padStart(2, '0') + '0101' + String(100 + seq % 800).padStart(3, '0');
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  let total = 0;
  for (let i = 0; i < 17; i++) total += Number(body[i]) * weights[i];
  return body + '10X98765432'[total % 11];
}

function hl7Now(offsetSeconds = 0) {
  // +08:00 wall time, as the hospital's systems write it.
  const d = new Date(Date.now() + offsetSeconds * 1000 + 8 * 3600 * 1000);
  return d.toISOString().replace(/[-T:]/g, '').slice(0, 14) + '+0800';
}

async function login(page, token, hospitalName) {
  await page.goto(BASE + '/console/');
  await page.getByLabel('访问令牌').fill(token);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.locator('#who').filter({ hasText: hospitalName }).waitFor({ timeout: STEP_TIMEOUT });
}

async function waitForRow(page, id, state, zh) {
  const row = page.locator(`#referrals tr[data-referral="${id}"][data-state="${state}"]`);
  await row.waitFor({ timeout: STEP_TIMEOUT });
  const text = await row.locator('.state').innerText();
  check(text.includes(zh) && text.includes(state), `state cell shows ${zh} and ${state} (it shows ${JSON.stringify(text)})`);
  return row;
}

const SEQ = 700 + Math.floor(Math.random() * 90);
const RESIDENT = residentId(SEQ);
const PATIENT = { name: { hanzi: '王五' }, birth_date: '1952-01-10', sex: 'SEX_MALE' };

const profile = mkdtempSync(join(tmpdir(), 'yilian-console-chromium-'));
let context;
let exitCode = 0;
try {
  step('the xz-thc clinic refers a patient up to zs-tertiary (REST)');
  const up = await expectCall('POST', '/api/v1/referrals', CLINIC, {
    to_hospital: 'zs-tertiary', reason_text: '胸痛待查，请上级医院会诊', priority: 'urgent',
    services: [{ code: 'CT-HEAD-PLAIN', display: '头颅CT平扫' }],
    identifiers: [{ system: 'urn:yilian:id:cn:resident', value: RESIDENT },
                  { system: 'urn:yilian:id:xz-thc:mrn', value: `XZ${String(SEQ).padStart(6, '0')}` }],
    patient: PATIENT,
  }, 201);
  check(up.direction === 'UP' && up.state === 'REQUESTED', 'the new referral is UP and REQUESTED: ' + JSON.stringify(up));

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
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
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) browserErrors.push(m.text());
  });

  step('log in as the xz-thc clinic user and open the referrals tab');
  await login(page, CLINIC, '西镇卫生院');
  await page.getByRole('tab', { name: '转诊' }).click();
  await page.getByRole('heading', { name: '本机构的转诊' }).waitFor();
  await page.getByRole('heading', { name: '医联 · 转诊' }).waitFor();
  check(new URL(page.url()).hash === '#referrals', 'the address says which tab: ' + page.url());
  let row = await waitForRow(page, up.id, 'REQUESTED', '已提交');
  check(await page.locator('#referrals tbody tr').count() === 1, 'xz-thc has exactly this referral');
  const cells = await row.locator('td').allInnerTexts();
  check(cells[1].includes('上转') && cells[1].includes('发出'), 'the direction says up and sent: ' + cells[1]);
  check(cells[2] === '王五', 'the patient by name: ' + cells[2]);
  check(/西镇卫生院\s*→\s*中山市人民医院/.test(cells[3]) && cells[3].includes('胸痛待查') && cells[3].includes('紧急'),
        'from -> to, urgency and reason: ' + cells[3]);
  check(/^\d{4}-\d\d-\d\d \d\d:\d\d$/.test(cells[4]), 'updated time: ' + cells[4]);
  // Marks this document: a reload would lose it.
  await page.evaluate(() => { window.__sameDocument = true; });

  step('zs-tertiary accepts it (REST); the row turns ACCEPTED without a reload');
  await expectCall('POST', `/api/v1/referrals/${up.id}/accept`, TERTIARY_HIS, { reason_text: '同意接收' }, 200);
  row = await waitForRow(page, up.id, 'ACCEPTED', '已接收');
  await page.locator('#refs-status').filter({ hasText: `转诊 ${up.id}（王五）状态变为 已接收` }).waitFor();

  step('open its timeline');
  await row.click();
  const detail = page.locator(`#ref-detail[data-referral="${up.id}"]`);
  await detail.waitFor();
  check(new URL(page.url()).hash === '#referral=' + up.id, 'the address names the referral: ' + page.url());
  check(await row.getAttribute('class') === 'picked', 'the chosen row is marked');
  const steps = page.locator('#ref-timeline tbody tr');
  await page.locator('#ref-timeline tbody tr[data-state="ACCEPTED"]').waitFor();
  const timeline = await steps.evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.innerText)));
  check(timeline.length === 2, 'two steps so far: ' + JSON.stringify(timeline));
  check(timeline[0][1].includes('已提交') && timeline[0][2] === '发起' && timeline[0][3].startsWith('西镇卫生院'),
        'step 1: the clinic created it: ' + JSON.stringify(timeline[0]));
  check(timeline[1][1].includes('已接收') && timeline[1][1].includes('← 已提交 REQUESTED') && timeline[1][2] === '接收' &&
        timeline[1][3].startsWith('中山市人民医院') && timeline[1][4].includes('同意接收'),
        'step 2: the tertiary hospital accepted it, with its words: ' + JSON.stringify(timeline[1]));
  check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(timeline[1][0]), 'step time with seconds: ' + timeline[1][0]);

  step('the clinic books the CT for the referral (REST): SCHEDULED, with the booking');
  const slots = (await expectCall('GET', '/api/v1/slots?exam=CT-HEAD-PLAIN&hospital=zs-tertiary&limit=20', CLINIC,
                                  undefined, 200)).slots;
  let booking = null;
  for (const s of slots) {
    const r = await call('POST', '/api/v1/bookings', CLINIC, {
      slot_id: s.slot_id, referral_id: up.id, patient: PATIENT,
      identifiers: [{ system: 'urn:yilian:id:xz-thc:mrn', value: `XZ${String(SEQ).padStart(6, '0')}` },
                    { system: 'urn:yilian:id:cn:resident', value: RESIDENT }],
    });
    if (r.status === 201) { booking = r.json; break; }
    check(r.status === 409, 'booking: ' + r.text);
  }
  check(booking, 'a CT slot could be booked');
  await waitForRow(page, up.id, 'SCHEDULED', '已安排');
  const bookingLink = page.locator(`#ref-booking[data-booking="${booking.id}"]`);
  await bookingLink.waitFor();
  await bookingLink.click();
  await page.locator(`#detail[open][data-booking="${booking.id}"]`).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#detail[open]').waitFor({ state: 'detached' });
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'ref-booking',
        'closing the booking dialog returns to the referral');

  step('the tertiary RIS sends the report with its PDF (ORU^R01 over MLLP)');
  const filler = 'RIS-' + randomUUID().slice(0, 8);
  const placer = booking.placer_order || '';
  const ack = await mllp(MLLP_PORT, [
    `MSH|^~\\&|RIS|ZSRMYY|YILIAN|XZWSY|${hl7Now()}||ORU^R01^ORU_R01|ORU-${randomUUID().slice(0, 12)}|P|2.5`,
    `PID|1||ZS${String(SEQ).padStart(6, '0')}^^^ZSRMYY^MR~${RESIDENT}^^^CHN^NNCHN||王^五^^^^^L||19520110|M`,
    `ORC|RE|${placer}|${filler}||CM`,
    `OBR|1|${placer}|${filler}|CT0101^头颅CT平扫^ZSRMYY-EXAM|||${hl7Now(-3600)}|||||||||||ACC-${filler}||||${hl7Now()}||CT|F`,
    'OBX|1|TX|&IMP^诊断意见^IHE||头颅CT平扫未见明显异常。||||||F',
    `OBX|2|ED|PDF^报告单PDF^ZSRMYY-RPT||^AP^PDF^Base64^${PDF.toString('base64')}||||||F`,
  ]);
  check(/\rMSA\|AA\|/.test(ack), 'the engine ACKs the ORU with AA: ' + ack.replace(/\r/g, '\n'));
  await waitForRow(page, up.id, 'REPORT_RETURNED', '报告已回传');
  const report = page.locator(`#ref-reports li[data-report="${filler}"]`);
  await report.filter({ hasText: '正式报告' }).waitFor();
  check((await report.innerText()).includes('头颅CT平扫未见明显异常'), 'the conclusion is shown: ' + await report.innerText());
  const states = await steps.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-state')));
  check(JSON.stringify(states) === JSON.stringify(['REQUESTED', 'ACCEPTED', 'SCHEDULED', 'COMPLETED', 'REPORT_RETURNED']),
        'the timeline refreshed by itself: ' + states.join(' -> '));

  step('the PDF, fetched with the token: saved, and opened in a new tab');
  const [download] = await Promise.all([page.waitForEvent('download'), report.locator('button.doc-save').click()]);
  const saved = readFileSync(await download.path());
  check(saved.equals(PDF), `the saved file is the report's PDF (${saved.length} bytes)`);
  check(download.suggestedFilename() === filler + '.pdf', 'file name ' + download.suggestedFilename());
  const [tab] = await Promise.all([context.waitForEvent('page'), report.locator('button.doc-open').click()]);
  await tab.waitForURL(/^blob:/, { timeout: STEP_TIMEOUT }).catch(() => {});
  // Chromium may show the PDF or hand it to its downloads; either way the tab was given the blob.
  step('the new tab: ' + tab.url());
  check(tab.url().startsWith('blob:' + BASE), 'the new tab shows the fetched document (at ' + tab.url() + ')');
  await tab.close();

  step('zs-tertiary refers the patient back down, linked to the first (REST)');
  const down = await expectCall('POST', '/api/v1/referrals', TERTIARY_HIS, {
    to_hospital: 'xz-thc', linked_referral_id: up.id, reason_text: '检查完成，回社区随访',
    identifiers: [{ system: 'urn:yilian:id:cn:resident', value: RESIDENT }], patient: PATIENT,
  }, 201);
  check(down.direction === 'DOWN' && down.linked_referral_id === up.id, 'DOWN and linked: ' + JSON.stringify(down));
  const downRow = await waitForRow(page, down.id, 'REQUESTED', '已提交');
  check(await downRow.getAttribute('data-side') === 'received', 'the down referral is one the clinic received');
  const downDir = await downRow.locator('td').nth(1).innerText();
  check(downDir.includes('下转') && downDir.includes('收到'), 'the direction says down and received: ' + downDir);
  await downRow.locator(`a.ref-link[data-linked="${up.id}"]`).filter({ hasText: '接续上转' }).waitFor();
  await page.locator('#refs-status').filter({ hasText: `收到新的下转：${down.id}（王五，来自 中山市人民医院）` }).waitFor();
  // The up referral (still shown) now links to the one that follows it.
  await page.locator(`#referrals tr[data-referral="${up.id}"] a.ref-link[data-linked="${down.id}"]`).waitFor();
  await page.locator(`#ref-linked li[data-linked="${down.id}"] a.ref-link`).waitFor();

  mkdirSync(dirname(SHOT), { recursive: true });
  await page.screenshot({ path: SHOT });
  step('screenshot: ' + SHOT);

  step('follow the link from the up referral to the down one, and back through the row link');
  await page.locator(`#ref-linked li[data-linked="${down.id}"] a.ref-link`).click();
  await page.locator(`#ref-detail[data-referral="${down.id}"]`).waitFor();
  check(new URL(page.url()).hash === '#referral=' + down.id, 'the address follows: ' + page.url());
  await page.locator(`#ref-linked li[data-linked="${up.id}"]`).filter({ hasText: '接续上转' }).waitFor();
  const downSteps = await page.locator('#ref-timeline tbody tr').evaluateAll((trs) => trs.map((tr) => tr.innerText));
  check(downSteps.length === 1 && downSteps[0].includes('中山市人民医院') && downSteps[0].includes('发起'),
        'the down referral was created by the tertiary hospital: ' + JSON.stringify(downSteps));
  check(await page.locator('#ref-reports-box').isHidden(), 'the down referral has no report');
  await downRow.locator(`a.ref-link[data-linked="${up.id}"]`).click();
  await page.locator(`#ref-detail[data-referral="${up.id}"]`).waitFor();
  const detailShot = SHOT.replace(/\.png$/, '-detail.png');
  await page.screenshot({ path: detailShot });
  step('screenshot: ' + detailShot);

  step('filters: direction, side and state');
  await page.getByLabel('转诊方向', { exact: true }).selectOption('DOWN');
  await page.locator(`#referrals tr[data-referral="${up.id}"]`).waitFor({ state: 'detached' });
  check(await page.locator('#referrals tbody tr').count() === 1, 'only the down referral');
  await page.getByLabel('转诊方向', { exact: true }).selectOption('');
  await page.getByLabel('发出 / 收到', { exact: true }).selectOption('sent');
  await page.locator(`#referrals tr[data-referral="${down.id}"]`).waitFor({ state: 'detached' });
  await page.locator(`#referrals tr[data-referral="${up.id}"]`).waitFor();
  await page.getByLabel('发出 / 收到', { exact: true }).selectOption('');
  await page.getByLabel('转诊状态', { exact: true }).selectOption('ACCEPTED');
  await page.locator('#refs-empty').filter({ hasText: '没有符合筛选条件的转诊。' }).waitFor();
  check(await page.locator(`#ref-detail[data-referral="${up.id}"]`).isVisible(), 'a filter keeps the chosen referral open');
  await page.getByLabel('转诊状态', { exact: true }).selectOption('');
  await page.locator('#referrals tbody tr').nth(1).waitFor();

  step('a change while the booking tab is shown: the referrals tab gets a badge');
  await page.getByRole('tab', { name: '检查预约' }).click();
  await page.getByRole('heading', { name: '本机构的预约' }).waitFor();
  check(new URL(page.url()).hash === '', 'the booking tab has no fragment: ' + page.url());
  await expectCall('POST', `/api/v1/referrals/${down.id}/cancel`, TERTIARY_HIS, { reason_text: '患者要求留院' }, 200);
  // The background refresh is every 10 s; switching tabs asks at once.
  await page.locator('#ref-badge').filter({ hasText: '1' }).waitFor({ timeout: 20_000 });
  await page.getByRole('tab', { name: '转诊' }).click();
  await waitForRow(page, down.id, 'CANCELLED', '已取消');
  check(await page.locator('#ref-badge').isHidden(), 'looking at the referrals clears the badge');
  check(await page.evaluate(() => window.__sameDocument === true), 'the page was never reloaded');

  step('the English labels');
  await page.getByRole('button', { name: 'Switch language / 切换语言' }).click();
  await page.getByRole('heading', { name: "Our clinic's referrals" }).waitFor();
  await page.getByRole('heading', { name: 'Yilian · Referrals' }).waitFor();
  const enRow = await page.locator(`#referrals tr[data-referral="${up.id}"]`).innerText();
  check(enRow.includes('报告已回传') && enRow.includes('REPORT_RETURNED') && enRow.includes('Up (上转)') && enRow.includes('sent'),
        'English row keeps the state in both languages: ' + JSON.stringify(enRow));
  const enSteps = await page.locator('#ref-timeline tbody tr').evaluateAll((trs) => trs.map((tr) => tr.cells[2].innerText));
  check(enSteps.join(',') === 'create,accept,schedule,complete,return report', 'English actions: ' + enSteps.join(','));
  const englishShot = SHOT.replace(/\.png$/, '-en.png');
  await page.screenshot({ path: englishShot });
  step('screenshot: ' + englishShot);
  await page.getByRole('button', { name: 'Switch language / 切换语言' }).click();
  await page.getByRole('heading', { name: '本机构的转诊' }).waitFor();

  step('a reload comes back to the referral shown');
  await page.reload();
  await page.locator(`#ref-detail[data-referral="${up.id}"]`).waitFor();
  check(await page.getByRole('tab', { name: '转诊' }).getAttribute('aria-selected') === 'true', 'the referrals tab is shown');

  step('another clinic (dc-chc) sees none of them, not even by the link');
  const other = await context.newPage();
  other.on('pageerror', (e) => browserErrors.push(String(e)));
  await other.goto(BASE + '/console/#referral=' + encodeURIComponent(up.id));
  await other.getByLabel('访问令牌').fill(OTHER_CLINIC);
  await other.getByRole('button', { name: '登录', exact: true }).click();
  await other.locator('#who').filter({ hasText: '东城街道社区卫生服务中心' }).waitFor();
  await other.locator('#ref-detail-hint').filter({ hasText: `转诊 ${up.id} 不存在，或本机构无权查看。` }).waitFor();
  await other.locator('#refs-empty').filter({ hasText: '暂无转诊。' }).waitFor();
  check(await other.locator('#referrals tbody tr').count() === 0, 'dc-chc lists no referral');
  await other.close();

  step('log out clears the referrals from the page');
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.getByLabel('访问令牌').waitFor();
  check(await page.locator('#referrals tbody tr').count() === 0, 'no referral rows after log-out');
  check(await page.locator('#ref-detail-body').isHidden(), 'no referral detail after log-out');

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
