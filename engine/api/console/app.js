// The clinic booking page: log in with the clinic's token, find a free slot,
// book it for a patient, and watch the clinic's bookings change state.
//
// Plain script, no framework and no build step, so it runs from the engine
// on a clinic PC without internet access. It only calls the engine's own API
// (engine/app/booking_api.h and GET /api/v1/whoami); the token lives in
// sessionStorage, so it is gone when the tab closes. Written for browsers a
// few years old: no optional chaining, no crypto.randomUUID (that needs a
// secure context, and a clinic may reach the engine over plain http on its LAN).
(function () {
  'use strict';

  var TOKEN_KEY = 'yilian.console.token';
  var LANG_KEY = 'yilian.console.lang';
  var POLL_MS = 2000;

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

  function stateCell(state) {
    return el('span', { className: 'state state-' + state }, [
      el('span', { className: 'state-zh', lang: 'zh-CN', text: TEXT.zh.states[state] || state }),
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
    document.title = t('title');
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (e) {
      e.textContent = t(e.getAttribute('data-i18n'));
    });
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
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    clearData();
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
        $('exam').focus();
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
    refreshBookings();
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
    if (b) b.focus();
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

  function openDetail(id) {
    detailId = id;
    loadDetail(id).then(function () {
      var d = $('detail');
      if (!d.open) d.showModal();
      $('detail-close').focus();
    });
  }

  function loadDetail(id) {
    return api('GET', '/api/v1/bookings/' + encodeURIComponent(id)).then(function (r) {
      if (r.status !== 200) { showNotice(t('error', { msg: problemText(r.body, r.status) })); return; }
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
    }, function () { showNotice(t('network')); });
  }

  $('detail-close').addEventListener('click', function () { $('detail').close(); });
  $('detail').addEventListener('close', function () {
    var id = detailId;
    detailId = '';
    focusRowButton(id, '.details');
  });

  // ---- start ---------------------------------------------------------------

  initDates();
  applyLanguage();
  if (token) {
    login(token).then(function (ok) { if (!ok) logout(t('session_expired')); }, function () { showNotice(t('network')); });
  } else {
    showLoggedIn(false);
    $('token').focus();
  }
})();
