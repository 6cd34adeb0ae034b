'use strict';
// The call log (issue 13 §2): filters, cursor pages, CSV export; a call's detail with its
// flow path, forwarding attempts, the stereo recording (player, one waveform per channel),
// the transcript timeline that follows playback and seeks on click; the voicemails.
//
// Audio and CSV are fetched with the token header (ctx.api) and handed to the browser as
// blobs: no token, and no other credential, ever goes into a URL. A recording's blob is the
// whole file, so the audio element seeks within it without asking the server again.
(() => {
  const TEXTS = {
    en: {
      calls_title: 'Call log', voicemails_title: 'Voicemails', filters: 'Filters',
      f_since: 'From', f_until: 'To (inclusive)', f_medium: 'Medium', f_campaign: 'Campaign',
      f_number: 'Tracking number', f_disposition: 'Outcome', f_valid: 'Valid',
      f_first_time: 'First-time caller', f_prefecture: 'Prefecture', f_operator: 'Operator (SIP URI)',
      f_label: 'Label', any: 'Any', yes: 'Yes', no: 'No', search: 'Search', reset: 'Clear',
      export_csv: 'Export CSV', exporting: 'Exporting…', exported: 'CSV saved ({n} bytes).',
      more: 'More calls', no_calls: 'No call matches.', loading: 'Loading…',
      c_time: 'Time', c_caller: 'Caller', c_number: 'Tracking number', c_medium: 'Medium',
      c_campaign: 'Campaign', c_outcome: 'Outcome', c_talk: 'Talk', c_flags: 'Flags',
      c_label: 'Label', c_operator: 'Operator', open_call: 'Details',
      flag_valid: 'valid', flag_first: 'first time', flag_duplicate: 'repeat',
      back: '← Call log', call_detail: 'Call', summary: 'Summary', prefecture: 'Prefecture',
      ring: 'Ringing', hung_up_by: 'Hung up by', flow_path: 'Flow path', no_flow: 'No flow steps recorded.',
      attempts: 'Forwarding attempts', a_target: 'Rung', a_result: 'Result', a_start: 'Start', a_end: 'End',
      no_attempts: 'No forwarding attempt.', recording: 'Recording', no_recording: 'This call has no recording.',
      ch_caller: 'Caller (left channel)', ch_operator: 'Operator (right channel)',
      waveform_help: 'Click the waveform, or use a transcript line, to jump there.',
      transcript: 'Transcript', no_transcript: 'No transcript (yet).',
      sp_caller: 'Caller', sp_operator: 'Operator', seek_to: 'Play from {t}',
      voicemail: 'Voicemail', no_voicemails: 'No voicemail.', play: 'Play', audio_failed: 'The audio could not be loaded.',
      'disp.answered': 'Answered', 'disp.busy': 'Busy', 'disp.no-answer': 'No answer',
      'disp.after-hours': 'After hours', 'disp.blocked': 'Blocked', 'disp.abandoned': 'Abandoned',
      'disp.voicemail': 'Voicemail', 'disp.failed': 'Failed', 'disp.in-progress': 'In progress',
      pick_business: 'Choose a business on the board first.',
    },
    ja: {
      calls_title: '通話履歴', voicemails_title: '留守番電話', filters: '絞り込み',
      f_since: '開始日', f_until: '終了日（当日を含む）', f_medium: '媒体', f_campaign: 'キャンペーン',
      f_number: '計測番号', f_disposition: '結果', f_valid: '有効',
      f_first_time: '初回の発信者', f_prefecture: '都道府県', f_operator: 'オペレーター（SIP URI）',
      f_label: 'ラベル', any: 'すべて', yes: 'はい', no: 'いいえ', search: '検索', reset: 'クリア',
      export_csv: 'CSV を書き出す', exporting: '書き出し中…', exported: 'CSV を保存しました（{n} バイト）。',
      more: 'さらに表示', no_calls: '該当する通話はありません。', loading: '読み込み中…',
      c_time: '日時', c_caller: '発信者', c_number: '計測番号', c_medium: '媒体',
      c_campaign: 'キャンペーン', c_outcome: '結果', c_talk: '通話', c_flags: '属性',
      c_label: 'ラベル', c_operator: 'オペレーター', open_call: '詳細',
      flag_valid: '有効', flag_first: '初回', flag_duplicate: '重複',
      back: '← 通話履歴', call_detail: '通話', summary: '概要', prefecture: '都道府県',
      ring: '呼び出し', hung_up_by: '切断', flow_path: '通話フロー', no_flow: 'フローの記録はありません。',
      attempts: '転送の試行', a_target: '呼び出し先', a_result: '結果', a_start: '開始', a_end: '終了',
      no_attempts: '転送の試行はありません。', recording: '録音', no_recording: 'この通話に録音はありません。',
      ch_caller: '発信者（左チャンネル）', ch_operator: 'オペレーター（右チャンネル）',
      waveform_help: '波形か文字起こしの行をクリックすると、その位置から再生します。',
      transcript: '文字起こし', no_transcript: '文字起こしはまだありません。',
      sp_caller: '発信者', sp_operator: 'オペレーター', seek_to: '{t} から再生',
      voicemail: '留守番電話', no_voicemails: '留守番電話はありません。', play: '再生', audio_failed: '音声を読み込めませんでした。',
      'disp.answered': '応答', 'disp.busy': '話し中', 'disp.no-answer': '応答なし',
      'disp.after-hours': '時間外', 'disp.blocked': '拒否', 'disp.abandoned': '放棄',
      'disp.voicemail': '留守番電話', 'disp.failed': '失敗', 'disp.in-progress': '通話中',
      pick_business: '先にボードで事業者を選んでください。',
    },
  };
  const I18N = (window.MEDIASRV_I18N = window.MEDIASRV_I18N || { en: {}, ja: {} });
  for (const lang of Object.keys(TEXTS)) I18N[lang] = Object.assign(I18N[lang] || {}, TEXTS[lang]);

  const DISPOSITIONS = ['answered', 'busy', 'no-answer', 'after-hours', 'blocked', 'abandoned',
                        'voicemail', 'failed', 'in-progress'];
  const PREFECTURES = ['北海道', '青森県', '岩手県', '宮城県', '秋田県', '山形県', '福島県', '茨城県',
    '栃木県', '群馬県', '埼玉県', '千葉県', '東京都', '神奈川県', '新潟県', '富山県', '石川県', '福井県',
    '山梨県', '長野県', '岐阜県', '静岡県', '愛知県', '三重県', '滋賀県', '京都府', '大阪府', '兵庫県',
    '奈良県', '和歌山県', '鳥取県', '島根県', '岡山県', '広島県', '山口県', '徳島県', '香川県', '愛媛県',
    '高知県', '福岡県', '佐賀県', '長崎県', '熊本県', '大分県', '宮崎県', '鹿児島県', '沖縄県'];
  const TEXT_FILTERS = [['medium', 'f_medium'], ['campaign', 'f_campaign'],
    ['tracking_number', 'f_number'], ['operator', 'f_operator'], ['label', 'f_label']];
  const FLAG_FILTERS = [['valid', 'f_valid'], ['first_time', 'f_first_time']];
  const filters = {}; // kept while the console is open: back from a call keeps the search
  let audioUrl = null; // the object URL of the blob on screen (revoked when replaced)

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const fill = (s, values) => s.replace(/\{(\w+)\}/g, (_, k) => String(values[k]));
  const base = (ctx) => `/api/v1/businesses/${encodeURIComponent(ctx.business())}`;

  function when(ctx, unix) {
    if (unix === null || unix === undefined) return '';
    return new Intl.DateTimeFormat(ctx.lang() === 'ja' ? 'ja-JP' : 'en-GB',
      { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(unix * 1000));
  }
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, '0')}`;
  }
  function disposition(ctx, value) {
    return el('span', { class: `badge disp disp-${value}`, text: ctx.t(`disp.${value}`) });
  }
  function labelOf(call) {
    const outcome = call.analysis && call.analysis.outcome;
    return (outcome && outcome.label) || '';
  }
  function problemText(err) { return (err && err.message) || String(err); }

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function audioBlob(ctx, path) {
    const response = await ctx.api(path);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const blob = await response.blob();
    const expected = Number(response.headers.get('Content-Length') || blob.size);
    return { blob, complete: blob.size === expected };
  }

  // ---------------------------------------------------------------- the list
  function dateInput(id, key, value) {
    return [el('label', { for: id, 'data-key': key }), el('input', { id, type: 'date', value: value || '' })];
  }

  function filterForm(ctx, onSearch) {
    const t = ctx.t;
    const form = el('form', { class: 'filters', 'aria-labelledby': 'calls-filters-title' });
    const grid = el('div', { class: 'filter-grid' });
    const field = (label, control) => grid.append(el('div', { class: 'field' }, label, control));
    for (const [name, key] of [['since', 'f_since'], ['until', 'f_until']]) {
      const [label, input] = dateInput(`cf-${name}`, key, filters[name]);
      label.textContent = t(key);
      field(label, input);
    }
    const select = (name, key, options) => {
      const s = el('select', { id: `cf-${name}` }, el('option', { value: '', text: t('any') }));
      for (const [value, text] of options) s.append(el('option', { value, text }));
      s.value = filters[name] || '';
      field(el('label', { for: `cf-${name}`, text: t(key) }), s);
    };
    select('disposition', 'f_disposition', DISPOSITIONS.map((d) => [d, t(`disp.${d}`)]));
    for (const [name, key] of FLAG_FILTERS) select(name, key, [['true', t('yes')], ['false', t('no')]]);
    select('prefecture', 'f_prefecture',
      PREFECTURES.map((p, i) => [String(i + 1).padStart(2, '0'), `${String(i + 1).padStart(2, '0')} ${p}`]));
    for (const [name, key] of TEXT_FILTERS) {
      field(el('label', { for: `cf-${name}`, text: t(key) }),
        el('input', { id: `cf-${name}`, type: 'text', value: filters[name] || '', spellcheck: 'false' }));
    }
    const status = el('p', { id: 'calls-status', class: 'help', role: 'status', 'aria-live': 'polite' });
    const exportButton = el('button', { type: 'button', id: 'calls-export', text: t('export_csv') });
    const buttons = el('div', { class: 'buttons' },
      el('button', { type: 'submit', id: 'calls-search', text: t('search') }),
      el('button', { type: 'reset', class: 'secondary', text: t('reset') }), exportButton);
    form.append(el('h3', { id: 'calls-filters-title', text: t('filters') }), grid, buttons, status);
    const read = () => {
      for (const name of ['since', 'until', 'disposition', 'prefecture',
        ...FLAG_FILTERS.map((f) => f[0]), ...TEXT_FILTERS.map((f) => f[0])]) {
        filters[name] = form.querySelector(`#cf-${name}`).value.trim();
      }
    };
    form.addEventListener('submit', (e) => { e.preventDefault(); read(); onSearch(); });
    form.addEventListener('reset', () => {
      setTimeout(() => { for (const k of Object.keys(filters)) delete filters[k]; onSearch(); }, 0);
    });
    exportButton.addEventListener('click', async () => {
      read();
      status.textContent = t('exporting');
      try {
        const response = await ctx.api(`${base(ctx)}/calls.csv?${query(100000).toString()}`);
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
        const blob = await response.blob();
        saveBlob(blob, `calls-${ctx.business()}.csv`);
        status.textContent = fill(t('exported'), { n: blob.size });
        status.dataset.bytes = String(blob.size);
      } catch (err) {
        status.textContent = problemText(err);
      }
    });
    return form;
  }

  function dayStart(value, plusDays = 0) { // a date input's day in the browser's time zone
    const [y, m, d] = value.split('-').map(Number);
    return new Date(y, m - 1, d + plusDays).getTime() / 1000;
  }

  function query(limit, cursor) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (filters.since) q.set('since', String(dayStart(filters.since)));
    if (filters.until) q.set('until', String(dayStart(filters.until, 1)));
    for (const name of ['disposition', 'prefecture', ...FLAG_FILTERS.map((f) => f[0]),
      ...TEXT_FILTERS.map((f) => f[0])]) {
      if (filters[name]) q.set(name, filters[name]);
    }
    if (cursor) q.set('cursor', cursor);
    return q;
  }

  function callRow(ctx, call) {
    const t = ctx.t;
    const flags = el('td', { class: 'flags' });
    if (call.valid) flags.append(el('span', { class: 'tag tag-valid', text: t('flag_valid') }));
    if (call.first_time) flags.append(el('span', { class: 'tag tag-first', text: t('flag_first') }));
    if (call.duplicate) flags.append(el('span', { class: 'tag tag-dup', text: t('flag_duplicate') }));
    const link = el('a', { href: `#/calls/${encodeURIComponent(call.call_id)}`, class: 'open-call',
      text: when(ctx, call.start_time) });
    return el('tr', { 'data-call-id': call.call_id },
      el('th', { scope: 'row' }, link),
      el('td', { class: 'caller', text: call.caller_display ? `${call.caller_number} (${call.caller_display})` : call.caller_number }),
      el('td', { class: 'number', text: call.tracking_number }),
      el('td', { class: 'medium', text: call.medium }),
      el('td', { text: call.campaign }),
      el('td', {}, disposition(ctx, call.disposition)),
      el('td', { class: 'num', text: clock(call.talk_seconds) }),
      flags,
      el('td', { class: 'label', text: labelOf(call) }));
  }

  function callTable(ctx, id) {
    const head = ['c_time', 'c_caller', 'c_number', 'c_medium', 'c_campaign', 'c_outcome',
                  'c_talk', 'c_flags', 'c_label'];
    return el('table', { id, class: 'calls' },
      el('caption', { class: 'sr-only', text: ctx.t('calls_title') }),
      el('thead', {}, el('tr', {}, ...head.map((k) => el('th', { scope: 'col', text: ctx.t(k) })))),
      el('tbody'));
  }

  function mountList(section, ctx) {
    const t = ctx.t;
    const table = callTable(ctx, 'calls-table');
    const empty = el('p', { class: 'empty', id: 'calls-empty', hidden: true, text: t('no_calls') });
    const more = el('button', { type: 'button', id: 'calls-more', hidden: true, text: t('more') });
    let cursor = null;
    let generation = 0;
    async function load(append) {
      const mine = ++generation;
      more.disabled = true;
      try {
        const page = await ctx.json(`${base(ctx)}/calls?${query(50, append ? cursor : null).toString()}`);
        if (mine !== generation) return;
        const body = table.querySelector('tbody');
        if (!append) body.replaceChildren();
        for (const call of page.items) body.append(callRow(ctx, call));
        cursor = page.next_cursor;
        more.hidden = !cursor;
        empty.hidden = body.children.length > 0;
        section.querySelector('#calls-status').textContent = '';
      } catch (err) {
        section.querySelector('#calls-status').textContent = problemText(err);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', () => load(true));
    section.replaceChildren(
      el('h2', { id: 'calls-title', text: t('calls_title') }),
      filterForm(ctx, () => load(false)), table, empty, more);
    load(false);
  }

  // ---------------------------------------------------------------- one call
  function summary(ctx, call) {
    const t = ctx.t;
    const rows = [
      ['c_time', when(ctx, call.start_time)],
      ['c_caller', call.caller_display ? `${call.caller_number} (${call.caller_display})` : call.caller_number],
      ['prefecture', call.prefecture && call.prefecture !== 'unknown' ? call.prefecture : ''],
      ['c_number', call.tracking_number], ['c_medium', call.medium], ['c_campaign', call.campaign],
      ['c_outcome', disposition(ctx, call.disposition)], ['c_operator', call.operator_uri],
      ['ring', clock(call.ring_seconds)], ['c_talk', clock(call.talk_seconds)],
      ['hung_up_by', call.hung_up_by], ['c_label', labelOf(call)],
    ];
    const dl = el('dl', { class: 'summary', id: 'call-summary' });
    for (const [key, value] of rows) {
      if (value === '' || value === null || value === undefined) continue;
      dl.append(el('dt', { text: t(key) }), el('dd', {}, value));
    }
    const flags = [];
    if (call.valid) flags.push(t('flag_valid'));
    if (call.first_time) flags.push(t('flag_first'));
    if (call.duplicate) flags.push(t('flag_duplicate'));
    if (flags.length) dl.append(el('dt', { text: t('c_flags') }), el('dd', { text: flags.join(', ') }));
    return el('section', { 'aria-labelledby': 'summary-title' },
      el('h3', { id: 'summary-title', text: t('summary') }), dl);
  }

  function flowPath(ctx, call) {
    const t = ctx.t;
    const steps = call.flow_path || [];
    const list = steps.length
      ? el('ol', { class: 'flow-path', id: 'flow-path' }, ...steps.map((s) => el('li', { text: s })))
      : el('p', { class: 'empty', text: t('no_flow') });
    const attempts = call.attempts || [];
    const table = attempts.length ? el('table', { id: 'attempts' },
      el('thead', {}, el('tr', {}, ...['a_target', 'a_result', 'a_start', 'a_end']
        .map((k) => el('th', { scope: 'col', text: t(k) })))),
      el('tbody', {}, ...attempts.map((a) => el('tr', {},
        el('td', { text: String(a.target || a.uri || '') }),
        el('td', { text: String(a.result || a.code || '') }),
        el('td', { text: typeof a.start === 'number' ? when(ctx, a.start) : '' }),
        el('td', { text: typeof a.end === 'number' ? when(ctx, a.end) : '' })))))
      : el('p', { class: 'empty', text: t('no_attempts') });
    return el('section', { 'aria-labelledby': 'flow-title' },
      el('h3', { id: 'flow-title', text: t('flow_path') }), list,
      el('h3', { id: 'attempts-title', text: t('attempts') }), table);
  }

  // Peaks of each channel, from the decoded blob (Web Audio; no request to the server).
  async function channelPeaks(blob, buckets) {
    const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    if (!Ctx) return null;
    const decoder = new Ctx(2, 8000, 8000);
    const audio = await decoder.decodeAudioData(await blob.arrayBuffer());
    const out = [];
    for (let c = 0; c < Math.min(2, audio.numberOfChannels); c += 1) {
      const data = audio.getChannelData(c);
      const step = Math.max(1, Math.floor(data.length / buckets));
      const peaks = new Float32Array(buckets);
      for (let b = 0; b < buckets; b += 1) {
        let peak = 0;
        for (let i = b * step, end = Math.min(data.length, i + step); i < end; i += 1) {
          const v = Math.abs(data[i]);
          if (v > peak) peak = v;
        }
        peaks[b] = peak;
      }
      out.push(peaks);
    }
    return { duration: audio.duration, peaks: out };
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function waveform(ctx, peaks, channel, labelKey, player) {
    const width = 1000;
    const height = 80;
    const mid = height / 2;
    const n = peaks.length;
    const top = [];
    const bottom = [];
    for (let i = 0; i < n; i += 1) {
      const x = (i / Math.max(1, n - 1)) * width;
      const h = Math.max(0.5, Math.min(1, peaks[i] * 1.6) * (mid - 2));
      top.push(`${x.toFixed(1)},${(mid - h).toFixed(1)}`);
      bottom.unshift(`${x.toFixed(1)},${(mid + h).toFixed(1)}`);
    }
    const graphic = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none',
      class: `wave wave-${channel}`, role: 'img', 'aria-label': ctx.t(labelKey) });
    graphic.append(svg('rect', { x: 0, y: 0, width, height, class: 'wave-bg' }),
      svg('polygon', { points: `${top.join(' ')} ${bottom.join(' ')}`, class: 'wave-shape' }),
      svg('line', { x1: 0, x2: 0, y1: 0, y2: height, class: 'playhead' }));
    graphic.addEventListener('click', (event) => {
      const box = graphic.getBoundingClientRect();
      if (player.duration) player.currentTime = ((event.clientX - box.left) / box.width) * player.duration;
    });
    return el('figure', { class: 'channel', 'data-channel': channel },
      el('figcaption', { text: ctx.t(labelKey) }), graphic);
  }

  function follow(section, player) {
    const lines = () => section.querySelectorAll('#transcript button[data-start]');
    const heads = () => section.querySelectorAll('.wave .playhead');
    let frame = 0;
    const update = () => {
      const now = player.currentTime;
      if (player.duration) {
        const x = (now / player.duration) * 1000;
        for (const h of heads()) { h.setAttribute('x1', x); h.setAttribute('x2', x); }
      }
      for (const b of lines()) {
        const on = now >= Number(b.dataset.start) && now < Number(b.dataset.end);
        if (on && b.getAttribute('aria-current') !== 'true') {
          b.setAttribute('aria-current', 'true');
          b.scrollIntoView({ block: 'nearest' });
        } else if (!on && b.hasAttribute('aria-current')) b.removeAttribute('aria-current');
      }
    };
    const loop = () => { update(); if (!player.paused) frame = requestAnimationFrame(loop); };
    player.addEventListener('play', () => { cancelAnimationFrame(frame); frame = requestAnimationFrame(loop); });
    for (const e of ['seeked', 'timeupdate', 'pause']) player.addEventListener(e, update);
  }

  async function recordingSection(ctx, call, path, titleKey) {
    const t = ctx.t;
    const section = el('section', { 'aria-labelledby': 'rec-title', id: 'recording' },
      el('h3', { id: 'rec-title', text: t(titleKey) }));
    if (!path) { section.append(el('p', { class: 'empty', text: t('no_recording') })); return section; }
    const status = el('p', { class: 'help', role: 'status', text: t('loading') });
    const player = el('audio', { id: 'player', controls: true, preload: 'auto', 'aria-labelledby': 'rec-title' });
    section.append(player, status);
    try {
      const { blob, complete } = await audioBlob(ctx, path);
      if (audioUrl) URL.revokeObjectURL(audioUrl);
      audioUrl = URL.createObjectURL(blob);
      player.dataset.blobBytes = String(blob.size);
      player.dataset.complete = String(complete);
      player.src = audioUrl;
      status.textContent = t('waveform_help');
      const shape = await channelPeaks(blob, 400).catch(() => null);
      if (shape) {
        const waves = el('div', { class: 'channels', id: 'channels' });
        const keys = [['caller', 'ch_caller'], ['operator', 'ch_operator']];
        shape.peaks.forEach((p, i) => waves.append(waveform(ctx, p, keys[i][0], keys[i][1], player)));
        section.insertBefore(waves, status);
      }
    } catch (err) {
      status.textContent = `${t('audio_failed')} ${problemText(err)}`;
    }
    return section;
  }

  async function transcriptSection(ctx, call, player) {
    const t = ctx.t;
    const section = el('section', { 'aria-labelledby': 'transcript-title' },
      el('h3', { id: 'transcript-title', text: t('transcript') }));
    let segments = [];
    try {
      segments = (await ctx.json(`${base(ctx)}/calls/${encodeURIComponent(call.call_id)}/transcript`)).segments;
    } catch (err) {
      if (err.status !== 404) section.append(el('p', { class: 'error', text: problemText(err) }));
    }
    if (!segments.length) {
      section.append(el('p', { class: 'empty', id: 'no-transcript', text: t('no_transcript') }));
      return section;
    }
    const list = el('ol', { id: 'transcript', class: 'transcript' });
    for (const s of segments) {
      const who = s.channel === 'operator' ? 'operator' : 'caller';
      const button = el('button', { type: 'button', class: `seg seg-${who}`, 'data-start': s.start,
        'data-end': s.end, 'aria-label': `${t(`sp_${who}`)} ${clock(s.start)}: ${s.text}. ${fill(t('seek_to'), { t: clock(s.start) })}` },
        el('span', { class: 'seg-time', text: clock(s.start) }),
        el('span', { class: 'seg-who', text: t(`sp_${who}`) }),
        el('span', { class: 'seg-text', text: s.text }));
      button.addEventListener('click', () => {
        if (!player) return;
        player.currentTime = Number(s.start);
        player.play().catch(() => {});
      });
      list.append(el('li', { class: `li-${who}` }, button));
    }
    section.append(list);
    return section;
  }

  async function mountDetail(section, ctx, callId) {
    const t = ctx.t;
    section.replaceChildren(el('p', { class: 'help', text: t('loading') }));
    let call;
    try {
      call = await ctx.json(`${base(ctx)}/calls/${encodeURIComponent(callId)}`);
    } catch (err) {
      section.replaceChildren(el('a', { href: '#/calls', text: t('back') }),
        el('p', { class: 'error', role: 'alert', id: 'call-error', text: problemText(err) }));
      return;
    }
    const path = call.links && call.links.recording;
    const recording = await recordingSection(ctx, call, path,
      call.disposition === 'voicemail' ? 'voicemail' : 'recording');
    const player = recording.querySelector('#player');
    const transcript = await transcriptSection(ctx, call, player);
    section.replaceChildren(
      el('a', { href: '#/calls', class: 'back', text: t('back') }),
      el('h2', { id: 'call-title', 'data-call-id': call.call_id, text: `${t('call_detail')} ${when(ctx, call.start_time)}` }),
      el('div', { class: 'detail-grid' }, summary(ctx, call), flowPath(ctx, call)),
      recording, transcript);
    if (player) follow(section, player);
  }

  // ---------------------------------------------------------------- voicemails
  function mountVoicemails(section, ctx) {
    const t = ctx.t;
    const list = el('ul', { id: 'voicemail-list', class: 'voicemails' });
    const status = el('p', { class: 'help', role: 'status' });
    section.replaceChildren(el('h2', { text: t('voicemails_title') }), status, list);
    ctx.json(`${base(ctx)}/voicemails?limit=100`).then((page) => {
      if (!page.items.length) status.textContent = t('no_voicemails');
      for (const call of page.items) {
        const player = el('audio', { controls: true, preload: 'none', hidden: true,
          'aria-label': `${t('voicemail')} ${call.caller_number}` });
        const play = el('button', { type: 'button', class: 'play', text: t('play') });
        play.addEventListener('click', async () => {
          try {
            if (!player.src) player.src = URL.createObjectURL((await audioBlob(ctx,
              `${base(ctx)}/voicemails/${encodeURIComponent(call.call_id)}/audio`)).blob);
            player.hidden = false;
            await player.play();
          } catch (err) { status.textContent = `${t('audio_failed')} ${problemText(err)}`; }
        });
        list.append(el('li', { 'data-call-id': call.call_id },
          el('a', { href: `#/calls/${encodeURIComponent(call.call_id)}`, text: when(ctx, call.start_time) }),
          el('span', { class: 'caller', text: ` ${call.caller_number} → ${call.tracking_number} ` }),
          el('span', { text: clock(call.talk_seconds || (call.end_time - (call.answer_time || call.start_time))) }),
          ' ', play, player));
      }
    }).catch((err) => { status.textContent = problemText(err); });
  }

  function needsBusiness(section, ctx) {
    if (ctx.business()) return false;
    section.replaceChildren(el('p', { class: 'empty', text: ctx.t('pick_business') }));
    return true;
  }

  const pages = [
    { id: 'calls', navKey: 'calls_title',
      mount(section, ctx, rest) {
        if (needsBusiness(section, ctx)) return;
        if (rest) mountDetail(section, ctx, rest); else mountList(section, ctx);
      } },
    { id: 'voicemails', navKey: 'voicemails_title',
      mount(section, ctx) { if (!needsBusiness(section, ctx)) mountVoicemails(section, ctx); } },
  ];
  if (window.MEDIASRV_CONSOLE) for (const p of pages) window.MEDIASRV_CONSOLE.registerPage(p);
  else (window.MEDIASRV_PAGES = window.MEDIASRV_PAGES || []).push(...pages);
})();
