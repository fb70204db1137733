// The clinic console: log in with the clinic's token, find a free slot, book
// it for a patient, and watch the clinic's bookings change state; on the
// second tab, the clinic's referrals both ways (上转 / 下转, sent and
// received) with their current state, timeline, linked referral, booking and
// reports, refreshed while the other hospital acts on them.
//
// Plain script, no framework and no build step, so it runs from the engine
// on a clinic PC without internet access. It only calls the engine's own API
// (engine/app/booking_api.h, referral_api.h, report_api.h and
// GET /api/v1/whoami); the token lives in
// sessionStorage, so it is gone when the tab closes. Written for browsers a
// few years old: no optional chaining, no crypto.randomUUID (that needs a
// secure context, and a clinic may reach the engine over plain http on its LAN).
(function () {
  'use strict';

  var TOKEN_KEY = 'yilian.console.token';
  var LANG_KEY = 'yilian.console.lang';
  var POLL_MS = 2000;
  var REF_POLL_MS = 3000;         // the referrals tab while it is shown
  var REF_BACKGROUND_MS = 10000;  // behind the booking tab: only for the badge

  // ---- labels --------------------------------------------------------------

  var TEXT = {
    zh: {
      skip: '跳到主要内容', title: '医联 · 检查预约', logout: '退出登录',
      login_title: '登录', token: '访问令牌', login: '登录',
      token_help: '粘贴本机构的访问令牌。令牌只保存在本浏览器标签页中，关闭标签页即失效。',
      bad_token: '令牌无效，请检查后重试。', logged_out: '已退出登录。', session_expired: '登录已失效，请重新登录。',
      search_title: '查找空闲时段', exam: '检查项目', modality: '设备类型', tier: '医院等级', any: '不限',
      tier_TERTIARY: '三级', tier_SECONDARY: '二级', tier_PRIMARY: '一级',
      from: '开始日期', to: '结束日期（含）', search: '查找', searching: '正在查找…',
      slots_caption: '空闲时段（最早的在前）', time: '时间', hospital: '医院', equipment: '设备', location: '地点',
      choose: '选择', select: '选择此时段', no_slots: '该范围内没有空闲时段。', slots_found: '找到 {n} 个空闲时段（最早的在前）。',
      book_title: '预约患者', mrn: '病历号', patient_name: '患者姓名', birth_date: '出生日期', sex: '性别',
      male: '男', female: '女', book: '确认预约', back: '返回', booking: '正在预约…',
      booked_ok: '预约成功：{exam}，{time}，{hospital}（预约号 {id}）。',
      slot_taken_hint: '请选择其他时段。', slots_refreshed: '空闲时段已刷新。',
      mine_title: '本机构的预约', mine_caption: '本机构的预约，自动刷新', state: '状态', patient: '患者',
      actions: '操作', no_bookings: '暂无预约。', updated: '更新于 {t}', details: '详情', cancel: '取消预约',
      confirm_cancel: '确认取消', keep: '不取消', cancelled_ok: '预约 {id} 已取消。',
      state_changed: '预约 {id} 状态变为 {state}。',
      detail_title: '预约详情', close: '关闭', history: '状态记录', at: '时间', action: '操作', actor: '操作人',
      reason: '原因', booking_id: '预约号', requested_at: '申请时间', requesting: '申请机构',
      error: '出错了：{msg}', network: '无法连接服务器，请检查网络后重试。',
      weekdays: ['周日', '周一', '周二', '周三', '周四', '周五', '周六'],
      states: {
        REQUESTED: '已申请', HELD: '暂留', BOOKED: '已预约', CHECKED_IN: '已到检', PERFORMED: '已检查',
        REPORTED: '已出报告', CORRECTED: '报告已更正', CANCELLED: '已取消', NO_SHOW: '未到检'
      },
      actionNames: {
        request: '申请', hold: '暂留', book: '预约', reschedule: '改约', cancel: '取消', 'check-in': '到检',
        'no-show': '未到检', perform: '完成检查', report: '出报告', correct: '更正报告', 'expire-hold': '暂留过期'
      },
      views: '功能', tab_booking: '检查预约', tab_referrals: '转诊', title_referrals: '医联 · 转诊',
      refs_title: '本机构的转诊', refs_caption: '本机构的转诊（最近更新的在前），自动刷新',
      direction: '转诊方向', all: '全部', dir_UP: '上转', dir_DOWN: '下转', ref_side: '发出 / 收到',
      side_sent: '本机构发出的', side_received: '本机构收到的', sent: '发出', received: '收到', ref_state: '转诊状态',
      from_to: '转出 → 转入', updated_at: '更新时间', view: '查看', view_ref: '查看转诊', no_referrals: '暂无转诊。',
      no_referrals_filtered: '没有符合筛选条件的转诊。',
      ref_changed: '转诊 {id}（{patient}）状态变为 {state}。', ref_new: '收到新的{dir}：{id}（{patient}，来自 {from}）。',
      ref_detail_title: '转诊详情', ref_detail_hint: '在左侧列表中选择一条转诊，查看其进程。',
      ref_not_found: '转诊 {id} 不存在，或本机构无权查看。',
      referral_id: '转诊编号', from_hospital: '转出机构', to_hospital: '转入机构', ref_reason: '转诊原因',
      services: '申请项目', priority: '紧急程度', created_at: '发起时间', expires_at: '答复期限',
      booking_link: '预约', appointment: '预约时间', timeline: '进程', acted_by: '操作方',
      reason_detail: '原因 / 说明', linked_title: '关联转诊', follows: '↑ 接续上转', followed_by: '↓ 已下转',
      linked_hidden: '（本机构无权查看）', reports_title: '检查报告', report_open: '打开 PDF',
      report_save: '下载', report_loading: '正在读取报告…', report_unreadable: '报告 {id} 暂不可读（{msg}）。',
      document_failed: '无法打开报告文件：{msg}', opening: '正在打开…', engine_actor: '医联平台',
      report_status: { P: '初步报告', F: '正式报告', C: '更正报告', X: '已撤销' },
      priorities: { routine: '普通', urgent: '紧急', asap: '尽快', stat: '立即' },
      refStates: {
        NEW: '新建', DRAFT: '草稿', REQUESTED: '已提交', RECEIVED: '已收到', ACCEPTED: '已接收', REJECTED: '未被接收',
        SCHEDULED: '已安排', ARRIVED: '已到诊', COMPLETED: '已完成', REPORT_RETURNED: '报告已回传', CANCELLED: '已取消',
        EXPIRED: '已过期', NO_SHOW: '未到诊', TERMINATED: '已终止'
      },
      refActions: {
        create: '发起', submit: '提交', modify: '修改', receive: '收到', accept: '接收', reject: '拒绝',
        schedule: '安排', arrive: '到诊', complete: '完成', 'return-report': '回传报告', cancel: '取消',
        expire: '超时', 'no-show': '未到诊', terminate: '终止'
      }
    },
    en: {
      skip: 'Skip to main content', title: 'Yilian · Exam booking', logout: 'Log out',
      login_title: 'Log in', token: 'Access token', login: 'Log in',
      token_help: "Paste your clinic's access token. It is kept in this browser tab only and is forgotten when the tab closes.",
      bad_token: 'The token was not accepted. Check it and try again.', logged_out: 'Logged out.',
      session_expired: 'Your session has ended. Please log in again.',
      search_title: 'Find a free slot', exam: 'Exam', modality: 'Modality', tier: 'Hospital tier', any: 'Any',
      tier_TERTIARY: 'Tertiary', tier_SECONDARY: 'Secondary', tier_PRIMARY: 'Primary',
      from: 'From', to: 'To (inclusive)', search: 'Search', searching: 'Searching…',
      slots_caption: 'Free slots, earliest first', time: 'Time', hospital: 'Hospital', equipment: 'Machine',
      location: 'Location', choose: 'Choose', select: 'Choose this slot', no_slots: 'No free slot in this range.',
      slots_found: '{n} free slot(s), earliest first.',
      book_title: 'Book for a patient', mrn: 'MRN', patient_name: 'Patient name', birth_date: 'Birth date', sex: 'Sex',
      male: 'Male', female: 'Female', book: 'Book', back: 'Back', booking: 'Booking…',
      booked_ok: 'Booked: {exam}, {time}, {hospital} (booking {id}).',
      slot_taken_hint: 'Please choose another slot.', slots_refreshed: 'Free slots refreshed.',
      mine_title: "Our clinic's bookings", mine_caption: "Our clinic's bookings, refreshed automatically",
      state: 'Status', patient: 'Patient', actions: 'Actions', no_bookings: 'No bookings yet.',
      updated: 'Updated {t}', details: 'Details', cancel: 'Cancel booking', confirm_cancel: 'Confirm cancel',
      keep: 'Keep', cancelled_ok: 'Booking {id} cancelled.', state_changed: 'Booking {id} is now {state}.',
      detail_title: 'Booking details', close: 'Close', history: 'History', at: 'At', action: 'Action',
      actor: 'By', reason: 'Reason', booking_id: 'Booking', requested_at: 'Requested', requesting: 'Requested by',
      error: 'Error: {msg}', network: 'Cannot reach the server. Check the network and try again.',
      weekdays: ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'],
      states: {
        REQUESTED: 'Requested', HELD: 'Held', BOOKED: 'Booked', CHECKED_IN: 'Checked in', PERFORMED: 'Performed',
        REPORTED: 'Reported', CORRECTED: 'Corrected', CANCELLED: 'Cancelled', NO_SHOW: 'No-show'
      },
      actionNames: {
        request: 'request', hold: 'hold', book: 'book', reschedule: 'reschedule', cancel: 'cancel',
        'check-in': 'check in', 'no-show': 'no-show', perform: 'perform', report: 'report', correct: 'correct',
        'expire-hold': 'hold expired'
      },
      views: 'Views', tab_booking: 'Exam booking', tab_referrals: 'Referrals', title_referrals: 'Yilian · Referrals',
      refs_title: "Our clinic's referrals", refs_caption: "Our clinic's referrals, latest change first, refreshed automatically",
      direction: 'Direction', all: 'All', dir_UP: 'Up (上转)', dir_DOWN: 'Down (下转)', ref_side: 'Sent / received',
      side_sent: 'Sent by us', side_received: 'Received by us', sent: 'sent', received: 'received', ref_state: 'Referral status',
      from_to: 'From → to', updated_at: 'Updated', view: 'View', view_ref: 'View referral', no_referrals: 'No referrals yet.',
      no_referrals_filtered: 'No referral matches the filter.',
      ref_changed: 'Referral {id} ({patient}) is now {state}.', ref_new: 'New {dir} received: {id} ({patient}, from {from}).',
      ref_detail_title: 'Referral details', ref_detail_hint: 'Choose a referral in the list to see its timeline.',
      ref_not_found: 'Referral {id} does not exist or is not visible to your clinic.',
      referral_id: 'Referral', from_hospital: 'From', to_hospital: 'To', ref_reason: 'Reason',
      services: 'Requested', priority: 'Priority', created_at: 'Created', expires_at: 'Answer due by',
      booking_link: 'Booking', appointment: 'Appointment', timeline: 'Timeline', acted_by: 'By',
      reason_detail: 'Reason / detail', linked_title: 'Linked referrals', follows: '↑ follows up-referral',
      followed_by: '↓ referred back down', linked_hidden: '(not visible to your clinic)', reports_title: 'Reports',
      report_open: 'Open PDF', report_save: 'Save', report_loading: 'Loading the report…',
      report_unreadable: 'Report {id} cannot be read yet ({msg}).', document_failed: 'Cannot open the document: {msg}',
      opening: 'Opening…', engine_actor: 'Yilian platform',
      report_status: { P: 'Preliminary', F: 'Final', C: 'Corrected', X: 'Withdrawn' },
      priorities: { routine: 'routine', urgent: 'urgent', asap: 'as soon as possible', stat: 'immediately' },
      refStates: {
        NEW: 'New', DRAFT: 'Draft', REQUESTED: 'Requested', RECEIVED: 'Received', ACCEPTED: 'Accepted',
        REJECTED: 'Rejected', SCHEDULED: 'Scheduled', ARRIVED: 'Arrived', COMPLETED: 'Completed',
        REPORT_RETURNED: 'Report returned', CANCELLED: 'Cancelled', EXPIRED: 'Expired', NO_SHOW: 'No-show',
        TERMINATED: 'Terminated'
      },
      refActions: {
        create: 'create', submit: 'submit', modify: 'modify', receive: 'receive', accept: 'accept', reject: 'reject',
        schedule: 'schedule', arrive: 'arrive', complete: 'complete', 'return-report': 'return report',
        cancel: 'cancel', expire: 'expire', 'no-show': 'no-show', terminate: 'terminate'
      }
    }
  };

  var lang = localStorage.getItem(LANG_KEY) === 'en' ? 'en' : 'zh';

  function t(key, vars) {
    var s = TEXT[lang][key];
    if (s === undefined) s = TEXT.zh[key];
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, k) {
        var v = vars[k];
        if (typeof v === 'function') v = v();
        return v !== undefined ? String(v) : m;
      });
    }
    return s;
  }

  // ---- state ---------------------------------------------------------------

  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  var me = null;                // whoami
  var equipment = [];           // GET /api/v1/equipment
  var exams = [];               // [{code, name, modalities:[]}]
  var hospitals = {};           // id -> name
  var slots = [];               // last search result
  var chosen = null;            // the slot being booked
  var bookKey = '';             // Idempotency-Key of the booking form as filled in now
  var bookings = [];            // last GET /api/v1/bookings
  var bookingsSignature = '';   // ids and versions of `bookings`
  var knownStates = {};         // id -> state, to announce changes
  var detailId = '';            // booking shown in the dialog
  var confirmingCancel = '';    // booking whose row shows "confirm cancel"
  var pollTimer = 0;
  var pollGeneration = 0;       // bumped at log-out: late answers are dropped
  var view = 'booking';         // the tab shown: booking | referrals
  var referrals = [];           // last GET /api/v1/referrals (as filtered)
  var refsSignature = null;     // ids and versions of `referrals` (null: to be rendered whatever comes)
  var refsLoaded = false;       // false until the first answer for the current filter
  var refKnown = {};            // id -> state, to announce changes (kept across filters)
  var refSeen = {};             // id -> version last shown on the referrals tab (for the badge)
  var refTimer = 0;
  var refSelected = '';         // referral shown in the detail panel
  var refDetail = null;         // its last GET /api/v1/referrals/{id}
  var refDetailSignature = '';  // its version and its linked referrals' versions
  var refReports = {};          // "hospital/report_id" -> {status, body} of GET /api/v1/reports/...
  var refFilterGeneration = 0;  // bumped when the filter changes: older answers are dropped

  // ---- helpers -------------------------------------------------------------

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') e.textContent = attrs[k];
        else if (k === 'className') e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }

  // RFC 4122 version 4, from getRandomValues (available without a secure context).
  function uuid() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  function isoDate(d) { return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()); }

  function addDays(isoDay, n) {
    var p = isoDay.split('-');
    var d = new Date(Date.UTC(+p[0], +p[1] - 1, +p[2] + n));
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate());
  }

  // "2026-11-24T08:00:00+08:00" -> "2026-11-24 周二 08:00", in the machine's
  // own time zone as the engine wrote it (not the browser's).
  function showTime(s, end) {
    if (!s) return '—';
    var p = s.slice(0, 10).split('-');
    var wd = new Date(Date.UTC(+p[0], +p[1] - 1, +p[2])).getUTCDay();
    var out = s.slice(0, 10) + ' ' + t('weekdays')[wd] + ' ' + s.slice(11, 16);
    if (end) out += '–' + end.slice(11, 16);
    return out;
  }

  // When something happened rather than when it is due: no weekday, so it
  // fits the narrow columns of the referrals tab. With seconds for the
  // timeline, whose steps are often less than a minute apart.
  function showStamp(s) {
    if (!s) return '—';
    return s.slice(0, 10) + ' ' + s.slice(11, 16);
  }

  function showTimeSeconds(s) {
    if (!s) return '—';
    return s.slice(0, 10) + ' ' + s.slice(11, 19);
  }

  // The Chinese word with the English code beneath; `names` is TEXT.zh.states
  // (bookings) or TEXT.zh.refStates (referrals: the same words the patient's
  // messages use, adapters/webhook/notification.cc).
  function stateCell(state, names) {
    return el('span', { className: 'state state-' + state }, [
      el('span', { className: 'state-zh', lang: 'zh-CN', text: (names || TEXT.zh.states)[state] || state }),
      el('span', { className: 'state-code', lang: 'en', text: state })
    ]);
  }

  function stateText(state) {
    return (TEXT[lang].states[state] || state) + ' ' + state;
  }

  function examName(code) {
    for (var i = 0; i < exams.length; i++) if (exams[i].code === code) return exams[i].name;
    return code;
  }

  function problemText(p, status) {
    if (p && (p.detail || p.title)) return p.detail || p.title;
    return 'HTTP ' + status;
  }

  // fetch with the token; resolves {status, body} (body parsed when JSON),
  // rejects only when the server cannot be reached.
  function api(method, path, body, headers) {
    var h = { 'Accept': 'application/json' };
    if (token) h.Authorization = 'Bearer ' + token;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(path, {
      method: method, headers: h, cache: 'no-store', credentials: 'omit',
      body: body !== undefined ? JSON.stringify(body) : undefined
    }).then(function (r) {
      return r.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = null; }
        // A token that stops working mid-session (revoked, rotated): back to the log-in.
        if (r.status === 401 && token && me) expireSession();
        return { status: r.status, body: parsed };
      });
    });
  }

  // Messages are kept as [key, vars] parts (or literal strings), so a
  // language switch re-renders what is on the screen, not only the labels.
  var messages = {};  // element id -> parts
  function say(id, parts) {
    messages[id] = parts;
    $(id).textContent = parts.map(function (p) { return typeof p === 'string' ? p : t(p[0], p[1]); }).join(' ');
  }

  function showNotice(msg, info) {
    var n = $('notice');
    n.textContent = msg;
    n.className = info ? 'notice info' : 'notice';
    n.hidden = !msg;
  }

  // ---- language ------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (e) {
      e.textContent = t(e.getAttribute('data-i18n'));
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-label]'), function (e) {
      e.setAttribute('aria-label', t(e.getAttribute('data-i18n-label')));
    });
    renderTitle();
    fillStateFilter();
    var b = $('lang');
    b.textContent = lang === 'zh' ? 'English' : '中文';
    b.setAttribute('lang', lang === 'zh' ? 'en' : 'zh-CN');
    fillExamSelect();
    Object.keys(messages).forEach(function (id) { say(id, messages[id]); });
    renderWho();
    renderSlots();
    renderChosen();
    renderBookings();
    if (detailId && $('detail').open) loadDetail(detailId);
    renderReferrals();
    renderRefDetail();
  }

  $('lang').addEventListener('click', function () {
    lang = lang === 'zh' ? 'en' : 'zh';
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });

  // ---- log in / out --------------------------------------------------------

  function renderWho() {
    var w = $('who');
    if (!me) { w.hidden = true; w.textContent = ''; return; }
    w.textContent = (me.hospital_name || me.hospital || '') + ' · ' + (me.display_name || me.id);
    w.title = me.id + ' (' + me.role + ')';
    w.hidden = false;
  }

  function showLoggedIn(on) {
    $('login').hidden = on;
    $('main').hidden = !on;
    $('logout').hidden = !on;
    renderWho();
  }

  function login(candidate) {
    token = candidate;
    return api('GET', '/api/v1/whoami').then(function (r) {
      if (r.status !== 200) {
        token = '';
        sessionStorage.removeItem(TOKEN_KEY);
        return false;
      }
      me = r.body;
      sessionStorage.setItem(TOKEN_KEY, token);
      showLoggedIn(true);
      showNotice('');
      return loadEquipment().then(function () {
        startPolling();
        return true;
      });
    });
  }

  function clearData() {
    me = null; equipment = []; exams = []; slots = []; chosen = null; bookings = []; knownStates = {};
    bookingsSignature = '';
    detailId = ''; confirmingCancel = '';
    referrals = []; refsSignature = null; refsLoaded = false; refKnown = {}; refSeen = {};
    refSelected = ''; refDetail = null; refDetailSignature = ''; refReports = {};
    $('referrals').tBodies[0].textContent = '';
    $('ref-filter').reset();
    say('refs-updated', []);
    say('refs-status', []);
    renderBadge();
    renderRefDetail();
    $('slots').hidden = true;
    $('slots').tBodies[0].textContent = '';
    $('mine').tBodies[0].textContent = '';
    say('search-status', []);
    say('mine-updated', []);
    say('mine-status', []);
    $('book').hidden = true;
    $('book-form').reset();
    say('book-result', []);
    if ($('detail').open) $('detail').close();
  }

  function logout(message, info) {
    pollGeneration++;
    clearTimeout(pollTimer);
    clearTimeout(refTimer);
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    clearData();
    if (view === 'referrals') setHash('referrals');  // the next user does not land on this one's referral
    showLoggedIn(false);
    showNotice(message || '', info);
    $('token').value = '';
    $('token').focus();
  }

  function expireSession() { logout(t('session_expired')); }

  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var err = $('login-error');
    err.hidden = true;
    showNotice('');
    var candidate = $('token').value.trim();
    if (!candidate) return;
    login(candidate).then(function (ok) {
      if (!ok) {
        err.textContent = t('bad_token');
        err.hidden = false;
        $('token').focus();
      } else {
        $('token').value = '';
        if (view === 'referrals') $('tab-referrals').focus();
        else $('exam').focus();
      }
    }, function () {
      err.textContent = t('network');
      err.hidden = false;
    });
  });

  $('logout').addEventListener('click', function () { logout(t('logged_out'), true); });

  // ---- equipment and search ------------------------------------------------

  function loadEquipment() {
    return api('GET', '/api/v1/equipment').then(function (r) {
      if (r.status !== 200) { showNotice(t('error', { msg: problemText(r.body, r.status) })); return; }
      equipment = r.body.equipment || [];
      var byCode = {};
      exams = [];
      hospitals = {};
      if (me && me.hospital) hospitals[me.hospital] = me.hospital_name || me.hospital;
      var modalities = [];
      equipment.forEach(function (e) {
        hospitals[e.hospital] = e.hospital_name || e.hospital;
        if (modalities.indexOf(e.modality) < 0) modalities.push(e.modality);
        (e.exam_types || []).forEach(function (x) {
          if (!byCode[x.code]) {
            byCode[x.code] = { code: x.code, name: x.name || x.code, modalities: [] };
            exams.push(byCode[x.code]);
          }
          if (byCode[x.code].modalities.indexOf(e.modality) < 0) byCode[x.code].modalities.push(e.modality);
        });
      });
      exams.sort(function (a, b) { return a.code < b.code ? -1 : a.code > b.code ? 1 : 0; });
      var m = $('modality');
      while (m.options.length > 1) m.remove(1);
      modalities.sort().forEach(function (x) { m.appendChild(el('option', { value: x, text: x })); });
      fillExamSelect();
    });
  }

  // Exams the chosen modality can do (all when none is chosen).
  function fillExamSelect() {
    var s = $('exam');
    var keep = s.value;
    var modality = $('modality').value;
    s.textContent = '';
    exams.forEach(function (x) {
      if (modality && x.modalities.indexOf(modality) < 0) return;
      s.appendChild(el('option', { value: x.code, text: x.name + '（' + x.code + '）' }));
    });
    if (keep) s.value = keep;
    if (!s.value && s.options.length) s.selectedIndex = 0;
  }

  $('modality').addEventListener('change', fillExamSelect);

  function initDates() {
    var today = isoDate(new Date());
    $('from').value = today;
    $('from').min = today;
    $('to').value = addDays(today, 13);
    $('to').min = today;
  }

  function search() {
    var from = $('from').value;
    var to = $('to').value;
    var q = ['exam=' + encodeURIComponent($('exam').value), 'limit=50'];
    if ($('modality').value) q.push('modality=' + encodeURIComponent($('modality').value));
    if ($('tier').value) q.push('tier=' + encodeURIComponent($('tier').value));
    // From today: from now on (the engine's default), not from midnight.
    if (from && from > isoDate(new Date())) q.push('from=' + from);
    if (to) q.push('to=' + addDays(to, 1));
    say('search-status', [['searching']]);
    $('search').disabled = true;
    return api('GET', '/api/v1/slots?' + q.join('&')).then(function (r) {
      $('search').disabled = false;
      if (r.status !== 200) {
        slots = [];
        renderSlots();
        say('search-status', [['error', { msg: problemText(r.body, r.status) }]]);
        return;
      }
      slots = r.body.slots || [];
      renderSlots();
      say('search-status', slots.length ? [['slots_found', { n: slots.length }]] : [['no_slots']]);
    }, function () {
      $('search').disabled = false;
      say('search-status', [['network']]);
    });
  }

  $('search-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    search();
  });

  function renderSlots() {
    var body = $('slots').tBodies[0];
    body.textContent = '';
    $('slots').hidden = slots.length === 0;
    slots.forEach(function (s) {
      var when = showTime(s.start, s.end);
      var b = el('button', { type: 'button', className: 'choose', 'data-slot': s.slot_id, text: t('choose'),
                             'aria-label': t('select') + ' ' + when });
      b.addEventListener('click', function () { choose(s); });
      var row = el('tr', { 'data-slot': s.slot_id }, [
        el('td', { className: 'nowrap', text: when }),
        el('td', { text: s.hospital_name || s.hospital }),
        el('td', { text: s.equipment_name || s.equipment_id }),
        el('td', { text: s.location || '' }),
        el('td', null, [b])
      ]);
      if (chosen && chosen.slot_id === s.slot_id) row.className = 'picked';
      body.appendChild(row);
    });
  }

  // ---- booking -------------------------------------------------------------

  function renderChosen() {
    if (!chosen) return;
    $('chosen').textContent = examName(chosen.exam_code) + ' · ' + showTime(chosen.start, chosen.end) + ' · ' +
      (chosen.hospital_name || chosen.hospital) + ' · ' + (chosen.equipment_name || chosen.equipment_id) +
      (chosen.location ? ' · ' + chosen.location : '');
  }

  function choose(s) {
    chosen = s;
    bookKey = uuid();
    $('book').hidden = false;
    $('book-form').hidden = false;
    say('book-result', []);
    $('book-result').className = 'result';
    renderChosen();
    renderSlots();
    $('mrn').focus();
  }

  // A new key whenever what would be booked changes; the same key while it
  // does not, so a double click or a retry after a lost answer books once.
  $('book-form').addEventListener('input', function () { bookKey = uuid(); });

  $('book-cancel').addEventListener('click', function () {
    chosen = null;
    $('book').hidden = true;
    renderSlots();
    $('search').focus();
  });

  var booking = false;
  $('book-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (booking || !chosen || !me) return;
    var sexInput = document.querySelector('input[name="sex"]:checked');
    var body = {
      action: 'book',
      slot_id: chosen.slot_id,
      patient: {
        name: { hanzi: $('pname').value.trim() },
        birth_date: $('birth').value,
        sex: sexInput ? sexInput.value : 'SEX_UNKNOWN'
      },
      identifiers: [{
        system: 'urn:yilian:id:' + me.hospital + ':mrn', value: $('mrn').value.trim(),
        type: 'IDENTIFIER_TYPE_MRN'
      }]
    };
    var result = $('book-result');
    booking = true;
    $('book-submit').disabled = true;
    result.className = 'result';
    say('book-result', [['booking']]);
    api('POST', '/api/v1/bookings', body, { 'Idempotency-Key': bookKey }).then(function (r) {
      booking = false;
      $('book-submit').disabled = false;
      if (r.status === 201 || r.status === 200) {
        var b = r.body;
        result.className = 'result ok';
        say('book-result', [['booked_ok', {
          exam: b.exam_name || examName(b.exam_code), time: function () { return showTime(b.start, b.end); },
          hospital: hospitals[b.owner] || b.owner, id: b.id
        }]]);
        result.setAttribute('data-booking', b.id);
        chosen = null;
        bookKey = '';
        $('book-form').reset();
        $('book-form').hidden = true;
        $('chosen').textContent = '';
        result.focus();
        search();
        refreshBookings();
        return;
      }
      if (r.status === 409 && r.body && r.body.code === 'slot_taken') {
        result.className = 'result error taken';
        // Both languages: the one message a clinic must never miss.
        say('book-result', ['该时段已被预约 / Slot already taken.', ['slot_taken_hint']]);
        chosen = null;
        bookKey = '';
        $('book-form').hidden = true;
        result.focus();
        search().then(function () {
          say('search-status', messages['search-status'].concat([['slots_refreshed']]));
        });
        return;
      }
      if (r.status >= 400 && r.status < 500 && r.status !== 408) bookKey = uuid();  // a definite no
      result.className = 'result error';
      say('book-result', [['error', { msg: problemText(r.body, r.status) }]]);
      result.focus();
    }, function () {
      // Unknown outcome: keep the key, so trying again gets the first answer.
      booking = false;
      $('book-submit').disabled = false;
      result.className = 'result error';
      say('book-result', [['network']]);
    });
  });

  // ---- my bookings ---------------------------------------------------------

  function startPolling() {
    pollGeneration++;
    clearTimeout(pollTimer);
    clearTimeout(refTimer);
    refreshBookings();
    refreshReferrals();
  }

  function schedulePoll(gen) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(function () {
      if (gen !== pollGeneration) return;
      if (document.hidden) { schedulePoll(gen); return; }  // a hidden tab asks nothing
      refreshBookings();
    }, POLL_MS);
  }

  function refreshBookings() {
    if (!token) return Promise.resolve();
    var gen = pollGeneration;
    return api('GET', '/api/v1/bookings?limit=200').then(function (r) {
      if (gen !== pollGeneration || !token) return;
      if (r.status === 200) {
        var list = (r.body && r.body.bookings) || [];
        list.sort(function (a, b) {
          return (a.requested_at || '') < (b.requested_at || '') ? 1 : (a.requested_at || '') > (b.requested_at || '') ? -1 : 0;
        });
        announceChanges(list);
        // Re-render only on a change: a rebuilt table would take the keyboard
        // focus away from someone tabbing through it every 2 s.
        var signature = list.map(function (b) { return b.id + ':' + b.version; }).join(',');
        if (signature !== bookingsSignature) {
          bookingsSignature = signature;
          bookings = list;
          renderBookings();
        }
        say('mine-updated', [['updated', { t: new Date().toTimeString().slice(0, 8) }]]);
        if (detailId && $('detail').open) {
          for (var i = 0; i < list.length; i++) {
            if (list[i].id === detailId && String(list[i].version) !== $('detail').getAttribute('data-version')) {
              loadDetail(detailId);
            }
          }
        }
      }
      schedulePoll(gen);
    }, function () {
      if (gen !== pollGeneration) return;
      say('mine-updated', [['network']]);
      schedulePoll(gen);
    });
  }

  function announceChanges(list) {
    var msgs = [];
    list.forEach(function (b) {
      var before = knownStates[b.id];
      if (before && before !== b.state) {
        msgs.push(['state_changed', { id: b.id, state: stateText.bind(null, b.state) }]);
      }
      knownStates[b.id] = b.state;
    });
    if (msgs.length) say('mine-status', msgs);
  }

  function renderBookings() {
    var body = $('mine').tBodies[0];
    var active = document.activeElement;
    var activeRow = active && active.closest ? active.closest('#mine tr[data-booking]') : null;
    var refocus = activeRow ? { id: activeRow.getAttribute('data-booking'), cls: active.className.split(' ')[0] } : null;
    body.textContent = '';
    $('mine-empty').hidden = bookings.length !== 0 || !me;
    bookings.forEach(function (b) {
      var actions = el('td', { className: 'row-actions' });
      var details = el('button', { type: 'button', className: 'details', text: t('details') });
      details.addEventListener('click', function () { openDetail(b.id); });
      actions.appendChild(details);
      if (b.state === 'BOOKED' && b.requesting_hospital === (me && me.hospital)) {
        if (confirmingCancel === b.id) {
          var yes = el('button', { type: 'button', className: 'danger confirm-cancel', text: t('confirm_cancel') });
          yes.addEventListener('click', function () { cancelBooking(b.id); });
          var no = el('button', { type: 'button', className: 'keep', text: t('keep') });
          no.addEventListener('click', function () { confirmingCancel = ''; renderBookings(); });
          actions.appendChild(yes);
          actions.appendChild(no);
        } else {
          var c = el('button', { type: 'button', className: 'cancel', text: t('cancel') });
          c.addEventListener('click', function () { confirmingCancel = b.id; renderBookings(); focusRowButton(b.id, '.confirm-cancel'); });
          actions.appendChild(c);
        }
      }
      var name = (b.patient && b.patient.name && b.patient.name.hanzi) || '';
      body.appendChild(el('tr', { 'data-booking': b.id, 'data-state': b.state }, [
        el('td', null, [stateCell(b.state)]),
        el('td', { text: b.exam_name || examName(b.exam_code) }),
        el('td', { className: 'nowrap', text: showTime(b.start, b.end) }),
        el('td', { text: hospitals[b.owner] || b.owner }),
        el('td', { text: name }),
        actions
      ]));
    });
    if (refocus && refocus.cls) focusRowButton(refocus.id, 'button.' + refocus.cls);
  }

  function focusRowButton(id, selector) {
    var row = document.querySelector('tr[data-booking="' + id + '"]');
    var b = row && row.querySelector(selector);
    if (b && b.offsetParent !== null) { b.focus(); return true; }
    return false;
  }

  function cancelBooking(id) {
    confirmingCancel = '';
    api('POST', '/api/v1/bookings/' + encodeURIComponent(id) + '/cancel', { reason: 'cancelled by the clinic' },
        { 'Idempotency-Key': uuid() }).then(function (r) {
      if (r.status === 200) say('mine-status', [['cancelled_ok', { id: id }]]);
      else showNotice(t('error', { msg: problemText(r.body, r.status) }));
      refreshBookings();
    }, function () { showNotice(t('network')); });
  }

  // ---- detail --------------------------------------------------------------

  var detailReturnFocus = null;  // what had the focus when the dialog opened from elsewhere

  function openDetail(id, returnFocus) {
    detailId = id;
    detailReturnFocus = returnFocus || null;
    loadDetail(id).then(function (ok) {
      if (!ok) { detailId = ''; return; }  // not readable: the notice says why
      var d = $('detail');
      if (!d.open) d.showModal();
      $('detail-close').focus();
    });
  }

  function loadDetail(id) {
    return api('GET', '/api/v1/bookings/' + encodeURIComponent(id)).then(function (r) {
      if (r.status !== 200) { showNotice(t('error', { msg: problemText(r.body, r.status) })); return false; }
      var b = r.body;
      var d = $('detail');
      d.setAttribute('data-booking', b.id);
      d.setAttribute('data-version', String(b.version));
      var dl = $('detail-fields');
      dl.textContent = '';
      var name = (b.patient && b.patient.name && b.patient.name.hanzi) || '';
      var mrn = '';
      (b.identifiers || []).forEach(function (x) { if (/:mrn$/.test(x.system || '')) mrn = x.value; });
      [
        [t('booking_id'), b.id],
        [t('state'), stateText(b.state)],
        [t('exam'), (b.exam_name || examName(b.exam_code)) + '（' + b.exam_code + '）'],
        [t('time'), showTime(b.start, b.end)],
        [t('hospital'), hospitals[b.owner] || b.owner],
        [t('equipment'), (b.equipment_name || b.equipment_id) + (b.location ? ' · ' + b.location : '')],
        [t('patient'), name + (mrn ? '（' + t('mrn') + ' ' + mrn + '）' : '')],
        [t('requesting'), hospitals[b.requesting_hospital] || b.requesting_hospital],
        [t('requested_at'), showTime(b.requested_at)]
      ].forEach(function (p) {
        dl.appendChild(el('dt', { text: p[0] }));
        dl.appendChild(el('dd', { text: p[1] || '—' }));
      });
      var body = $('detail-history').tBodies[0];
      body.textContent = '';
      (b.history || []).forEach(function (s) {
        body.appendChild(el('tr', { 'data-state': s.state }, [
          el('td', { className: 'nowrap', text: showTime(s.at) }),
          el('td', null, [stateCell(s.state)]),
          el('td', { text: TEXT[lang].actionNames[s.action] || s.action }),
          el('td', { text: s.actor || '' }),
          el('td', { text: s.reason || '' })
        ]));
      });
      return true;
    }, function () { showNotice(t('network')); return false; });
  }

  $('detail-close').addEventListener('click', function () { $('detail').close(); });
  $('detail').addEventListener('close', function () {
    var id = detailId;
    detailId = '';
    var back = detailReturnFocus;
    // Re-rendered meanwhile (a poll): the element of the same id that replaced it.
    if (back && !document.body.contains(back)) back = back.id ? $(back.id) : null;
    if (!focusRowButton(id, '.details') && back) back.focus();
    detailReturnFocus = null;
  });

  // ---- views (tabs) --------------------------------------------------------

  function renderTitle() {
    var key = view === 'referrals' ? 'title_referrals' : 'title';
    $('title').setAttribute('data-i18n', key);
    $('title').textContent = t(key);
    document.title = t(key);
  }

  // The address bar says which tab (and referral) is shown, so a reload or a
  // bookmark comes back to it. Replaced, not pushed: Back leaves the page
  // instead of stepping through every row clicked.
  function setHash(h) {
    if (location.hash.replace(/^#/, '') === h) return;
    history.replaceState(null, '', location.pathname + location.search + (h ? '#' + h : ''));
  }

  function showView(name, keepHash) {
    view = name === 'referrals' ? 'referrals' : 'booking';
    ['booking', 'referrals'].forEach(function (v) {
      var on = v === view;
      var tab = $('tab-' + v);
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      $('view-' + v).hidden = !on;
    });
    renderTitle();
    if (!keepHash) {
      setHash(view === 'booking' ? '' : refSelected ? 'referral=' + encodeURIComponent(refSelected) : 'referrals');
    }
    if (view === 'referrals') {
      markSeen();
      // Now rather than at the next background tick.
      if (token && me) refreshReferrals();
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll('[role="tab"]'), function (tab) {
    tab.addEventListener('click', function () { showView(tab.getAttribute('data-view')); });
    // The ARIA tabs pattern: arrows move between tabs, Tab goes into the panel.
    tab.addEventListener('keydown', function (ev) {
      var tabs = [$('tab-booking'), $('tab-referrals')];
      var i = tabs.indexOf(tab);
      var next = -1;
      if (ev.key === 'ArrowRight') next = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') next = (i + tabs.length - 1) % tabs.length;
      else if (ev.key === 'Home') next = 0;
      else if (ev.key === 'End') next = tabs.length - 1;
      if (next < 0) return;
      ev.preventDefault();
      tabs[next].focus();
      showView(tabs[next].getAttribute('data-view'));
    });
  });

  // #referrals, #referral=<id> (a linked referral is a plain link to it), or
  // nothing for the booking tab; any other fragment (#main of the skip link)
  // is not a view.
  function route() {
    var h = location.hash.replace(/^#/, '');
    if (h === 'referrals') {
      showView('referrals', true);
    } else if (h.indexOf('referral=') === 0) {
      showView('referrals', true);
      var id = '';
      try { id = decodeURIComponent(h.slice(9)); } catch (e) { id = ''; }
      if (id) selectReferral(id, false);
    } else if (h === '' || h === 'booking') {
      showView('booking', true);
    }
  }

  window.addEventListener('hashchange', route);

  // ---- referrals -----------------------------------------------------------

  var REF_STATES = ['REQUESTED', 'RECEIVED', 'ACCEPTED', 'REJECTED', 'SCHEDULED', 'ARRIVED', 'COMPLETED',
                    'REPORT_RETURNED', 'CANCELLED', 'EXPIRED', 'NO_SHOW', 'TERMINATED', 'DRAFT'];

  function fillStateFilter() {
    var s = $('ref-state');
    var keep = s.value;
    while (s.options.length > 1) s.remove(1);
    REF_STATES.forEach(function (st) {
      s.appendChild(el('option', {
        value: st, text: lang === 'zh' ? TEXT.zh.refStates[st] + ' ' + st : TEXT.en.refStates[st] + ' · ' + TEXT.zh.refStates[st]
      }));
    });
    s.value = keep;
  }

  function refStateText(state) {
    return (TEXT[lang].refStates[state] || state) + (lang === 'zh' ? ' ' + state : '');
  }

  function dirName(d) { return t('dir_' + d) || d; }

  function patientName(p) {
    var n = (p && p.name) || {};
    return n.hanzi || [n.family, n.given].filter(Boolean).join('') || n.pinyin || '';
  }

  function hospitalName(id, r) {
    if (!id) return '';
    if (r && id === r.from_hospital && r.from_hospital_name) return r.from_hospital_name;
    if (r && id === r.to_hospital && r.to_hospital_name) return r.to_hospital_name;
    return hospitals[id] || id;
  }

  function learnNames(list) {
    list.forEach(function (r) {
      if (r.from_hospital_name) hospitals[r.from_hospital] = r.from_hospital_name;
      if (r.to_hospital_name) hospitals[r.to_hospital] = r.to_hospital_name;
    });
  }

  function refQuery() {
    var q = ['limit=200'];
    ['direction', 'role', 'state'].forEach(function (k) {
      var v = $('ref-' + k).value;
      if (v) q.push(k + '=' + encodeURIComponent(v));
    });
    return q.join('&');
  }

  function scheduleRefPoll(gen) {
    clearTimeout(refTimer);
    refTimer = setTimeout(function () {
      if (gen !== pollGeneration) return;
      if (document.hidden) { scheduleRefPoll(gen); return; }  // a hidden tab asks nothing
      refreshReferrals();
    }, view === 'referrals' ? REF_POLL_MS : REF_BACKGROUND_MS);
  }

  function refreshReferrals() {
    if (!token || !me) return Promise.resolve();
    var gen = pollGeneration;
    var filterGen = refFilterGeneration;
    clearTimeout(refTimer);
    return api('GET', '/api/v1/referrals?' + refQuery()).then(function (r) {
      if (gen !== pollGeneration || !token) return;
      if (filterGen !== refFilterGeneration) return;  // the new filter's request carries the poll on
      if (r.status === 200) {
        var list = (r.body && r.body.referrals) || [];
        learnNames(list);
        announceReferralChanges(list, !refsLoaded);
        if (!refsLoaded && !Object.keys(refSeen).length) list.forEach(function (x) { refSeen[x.id] = x.version; });
        refsLoaded = true;
        // Re-render only on a change, as the bookings do (keyboard focus).
        var signature = list.map(function (x) {
          return x.id + ':' + x.version + ':' + (x.followed_by || []).join('+');
        }).join(',');
        if (signature !== refsSignature) {
          refsSignature = signature;
          referrals = list;
          renderReferrals();
        }
        if (view === 'referrals') markSeen();
        else renderBadge();
        say('refs-updated', [['updated', { t: new Date().toTimeString().slice(0, 8) }]]);
        if (detailOutdated(list)) loadRefDetail(refSelected);
      } else {
        say('refs-updated', [['error', { msg: problemText(r.body, r.status) }]]);
      }
      scheduleRefPoll(gen);
    }, function () {
      if (gen !== pollGeneration) return;
      say('refs-updated', [['network']]);
      scheduleRefPoll(gen);
    });
  }

  function announceReferralChanges(list, baseline) {
    var msgs = [];
    list.forEach(function (x) {
      var before = refKnown[x.id];
      if (!baseline && before && before !== x.state) {
        msgs.push(['ref_changed', { id: x.id, patient: patientName(x.patient), state: refStateText.bind(null, x.state) }]);
      } else if (!baseline && !before && x.to_hospital === (me && me.hospital)) {
        msgs.push(['ref_new', {
          id: x.id, patient: patientName(x.patient), dir: dirName.bind(null, x.direction),
          from: x.from_hospital_name || x.from_hospital
        }]);
      }
      refKnown[x.id] = x.state;
    });
    if (msgs.length) say('refs-status', msgs);
  }

  // The badge on the tab: referrals that changed while the booking tab was shown.
  function markSeen() {
    referrals.forEach(function (x) { refSeen[x.id] = x.version; });
    renderBadge();
  }

  function renderBadge() {
    var n = 0;
    if (view !== 'referrals' && me) referrals.forEach(function (x) { if (refSeen[x.id] !== x.version) n++; });
    var b = $('ref-badge');
    b.hidden = n === 0;
    b.textContent = n ? String(n) : '';
  }

  $('ref-filter').addEventListener('submit', function (ev) { ev.preventDefault(); });
  $('ref-filter').addEventListener('change', function () {
    refFilterGeneration++;
    refsLoaded = false;
    refsSignature = null;
    say('refs-status', []);
    refreshReferrals();
  });

  function refLink(id, label) {
    return el('a', { href: '#referral=' + encodeURIComponent(id), className: 'ref-link', title: id, 'data-linked': id,
                     text: label });
  }

  function renderReferrals() {
    var body = $('referrals').tBodies[0];
    var active = document.activeElement;
    var activeRow = active && active.closest ? active.closest('#referrals tr[data-referral]') : null;
    var refocus = activeRow ? activeRow.getAttribute('data-referral') : '';
    body.textContent = '';
    var empty = $('refs-empty');
    empty.hidden = referrals.length !== 0 || !me || !refsLoaded;
    empty.textContent = t($('ref-direction').value || $('ref-role').value || $('ref-state').value
      ? 'no_referrals_filtered' : 'no_referrals');
    referrals.forEach(function (x) {
      var sent = x.from_hospital === (me && me.hospital);
      var dir = el('td', { className: 'dir' }, [
        el('span', { className: 'dir-' + x.direction, text: dirName(x.direction) }),
        el('span', { className: 'sub', text: t(sent ? 'sent' : 'received') })
      ]);
      if (x.linked_referral_id) dir.appendChild(el('span', { className: 'sub' }, [refLink(x.linked_referral_id, t('follows'))]));
      (x.followed_by || []).forEach(function (id) {
        dir.appendChild(el('span', { className: 'sub' }, [refLink(id, t('followed_by'))]));
      });
      var routeCell = el('td', { className: 'route' }, [
        hospitalName(x.from_hospital, x), el('span', { className: 'arrow', 'aria-hidden': 'true', text: '→' }),
        hospitalName(x.to_hospital, x)
      ]);
      var reason = x.reason_text || (x.reason && (x.reason.display || x.reason.code)) || '';
      if (x.priority && x.priority !== 'routine') {
        routeCell.appendChild(el('span', { className: 'sub urgent', text: TEXT[lang].priorities[x.priority] || x.priority }));
      }
      if (reason) routeCell.appendChild(el('span', { className: 'sub', text: reason }));
      var viewButton = el('button', { type: 'button', className: 'view', text: t('view'),
                                      'aria-label': t('view_ref') + ' ' + x.id });
      viewButton.addEventListener('click', function () { selectReferral(x.id, true, true); });
      var row = el('tr', { 'data-referral': x.id, 'data-state': x.state, 'data-direction': x.direction,
                           'data-side': sent ? 'sent' : 'received' }, [
        el('td', null, [stateCell(x.state, TEXT.zh.refStates)]),
        dir,
        el('td', { text: patientName(x.patient) }),
        routeCell,
        el('td', { className: 'nowrap', text: showStamp(x.updated_at) }),
        el('td', null, [viewButton])
      ]);
      if (x.id === refSelected) row.className = 'picked';
      row.addEventListener('click', function (ev) {
        if (ev.target.closest && ev.target.closest('a, button')) return;
        selectReferral(x.id, true);
      });
      body.appendChild(row);
    });
    if (refocus) {
      var again = document.querySelector('#referrals tr[data-referral="' + CSS.escape(refocus) + '"] button.view');
      if (again) again.focus();
    }
  }

  // A re-render (the other hospital acted) must not take the keyboard focus
  // away: what had it is found again by its id or its class and data-*.
  function focusKey(root) {
    var a = document.activeElement;
    if (!a || a === root || !root.contains(a)) return '';
    if (a.id) return '#' + CSS.escape(a.id);
    var key = a.tagName.toLowerCase();
    var cls = String(a.className || '').split(' ')[0];
    if (cls) key += '.' + CSS.escape(cls);
    ['data-url', 'data-linked', 'data-booking'].forEach(function (n) {
      if (a.hasAttribute(n)) key += '[' + n + '="' + CSS.escape(a.getAttribute(n)) + '"]';
    });
    return key;
  }

  function restoreFocus(root, key) {
    var e = key ? root.querySelector(key) : null;
    if (e && e !== document.activeElement) e.focus();
  }

  function markPicked() {
    Array.prototype.forEach.call(document.querySelectorAll('#referrals tr[data-referral]'), function (row) {
      row.className = row.getAttribute('data-referral') === refSelected ? 'picked' : '';
    });
  }

  function selectReferral(id, fromUser, focusDetail) {
    if (refSelected !== id) {
      refDetail = null;
      refDetailSignature = '';
    }
    refSelected = id;
    if (fromUser) setHash('referral=' + encodeURIComponent(id));
    markPicked();
    var loaded = loadRefDetail(id);
    if (focusDetail) loaded.then(function () { $('ref-detail').focus(); });
    return loaded;
  }

  // The detail's own version and its linked referrals' versions: what the list
  // can tell has changed without asking for the referral itself.
  function detailSignature(d) {
    return d.version + ':' + (d.followed_by || []).join('+') + '|' +
      (d.linked || []).map(function (x) { return x.id + ':' + x.version; }).join(',');
  }

  function detailOutdated(list) {
    if (!refSelected) return false;
    if (!refDetail) return true;
    var byId = {};
    list.forEach(function (x) { byId[x.id] = x; });
    var self = byId[refSelected];
    if (refDetail.missing) return !!self;
    if (!self) return true;  // filtered out of the list: ask for it directly
    if (self.version !== refDetail.version || (self.followed_by || []).join('+') !== (refDetail.followed_by || []).join('+')) {
      return true;
    }
    return (refDetail.linked || []).some(function (x) { return byId[x.id] && byId[x.id].version !== x.version; });
  }

  function loadRefDetail(id) {
    if (!token || !me || !id) return Promise.resolve();
    var gen = pollGeneration;
    return api('GET', '/api/v1/referrals/' + encodeURIComponent(id)).then(function (r) {
      if (gen !== pollGeneration || id !== refSelected) return;
      if (r.status === 404) {
        refDetail = { missing: true, id: id };
        refDetailSignature = '';
        renderRefDetail();
        return;
      }
      if (r.status !== 200) { showNotice(t('error', { msg: problemText(r.body, r.status) })); return; }
      var d = r.body;
      learnNames([d].concat(d.linked || []));
      var signature = detailSignature(d);
      if (signature === refDetailSignature && refDetail && !refDetail.missing) return;  // nothing new
      var reportsChanged = !refDetail || refDetail.version !== d.version;
      refDetail = d;
      refDetailSignature = signature;
      renderRefDetail();
      if (reportsChanged) loadReports(d);
    }, function () {
      if (gen === pollGeneration) say('refs-updated', [['network']]);
    });
  }

  function field(dl, label, value) {
    dl.appendChild(el('dt', { text: label }));
    dl.appendChild(el('dd', null, [value === '' || value === null || value === undefined ? '—' : value]));
  }

  function renderRefDetail() {
    var d = refDetail;
    var hint = $('ref-detail-hint');
    var box = $('ref-detail-body');
    var focused = focusKey(box);
    if (!d || d.missing) {
      box.hidden = true;
      hint.hidden = false;
      hint.textContent = d ? t('ref_not_found', { id: d.id }) : t('ref_detail_hint');
      $('ref-detail').removeAttribute('data-referral');
      return;
    }
    hint.hidden = true;
    box.hidden = false;
    var panel = $('ref-detail');
    panel.setAttribute('data-referral', d.id);
    panel.setAttribute('data-version', String(d.version));
    panel.setAttribute('data-state', d.state);
    var sent = d.from_hospital === (me && me.hospital);
    var dl = $('ref-fields');
    dl.textContent = '';
    field(dl, t('referral_id'), d.id);
    field(dl, t('state'), stateCell(d.state, TEXT.zh.refStates));
    field(dl, t('direction'), dirName(d.direction) + ' · ' + t(sent ? 'sent' : 'received'));
    field(dl, t('patient'), patientName(d.patient));
    field(dl, t('from_hospital'), hospitalName(d.from_hospital, d));
    field(dl, t('to_hospital'), hospitalName(d.to_hospital, d));
    field(dl, t('ref_reason'), d.reason_text || (d.reason && (d.reason.display || d.reason.code)) || '');
    if (d.services && d.services.length) {
      field(dl, t('services'), d.services.filter(Boolean).map(function (s) { return s.display || s.code; }).join('、'));
    }
    if (d.priority && d.priority !== 'routine') field(dl, t('priority'), TEXT[lang].priorities[d.priority] || d.priority);
    field(dl, t('created_at'), showTimeSeconds(d.created_at));
    field(dl, t('updated_at'), showTimeSeconds(d.updated_at));
    if (d.expires_at && (d.state === 'REQUESTED' || d.state === 'RECEIVED' || d.state === 'ACCEPTED')) {
      field(dl, t('expires_at'), showTime(d.expires_at));
    }
    if (d.booking_id) {
      var b = el('button', { type: 'button', className: 'linkish', id: 'ref-booking', 'data-booking': d.booking_id,
                             text: d.booking_id + (d.appointment_start ? ' · ' + showTime(d.appointment_start) : '') });
      b.addEventListener('click', function () { openDetail(d.booking_id, b); });
      field(dl, t('booking_link'), b);
    } else if (d.appointment_start) {
      field(dl, t('appointment'), showTime(d.appointment_start));
    }

    var body = $('ref-timeline').tBodies[0];
    body.textContent = '';
    (d.timeline || []).forEach(function (s) {
      var stateTd = el('td', null, [stateCell(s.to, TEXT.zh.refStates)]);
      if (s.from && s.from !== s.to && s.from !== 'NEW') {
        stateTd.appendChild(el('span', { className: 'from', text: '← ' + refStateText(s.from) }));
      }
      var by = s.actor_hospital ? hospitalName(s.actor_hospital, d) : t('engine_actor');
      body.appendChild(el('tr', { 'data-state': s.to, 'data-action': s.action }, [
        el('td', { className: 'nowrap', text: showTimeSeconds(s.at) }),
        stateTd,
        el('td', { text: TEXT[lang].refActions[s.action] || s.action }),
        el('td', null, [by, s.actor ? el('span', { className: 'sub', text: s.actor }) : null]),
        el('td', { text: [s.reason, s.detail].filter(Boolean).join(' · ') })
      ]));
    });

    // Up <-> down: the referral this one follows and those following it.
    var linked = $('ref-linked');
    linked.textContent = '';
    var others = (d.linked_referral_id ? [d.linked_referral_id] : []).concat(d.followed_by || []);
    others.forEach(function (id) {
      var x = null;
      (d.linked || []).forEach(function (l) { if (l.id === id) x = l; });
      var label = t(id === d.linked_referral_id ? 'follows' : 'followed_by');
      if (!x) {
        linked.appendChild(el('li', { 'data-linked': id }, [label + ' ' + id + ' ' + t('linked_hidden')]));
        return;
      }
      linked.appendChild(el('li', { 'data-linked': id }, [
        el('span', { className: 'sub', text: label }),
        refLink(id, dirName(x.direction) + ' ' + id), ' ',
        stateCell(x.state, TEXT.zh.refStates),
        el('span', { className: 'sub', text: hospitalName(x.from_hospital, x) + ' → ' + hospitalName(x.to_hospital, x) +
                                             ' · ' + showStamp(x.updated_at) })
      ]));
    });
    $('ref-linked-box').hidden = others.length === 0;
    renderRefReports();
    restoreFocus(box, focused);
  }

  // ---- reports of a referral -----------------------------------------------

  // The performing hospital is the referral's receiving hospital: the engine
  // returns a report to a referral only from there (workflows/referral/feed.cc).
  function reportKey(d, id) { return d.to_hospital + '/' + id; }

  function loadReports(d) {
    var gen = pollGeneration;
    (d.report_ids || []).forEach(function (id) {
      var key = reportKey(d, id);
      if (!refReports[key]) refReports[key] = { loading: true };
      api('GET', '/api/v1/reports/' + encodeURIComponent(d.to_hospital) + '/' + encodeURIComponent(id)).then(function (r) {
        if (gen !== pollGeneration) return;
        refReports[key] = { status: r.status, body: r.body };
        if (refDetail && refDetail.id === d.id) renderRefReports();
      }, function () {
        if (gen !== pollGeneration) return;
        refReports[key] = { status: 0, body: null };
        if (refDetail && refDetail.id === d.id) renderRefReports();
      });
    });
  }

  function renderRefReports() {
    var d = refDetail;
    var list = $('ref-reports');
    var focused = focusKey(list);
    list.textContent = '';
    var ids = (d && !d.missing && d.report_ids) || [];
    $('ref-reports-box').hidden = ids.length === 0;
    ids.forEach(function (id) {
      var entry = refReports[reportKey(d, id)];
      var li = el('li', { 'data-report': id });
      list.appendChild(li);
      if (!entry || entry.loading) { li.textContent = t('report_loading'); return; }
      if (entry.status !== 200) {
        li.textContent = t('report_unreadable', { id: id, msg: entry.status ? problemText(entry.body, entry.status) : t('network') });
        return;
      }
      var rep = entry.body;
      var versions = rep.versions || [];
      var latest = versions[versions.length - 1] || {};
      var exam = latest.exam || rep.exam || {};
      li.appendChild(el('strong', { text: (exam.display || exam.code || id) }));
      li.appendChild(document.createTextNode(' · ' + (TEXT[lang].report_status[latest.status_code] || latest.status_code || '') +
                                             ' · ' + showTime(latest.issued_at || rep.issued_at)));
      li.appendChild(el('span', { className: 'sub', text: id + (versions.length > 1 ? ' · v' + versions.length : '') }));
      var text = latest.conclusion || latest.findings || '';
      if (text) li.appendChild(el('p', { className: 'conclusion', text: text }));
      (latest.documents || []).forEach(function (doc, i) {
        var label = doc.title || doc.content_type || ('#' + (i + 1));
        var open = el('button', { type: 'button', className: 'doc-open', 'data-url': doc.url, text: t('report_open'),
                                  'aria-label': t('report_open') + ' ' + label });
        open.addEventListener('click', function () { openDocument(doc, id, false, open); });
        var save = el('button', { type: 'button', className: 'doc-save', 'data-url': doc.url, text: t('report_save'),
                                  'aria-label': t('report_save') + ' ' + label });
        save.addEventListener('click', function () { openDocument(doc, id, true, save); });
        li.appendChild(el('div', null, [open, save]));
      });
    });
    restoreFocus(list, focused);
  }

  function documentName(doc, reportId) {
    var ext = /pdf/i.test(doc.content_type || '') ? '.pdf' : '';
    return String(reportId).replace(/[^\w.-]+/g, '_') + ext;
  }

  // The document needs the Authorization header, so it is fetched here and
  // handed to the browser as a blob (a plain link would go without the token).
  // The window is opened at the click, before the fetch: a window opened
  // after an await is a popup the browser may block.
  function openDocument(doc, reportId, save, button) {
    var w = save ? null : window.open('', '_blank');
    var label = button.textContent;
    button.disabled = true;
    button.textContent = t('opening');
    function done() { button.disabled = false; button.textContent = label; }
    fetch(doc.url, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' })
      .then(function (r) {
        if (r.status === 401 && token && me) expireSession();
        var type = r.headers.get('Content-Type') || '';
        if (!r.ok || (type.indexOf('application/json') === 0 && !/json/.test(doc.content_type || ''))) {
          return r.text().then(function (text) {
            var p = null;
            try { p = JSON.parse(text); } catch (e) { p = null; }
            // A document the hospital keeps itself (a reference): the API names its URL.
            if (r.ok && p && p.url) return { external: p.url };
            throw new Error(problemText(p, r.status));
          });
        }
        return r.blob();
      })
      .then(function (got) {
        done();
        var url;
        if (got.external) {
          url = got.external;
        } else {
          var type = doc.content_type || got.type || 'application/octet-stream';
          url = URL.createObjectURL(got.type === type ? got : got.slice(0, got.size, type));
          setTimeout(function () { URL.revokeObjectURL(url); }, 120000);
        }
        if (w) {
          w.location.href = url;
        } else {
          var a = el('a', { href: url, download: got.external ? '' : documentName(doc, reportId), rel: 'noopener' });
          a.hidden = true;
          document.body.appendChild(a);
          a.click();
          a.remove();
        }
      })
      .catch(function (e) {
        done();
        if (w) w.close();
        showNotice(t('document_failed', { msg: e && e.message ? e.message : t('network') }));
      });
  }

  // ---- start ---------------------------------------------------------------

  initDates();
  applyLanguage();
  route();
  if (token) {
    login(token).then(function (ok) { if (!ok) logout(t('session_expired')); }, function () { showNotice(t('network')); });
  } else {
    showLoggedIn(false);
    $('token').focus();
  }
})();
