'use strict';
// The live board (issue 13 §1, §5). It talks to the server only through the HTTP API, with
// the token from sessionStorage sent as an Authorization header (never in a URL). The event
// stream is read with fetch() (EventSource cannot send a header) and resumed with
// Last-Event-ID after a dropped connection; until then the page shows "reconnecting".
//
// The console's other pages (call log, reports, configuration) live in their own files and
// register here (see `registerPage` below): the board is one page among them. Pages are chosen
// by the URL's hash (`#/calls/<id>`): it holds no secrets, only where one is.
(function () {
  const TOKEN_KEY = 'mediasrv.token';
  const LANG_KEY = 'mediasrv.lang';
  const MAX_BACKOFF_MS = 5000;
  const STALL_MS = 40000; // keepalives come every 15 s: silence this long is a dead stream
  const texts = window.MEDIASRV_I18N;
  const $ = (id) => document.getElementById(id);

  const board = { operators: new Map(), calls: new Map(), queue: [], queueAvailable: false,
                  business: '', timeZone: '', clockOffset: 0 };
  let lang = pickLanguage();
  let lastId = null;
  let stream = null; // the AbortController of the open stream
  let running = false;
  let generation = 0; // bumped when a stream is stopped: an older loop then ends
  let business = '';

  function pickLanguage() {
    const saved = localStorage.getItem(LANG_KEY); // a preference, not a secret
    if (saved === 'ja' || saved === 'en') return saved;
    const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
    return wanted.toLowerCase().startsWith('ja') ? 'ja' : 'en';
  }

  function t(key) {
    return (texts[lang] && texts[lang][key]) || texts.en[key] || key;
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    $('lang').value = lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    document.title = t('title');
    setConnection(connState);
    renderNav();
    if (shown && shown !== 'board') route(); else render();
  }

  // ------------------------------------------------------------------ connection state
  let connState = '';
  function setConnection(state) {
    connState = state;
    const el = $('conn');
    el.hidden = !state;
    el.dataset.state = state;
    el.textContent = state ? t(state) : '';
  }

  // ------------------------------------------------------------------ time
  function serverNow() { return Date.now() / 1000 + board.clockOffset; }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(2, '0'), ss = String(r).padStart(2, '0');
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  function formatClock(ts) {
    // the business's wall clock (its time zone), whatever the browser's
    const options = { hour: '2-digit', minute: '2-digit' };
    if (board.timeZone) options.timeZone = board.timeZone;
    try {
      return new Date(ts * 1000).toLocaleTimeString(lang === 'ja' ? 'ja-JP' : 'en-GB', options);
    } catch (err) {
      return new Date(ts * 1000).toLocaleTimeString();
    }
  }

  function tick() {
    const now = serverNow();
    for (const el of document.querySelectorAll('[data-since]')) {
      el.textContent = formatDuration(now - Number(el.dataset.since));
    }
  }

  // ------------------------------------------------------------------ rendering
  function cell(row, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function durationCell(row, since) {
    const td = cell(row, '', 'duration');
    if (since) {
      td.dataset.since = String(since);
      td.textContent = formatDuration(serverNow() - since);
    }
    return td;
  }

  function callerText(call) {
    if (!call.caller_number || call.caller_number === 'anonymous') return t('anonymous');
    return call.caller_display ? `${call.caller_display} (${call.caller_number})` : call.caller_number;
  }

  function operatorName(name) {
    const op = board.operators.get(name);
    return op ? op.display_name : name;
  }

  function renderOperators() {
    const body = $('operators').tBodies[0];
    body.replaceChildren();
    const ops = [...board.operators.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const op of ops) {
      const row = document.createElement('tr');
      row.dataset.operator = op.name;
      row.dataset.state = op.state;
      const name = document.createElement('th');
      name.scope = 'row';
      name.textContent = op.display_name;
      row.appendChild(name);
      const state = cell(row, '', 'state');
      const badge = document.createElement('span');
      badge.className = `badge state-${op.state}`;
      badge.textContent = t(`state.${op.state}`);
      state.appendChild(badge);
      const call = op.call_id ? board.calls.get(op.call_id) : null;
      cell(row, call ? callerText(call) : '', 'caller');
      cell(row, call ? call.tracking_number : '', 'tracking');
      cell(row, call ? call.medium : '', 'medium');
      durationCell(row, call ? (call.answered || call.started) : null);
      cell(row, String(op.today.count), 'today-count');
      body.appendChild(row);
    }
    $('no-operators').hidden = ops.length > 0;
  }

  function renderRinging() {
    const body = $('ringing').tBodies[0];
    body.replaceChildren();
    const calls = [...board.calls.values()].filter((c) => c.state === 'ringing')
      .sort((a, b) => a.started - b.started);
    for (const call of calls) {
      const row = document.createElement('tr');
      row.dataset.call = call.call_id;
      cell(row, callerText(call), 'caller');
      cell(row, call.tracking_number, 'tracking');
      cell(row, call.medium, 'medium');
      cell(row, call.ringing.map(operatorName).join(', '), 'ringing-to');
      durationCell(row, call.started);
      body.appendChild(row);
    }
    $('ringing').hidden = calls.length === 0;
    $('no-ringing').hidden = calls.length > 0;
  }

  function renderQueue() {
    const list = $('queue');
    list.replaceChildren();
    for (const entry of board.queue) {
      const li = document.createElement('li');
      li.textContent = `${callerText(entry)} — ${formatDuration(serverNow() - entry.since)}`;
      list.appendChild(li);
    }
    const empty = $('queue-empty');
    empty.hidden = board.queue.length > 0;
    empty.textContent = board.queueAvailable ? t('queue_empty') : t('queue_unavailable');
  }

  function renderToday() {
    const box = $('today');
    box.replaceChildren();
    const ops = [...board.operators.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const op of ops) {
      const section = document.createElement('section');
      section.className = 'today-op';
      section.dataset.operator = op.name;
      const head = document.createElement('h4');
      head.textContent = `${op.display_name}: ${op.today.count} — ${t('talk_total')} ` +
        formatDuration(op.today.talk_seconds);
      section.appendChild(head);
      if (op.today.calls.length === 0) {
        const p = document.createElement('p');
        p.className = 'empty';
        p.textContent = t('no_calls_today');
        section.appendChild(p);
      } else {
        const list = document.createElement('ul');
        for (const c of op.today.calls.slice().reverse()) {
          const li = document.createElement('li');
          li.dataset.call = c.call_id;
          li.textContent = `${formatClock(c.answered)} ${callerText(c)} · ${c.tracking_number}` +
            `${c.medium ? ' · ' + c.medium : ''} · ${formatDuration(c.talk_seconds)}`;
          list.appendChild(li);
        }
        section.appendChild(list);
      }
      box.appendChild(section);
    }
  }

  function render() {
    if ($('board').hidden) return;
    $('business-name').textContent = board.business;
    renderOperators();
    renderRinging();
    renderQueue();
    renderToday();
  }

  let renderPending = false;
  function renderSoon() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => { renderPending = false; render(); });
  }

  // ------------------------------------------------------------------ events
  function applyEvent(kind, data) {
    if (kind === 'snapshot') {
      board.operators = new Map(data.operators.map((op) => [op.name, op]));
      board.calls = new Map(data.calls.map((c) => [c.call_id, c]));
      board.queue = data.queue || [];
      board.queueAvailable = Boolean(data.queue_available);
      board.business = data.business;
      board.timeZone = data.time_zone || '';
      board.clockOffset = data.now - Date.now() / 1000;
    } else if (kind === 'call') {
      board.calls.set(data.call.call_id, data.call);
    } else if (kind === 'call_gone') {
      board.calls.delete(data.call_id);
    } else if (kind === 'operator') {
      board.operators.set(data.operator.name, data.operator);
    } else if (kind === 'operator_gone') {
      board.operators.delete(data.name);
    } else if (kind === 'queue') {
      board.queue = data.queue;
    } else {
      return; // a kind this page does not know: ignore it, keep the stream
    }
    renderSoon();
  }

  function parseBlock(block) {
    let id = null, kind = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = value;
      else if (field === 'event') kind = value;
      else if (field === 'data') data.push(value);
    }
    return { id, kind, data: data.join('\n') };
  }

  function authHeaders() {
    return { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ''}` };
  }

  function businessQuery() {
    return business ? `?business=${encodeURIComponent(business)}` : '';
  }

  async function readStream(response, controller) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let stall = setTimeout(() => controller.abort(), STALL_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(stall);
        stall = setTimeout(() => controller.abort(), STALL_MS);
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.data) {
            applyEvent(event.kind, JSON.parse(event.data));
            if (event.id !== null) lastId = event.id;
            setConnection('live');
          }
        }
      }
    } finally {
      clearTimeout(stall);
    }
  }

  async function follow() {
    const mine = ++generation;
    const current = () => running && mine === generation;
    let backoff = 250;
    while (current()) {
      const controller = new AbortController();
      stream = controller;
      try {
        const headers = { ...authHeaders(), Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const response = await fetch(`/api/v1/live/events${businessQuery()}`,
          { headers, signal: controller.signal, cache: 'no-store' });
        if (response.status === 401 || response.status === 403) {
          logout(t('login_failed'));
          return;
        }
        if (response.ok) {
          backoff = 250;
          setConnection('live'); // resumed: the missed changes (if any) follow at once
          await readStream(response, controller);
        }
      } catch (err) {
        // a network error or our own abort: reconnect below, unless we logged out
      }
      if (!current()) return;
      setConnection('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  // ------------------------------------------------------------------ login
  async function fetchBusinesses() {
    const response = await fetch('/api/v1/live/businesses', { headers: authHeaders(), cache: 'no-store' });
    if (!response.ok) return null;
    return (await response.json()).businesses;
  }

  async function start() {
    let names;
    try {
      names = await fetchBusinesses();
    } catch (err) {
      $('login-error').textContent = t('login_unreachable');
      return;
    }
    if (names === null) {
      logout(t('login_failed'));
      return;
    }
    const pick = $('business');
    pick.replaceChildren(...names.map((n) => new Option(n, n)));
    $('business-pick').hidden = names.length < 2;
    business = names.length ? names[0] : '';
    $('login').hidden = true;
    $('nav').hidden = false;
    $('logout').hidden = false;
    setConnection('connecting');
    running = true;
    follow();
    route();
  }

  function stopStream() {
    running = false;
    generation += 1;
    if (stream) stream.abort();
    stream = null;
    lastId = null;
  }

  function logout(message) {
    stopStream();
    const token = sessionStorage.getItem(TOKEN_KEY) || '';
    if (!message && token.startsWith('msrvs_')) { // a login's session: revoke it on the server
      fetch('/api/v1/session', { method: 'DELETE', keepalive: true,
                                 headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
    }
    sessionStorage.removeItem(TOKEN_KEY);
    $('board').hidden = true;
    hidePages();
    $('logout').hidden = true;
    $('login').hidden = false;
    setConnection('');
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  // A user account (issue 13 §5): the login answers a session token, used from here on
  // exactly like an API token (sessionStorage, Authorization header; no cookie).
  async function logInAsUser(user, password) {
    $('account-error').textContent = '';
    let response;
    try {
      response = await fetch('/api/v1/login', { method: 'POST', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user, password }) });
    } catch (err) {
      $('account-error').textContent = t('login_unreachable');
      return;
    }
    $('login-password').value = '';
    if (!response.ok) {
      $('account-error').textContent = t(response.status === 429 ? 'login_throttled' : 'login_wrong');
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, (await response.json()).token);
    start();
  }

  // ------------------------------------------------------------------ pages
  // A page is { id, navKey, mount(container, ctx, rest) }: `mount` is called each time the
  // page is shown (and again after a change of language or business), with its own
  // <section> and `rest`, the hash after `#/<id>/`. A page adds its texts to
  // window.MEDIASRV_I18N.en / .ja when its file loads. `ctx` is all a page may use:
  //   ctx.api(path, init)   fetch() with the token header; a 401/403 logs out
  //   ctx.json(path, init)  the same, parsed; throws an Error whose .problem is the RFC 9457 body
  //   ctx.t(key), ctx.lang(), ctx.business() (the business chosen on the board, '' for all),
  //   ctx.go(hash)          navigate, e.g. ctx.go('#/calls/' + id)
  const pages = new Map();
  let shown = null; // the id of the page on screen

  function registerPage(page) {
    pages.set(page.id, page);
    renderNav();
  }

  async function api(path, init = {}) {
    const headers = { ...authHeaders(), ...(init.headers || {}) };
    const response = await fetch(path, { cache: 'no-store', ...init, headers });
    if (response.status === 401 || response.status === 403) logout(t('login_failed'));
    return response;
  }

  async function json(path, init = {}) {
    const response = await api(path, init);
    const kind = response.headers.get('Content-Type') || '';
    const body = kind.includes('json') ? await response.json() : null;
    if (!response.ok) {
      const error = new Error((body && (body.detail || body.title)) || response.statusText);
      error.status = response.status;
      error.problem = body;
      throw error;
    }
    return body;
  }

  const ctx = { api, json, t, lang: () => lang, business: () => business,
                go: (hash) => { window.location.hash = hash; } };

  function renderNav() {
    const nav = $('nav');
    if (!nav) return;
    const list = nav.querySelector('ul');
    list.replaceChildren();
    const entries = [{ id: 'board', navKey: 'board_title' }, ...pages.values()];
    for (const page of entries) {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = `#/${page.id}`;
      a.dataset.page = page.id;
      a.textContent = t(page.navKey);
      if (page.id === shown) a.setAttribute('aria-current', 'page');
      li.appendChild(a);
      list.appendChild(li);
    }
  }

  function currentRoute() {
    const hash = window.location.hash.replace(/^#\/?/, '');
    const slash = hash.indexOf('/');
    const id = slash < 0 ? hash : hash.slice(0, slash);
    const rest = slash < 0 ? '' : decodeURIComponent(hash.slice(slash + 1));
    return pages.has(id) ? { id, rest } : { id: 'board', rest: '' };
  }

  function pageSection(id) {
    let section = $(`page-${id}`);
    if (!section) {
      section = document.createElement('section');
      section.id = `page-${id}`;
      section.className = 'page';
      $('main').appendChild(section);
    }
    return section;
  }

  function route() {
    if (!running) return; // logged out: only the login form is shown
    const { id, rest } = currentRoute();
    shown = id;
    $('board').hidden = id !== 'board';
    for (const other of pages.keys()) {
      const el = $(`page-${other}`);
      if (el) el.hidden = other !== id;
    }
    renderNav();
    if (id === 'board') { render(); return; }
    const section = pageSection(id);
    section.hidden = false;
    try {
      pages.get(id).mount(section, ctx, rest);
    } catch (err) {
      section.textContent = String(err);
    }
  }

  function hidePages() {
    for (const id of pages.keys()) {
      const el = $(`page-${id}`);
      if (el) el.hidden = true;
    }
    $('nav').hidden = true;
  }

  window.MEDIASRV_CONSOLE = { registerPage };
  for (const page of window.MEDIASRV_PAGES || []) registerPage(page); // files loaded before this one

  function init() {
    $('lang').addEventListener('change', () => {
      lang = $('lang').value;
      localStorage.setItem(LANG_KEY, lang);
      applyLanguage();
    });
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token').value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      $('login-error').textContent = '';
      start();
    });
    $('account-form').addEventListener('submit', (event) => {
      event.preventDefault();
      logInAsUser($('login-user').value.trim(), $('login-password').value);
    });
    $('logout').addEventListener('click', () => logout(''));
    $('business').addEventListener('change', () => {
      business = $('business').value;
      stopStream();
      board.operators.clear();
      board.calls.clear();
      running = true;
      setConnection('connecting');
      follow();
      if (shown && shown !== 'board') route();
    });
    window.addEventListener('hashchange', route);
    applyLanguage();
    setInterval(tick, 1000);
    if (sessionStorage.getItem(TOKEN_KEY)) start();
  }

  // Deferred page scripts after this one have run by DOMContentLoaded: they are registered.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
