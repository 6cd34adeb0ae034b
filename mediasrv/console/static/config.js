'use strict';
// The configuration pages (issue 13 §4): tracking numbers, operators, schedules (week,
// holidays, date overrides), the blocklist, prompts (upload, listen), the business file
// (validated in place: the "file:LINE: key: why" answer marks its line) and the dry run.
// Only the public API v1 is used, with the user's token (ctx.api / ctx.json). Every write
// sends If-Match with the ETag the page was loaded with: a 412 (someone else changed the
// configuration meanwhile) is said plainly, with a way to reload, and nothing is overwritten.
//
// Forms: hours and breaks per week row, holidays, date overrides, blocklist entries, prompt
// upload. File-only (edited in the business file tab): numbers' flows (menus, forwarding,
// queue, voicemail), operators, and schedules added or removed.
(function () {
  const TABS = ['numbers', 'operators', 'schedules', 'blocklist', 'prompts', 'file', 'dryrun'];
  const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

  Object.assign(window.MEDIASRV_I18N.en, {
    nav_config: 'Configuration',
    config_title: 'Configuration',
    'tab.numbers': 'Tracking numbers', 'tab.operators': 'Operators', 'tab.schedules': 'Schedules',
    'tab.blocklist': 'Blocklist', 'tab.prompts': 'Prompts', 'tab.file': 'Business file',
    'tab.dryrun': 'Dry run',
    cfg_version: 'Version', cfg_loading: 'Loading…', cfg_no_business: 'No business to configure.',
    cfg_file_only: 'Edited in the business file.',
    cfg_number: 'Number', cfg_medium: 'Medium', cfg_campaign: 'Campaign', cfg_schedule: 'Schedule',
    cfg_start: 'Start', cfg_targets: 'Targets', cfg_try: 'Dry run',
    cfg_name: 'Name', cfg_display: 'Display name', cfg_address: 'Reached at', cfg_groups: 'Groups',
    cfg_week: 'Week', cfg_days: 'Days', cfg_hours: 'Hours', cfg_breaks: 'Breaks',
    cfg_hours_help: 'Spans like 09:00-18:00, separated by commas; empty: closed.',
    cfg_holidays: 'Public holidays', cfg_holidays_jp: 'Japanese holidays (closed unless hours below)',
    cfg_holidays_none: 'No holidays', cfg_holiday_hours: 'Hours on a holiday',
    cfg_overrides: 'Date overrides', cfg_label: 'Label', cfg_from: 'From', cfg_to: 'To',
    cfg_from_help: 'YYYY-MM-DD, or MM-DD for every year', cfg_add_row: 'Add a week row',
    cfg_add_override: 'Add an override', cfg_remove: 'Remove', cfg_save: 'Save',
    cfg_saved: 'Saved: version {v}.', cfg_unchanged: 'Nothing changed.',
    cfg_conflict: 'Someone else changed this configuration since you loaded it (412). Your change was not saved. Reload to see theirs, then edit again.',
    cfg_reload: 'Reload',
    cfg_block_numbers: 'Numbers', cfg_block_prefixes: 'Prefixes', cfg_block_withheld: 'Withheld callers',
    cfg_block_help: 'One per line.', 'withheld.anonymous': 'Anonymous (非通知)',
    'withheld.payphone': 'Payphone', 'withheld.unavailable': 'Unavailable',
    cfg_prompt_file: 'WAV file', cfg_prompt_name: 'Prompt name', cfg_upload: 'Upload',
    cfg_seconds: 'Seconds', cfg_listen: 'Listen', cfg_no_prompts: 'No prompts of this business yet.',
    cfg_uploaded: 'Uploaded {name}.',
    cfg_file_help: 'The whole business as its declarative file (TOML). Validate shows a problem at its line; Apply stores a new version.',
    cfg_validate: 'Validate', cfg_apply: 'Apply', cfg_valid: 'Valid: {n} tracking number(s).',
    cfg_error_at: 'Line {line}: ',
    dry_title: 'What happens if… (dry run: no call is placed)',
    dry_number: 'Tracking number', dry_caller: 'Caller', dry_caller_help: 'Empty: withheld',
    dry_date: 'Date', dry_time: 'Time', dry_digits: 'Keys pressed', dry_run: 'Explain',
    dry_rules: 'Rules', dry_prompts: 'Prompts heard', dry_targets: 'Rings, in order',
    dry_ends: 'Ends', dry_lines: 'The whole path', dry_none: 'none', dry_version: 'flow version',
  });
  Object.assign(window.MEDIASRV_I18N.ja, {
    nav_config: '設定',
    config_title: '設定',
    'tab.numbers': '計測番号', 'tab.operators': 'オペレーター', 'tab.schedules': '営業時間',
    'tab.blocklist': '着信拒否', 'tab.prompts': '音声ガイダンス', 'tab.file': '設定ファイル',
    'tab.dryrun': '動作確認',
    cfg_version: 'バージョン', cfg_loading: '読み込み中…', cfg_no_business: '設定できる事業者がありません。',
    cfg_file_only: '設定ファイルで編集します。',
    cfg_number: '番号', cfg_medium: '媒体', cfg_campaign: 'キャンペーン', cfg_schedule: '営業時間',
    cfg_start: '開始', cfg_targets: '転送先', cfg_try: '動作確認',
    cfg_name: '名前', cfg_display: '表示名', cfg_address: '接続先', cfg_groups: 'グループ',
    cfg_week: '曜日ごと', cfg_days: '曜日', cfg_hours: '時間', cfg_breaks: '休憩',
    cfg_hours_help: '09:00-18:00 のように、カンマ区切り。空欄は休み。',
    cfg_holidays: '祝日', cfg_holidays_jp: '日本の祝日（下の時間以外は休み）',
    cfg_holidays_none: '祝日なし', cfg_holiday_hours: '祝日の時間',
    cfg_overrides: '日付指定', cfg_label: '名前', cfg_from: '開始日', cfg_to: '終了日',
    cfg_from_help: 'YYYY-MM-DD、毎年なら MM-DD', cfg_add_row: '曜日の行を追加',
    cfg_add_override: '日付指定を追加', cfg_remove: '削除', cfg_save: '保存',
    cfg_saved: '保存しました（バージョン {v}）。', cfg_unchanged: '変更はありません。',
    cfg_conflict: '読み込んだ後に、ほかの人がこの設定を変更しました（412）。この変更は保存されていません。再読み込みして相手の変更を確認してから、もう一度編集してください。',
    cfg_reload: '再読み込み',
    cfg_block_numbers: '番号', cfg_block_prefixes: '先頭番号', cfg_block_withheld: '番号非通知など',
    cfg_block_help: '1行に1つ。', 'withheld.anonymous': '非通知',
    'withheld.payphone': '公衆電話', 'withheld.unavailable': '表示圏外',
    cfg_prompt_file: 'WAV ファイル', cfg_prompt_name: 'ガイダンス名', cfg_upload: 'アップロード',
    cfg_seconds: '秒', cfg_listen: '再生', cfg_no_prompts: 'この事業者のガイダンスはまだありません。',
    cfg_uploaded: '{name} をアップロードしました。',
    cfg_file_help: '事業者の設定全体を宣言的なファイル（TOML）で編集します。「検証」は問題をその行に表示し、「適用」で新しいバージョンとして保存します。',
    cfg_validate: '検証', cfg_apply: '適用', cfg_valid: '問題ありません（計測番号 {n} 件）。',
    cfg_error_at: '{line} 行目: ',
    dry_title: 'もしこう電話がかかったら（動作確認: 実際には発信しません）',
    dry_number: '計測番号', dry_caller: '発信者番号', dry_caller_help: '空欄: 非通知',
    dry_date: '日付', dry_time: '時刻', dry_digits: '押すボタン', dry_run: '確認',
    dry_rules: '判定', dry_prompts: '流れるガイダンス', dry_targets: '呼び出し順',
    dry_ends: '終わり方', dry_lines: '経路の全体', dry_none: 'なし', dry_version: '設定バージョン',
  });

  let ctx = null;
  let state = null; // { business, etag, version, data }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false || k === 'value') continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    if (attrs.value !== undefined) node.value = attrs.value; // after the options, for <select>
    return node;
  }
  const t = (key, vars = {}) => ctx.t(key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
  const base = () => `/api/v1/businesses/${encodeURIComponent(state.business)}`;
  let uid = 0;
  const fieldId = (name) => `cfg-${name}-${++uid}`;

  function labelled(labelText, input, help) {
    input.id = input.id || fieldId('f');
    const wrap = el('div', { class: 'cfg-field' }, el('label', { for: input.id, text: labelText }), input);
    if (help) {
      const h = el('p', { class: 'help', id: input.id + '-help', text: help });
      input.setAttribute('aria-describedby', h.id);
      wrap.append(h);
    }
    return wrap;
  }

  function status(box, kind, text) {
    box.replaceChildren();
    box.className = `cfg-status ${kind}`;
    box.dataset.kind = kind;
    box.append(document.createTextNode(text));
    if (kind === 'conflict') {
      box.append(' ', el('button', { type: 'button', class: 'cfg-reload', text: t('cfg_reload'),
                                     onclick: () => show(currentTab) }));
    }
  }

  // ------------------------------------------------------------------ loading, writing
  async function load() {
    const response = await ctx.api(`${base()}/config`);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    state.etag = response.headers.get('ETag');
    state.data = await response.json();
    const m = /^"v(\d+)-/.exec(state.etag || '');
    state.version = m ? Number(m[1]) : null;
  }

  // A write with If-Match: the answer's kind for `status`, and the new ETag kept.
  async function write(method, path, body, box) {
    const response = await ctx.api(base() + path, {
      method, headers: { 'Content-Type': 'application/json', 'If-Match': state.etag || '*' },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 412) { status(box, 'conflict', t('cfg_conflict')); return false; }
    if (!response.ok) { status(box, 'error', answer.detail || answer.title || response.statusText); return false; }
    state.etag = answer.etag || response.headers.get('ETag') || state.etag;
    state.version = answer.version;
    status(box, 'ok', answer.changed === false ? t('cfg_unchanged') : t('cfg_saved', { v: answer.version }));
    const v = document.getElementById('cfg-version');
    if (v) v.textContent = `${t('cfg_version')} ${state.version}`;
    return true;
  }

  // ------------------------------------------------------------------ tabs
  function table(headers, rows) {
    const head = el('tr', {}, ...headers.map((h) => el('th', { scope: 'col', text: h })));
    return el('table', { class: 'cfg-table' }, el('thead', {}, head), el('tbody', {}, ...rows));
  }

  function targetsText(number) {
    const f = number.forwarding || {};
    return (f.targets || []).map((x) => x.operator || (x.group ? `group ${x.group}` : '') || x.sip || x.phone || '').join(' → ');
  }

  function numbersTab(box) {
    const rows = (state.data.numbers || []).map((n) => el('tr', { dataset: { number: n.number } },
      el('th', { scope: 'row', text: n.number }),
      el('td', { text: n.medium || '' }), el('td', { text: n.campaign || '' }),
      el('td', { text: (n.hours && n.hours.schedule) || '' }), el('td', { text: n.start || 'forward' }),
      el('td', { text: targetsText(n) }),
      el('td', {}, el('a', { href: `#/config/dryrun/${encodeURIComponent(n.number)}`, text: t('cfg_try') }))));
    box.append(table([t('cfg_number'), t('cfg_medium'), t('cfg_campaign'), t('cfg_schedule'),
                      t('cfg_start'), t('cfg_targets'), ''], rows),
               el('p', { class: 'help', text: t('cfg_file_only') }));
  }

  function operatorsTab(box) {
    const rows = (state.data.operators || []).map((o) => el('tr', { dataset: { operator: o.name } },
      el('th', { scope: 'row', text: o.name }), el('td', { text: o.display_name || '' }),
      el('td', { text: o.sip || o.phone || (o.softphone ? `softphone ${o.softphone}` : '') }),
      el('td', { text: (o.groups || []).join(', ') })));
    box.append(table([t('cfg_name'), t('cfg_display'), t('cfg_address'), t('cfg_groups')], rows),
               el('p', { class: 'help', text: t('cfg_file_only') }));
  }

  const spans = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

  function weekRow(entry, list) {
    const row = el('fieldset', { class: 'cfg-week-row' });
    row.append(el('legend', { text: t('cfg_days') }));
    const days = el('div', { class: 'cfg-days' });
    for (const d of DAYS) {
      const id = fieldId('day');
      days.append(el('input', { type: 'checkbox', id, value: d, checked: (entry.days || []).includes(d),
                                class: 'cfg-day' }),
                  el('label', { for: id, text: d }));
    }
    const hours = el('input', { class: 'cfg-hours', value: (entry.hours || []).join(', ') });
    const breaks = el('input', { class: 'cfg-breaks', value: (entry.breaks || []).join(', ') });
    row.append(days, labelled(t('cfg_hours'), hours, t('cfg_hours_help')), labelled(t('cfg_breaks'), breaks),
               el('button', { type: 'button', class: 'secondary', text: t('cfg_remove'), onclick: () => row.remove() }));
    row.read = () => {
      const out = { days: [...days.querySelectorAll('input:checked')].map((i) => i.value), hours: spans(hours.value) };
      const b = spans(breaks.value);
      if (b.length) out.breaks = b;
      return out;
    };
    list.append(row);
  }

  function overrideRow(o, list) {
    const row = el('tr', { class: 'cfg-override' });
    const inputs = {
      label: el('input', { value: o.label || '', 'aria-label': t('cfg_label') }),
      from: el('input', { value: o.from || '', 'aria-label': t('cfg_from'), placeholder: 'YYYY-MM-DD' }),
      to: el('input', { value: o.to || '', 'aria-label': t('cfg_to'), placeholder: 'YYYY-MM-DD' }),
      hours: el('input', { value: (o.hours || []).join(', '), 'aria-label': t('cfg_hours') }),
    };
    for (const k of Object.keys(inputs)) row.append(el('td', {}, inputs[k]));
    row.append(el('td', {}, el('button', { type: 'button', class: 'secondary', text: t('cfg_remove'),
                                           onclick: () => row.remove() })));
    row.read = () => {
      const out = { from: inputs.from.value.trim(), to: (inputs.to.value.trim() || inputs.from.value.trim()),
                    hours: spans(inputs.hours.value) };
      if (inputs.label.value.trim()) out.label = inputs.label.value.trim();
      return out;
    };
    list.append(row);
  }

  function scheduleForm(s) {
    const form = el('form', { class: 'cfg-schedule', dataset: { schedule: s.name } });
    form.append(el('h3', { text: s.name }));
    const week = el('div', { class: 'cfg-week' });
    for (const entry of s.week || []) weekRow(entry, week);
    form.append(el('h4', { text: t('cfg_week') }), week,
                el('button', { type: 'button', class: 'secondary', text: t('cfg_add_row'), onclick: () => weekRow({}, week) }));
    const holidays = el('select', { class: 'cfg-holidays' },
      new Option(t('cfg_holidays_jp'), 'jp'), new Option(t('cfg_holidays_none'), 'none'));
    holidays.value = s.holidays || 'jp';
    const holidayHours = el('input', { class: 'cfg-holiday-hours', value: (s.holiday_hours || []).join(', ') });
    form.append(el('h4', { text: t('cfg_holidays') }), labelled(t('cfg_holidays'), holidays),
                labelled(t('cfg_holiday_hours'), holidayHours, t('cfg_hours_help')));
    const overrides = el('tbody');
    for (const o of s.overrides || []) overrideRow(o, overrides);
    form.append(el('h4', { text: t('cfg_overrides') }),
                el('p', { class: 'help', text: t('cfg_from_help') }),
                el('table', { class: 'cfg-table' }, el('thead', {}, el('tr', {},
                  ...[t('cfg_label'), t('cfg_from'), t('cfg_to'), t('cfg_hours'), ''].map((h) => el('th', { scope: 'col', text: h })))),
                overrides),
                el('button', { type: 'button', class: 'secondary', text: t('cfg_add_override'), onclick: () => overrideRow({}, overrides) }));
    const box = el('p', { class: 'cfg-status', role: 'status', 'aria-live': 'polite' });
    form.append(el('div', { class: 'cfg-actions' }, el('button', { type: 'submit', text: t('cfg_save') })), box);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = { ...s, week: [...week.children].map((r) => r.read()), holidays: holidays.value,
                     holiday_hours: spans(holidayHours.value), overrides: [...overrides.children].map((r) => r.read()) };
      if (await write('PUT', `/schedules/${encodeURIComponent(s.name)}`, body, box)) Object.assign(s, body);
    });
    return form;
  }

  function schedulesTab(box) {
    for (const s of state.data.schedules || []) box.append(scheduleForm(s));
    box.append(el('p', { class: 'help', text: t('cfg_file_only') }));
  }

  function blocklistTab(box) {
    const b = state.data.blocklist || {};
    const form = el('form', { class: 'cfg-blocklist' });
    const numbers = el('textarea', { id: 'cfg-block-numbers', rows: 5, value: (b.numbers || []).join('\n') });
    const prefixes = el('textarea', { id: 'cfg-block-prefixes', rows: 3, value: (b.prefixes || []).join('\n') });
    const withheld = el('fieldset', {}, el('legend', { text: t('cfg_block_withheld') }));
    for (const w of ['anonymous', 'payphone', 'unavailable']) {
      const id = fieldId('wh');
      withheld.append(el('input', { type: 'checkbox', id, value: w, checked: (b.withheld || []).includes(w) }),
                      el('label', { for: id, text: t(`withheld.${w}`) }));
    }
    const box2 = el('p', { class: 'cfg-status', role: 'status', 'aria-live': 'polite' });
    const lines = (ta) => ta.value.split('\n').map((s) => s.trim()).filter(Boolean);
    form.append(labelled(t('cfg_block_numbers'), numbers, t('cfg_block_help')),
                labelled(t('cfg_block_prefixes'), prefixes, t('cfg_block_help')), withheld,
                el('div', { class: 'cfg-actions' }, el('button', { type: 'submit', text: t('cfg_save') })), box2);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = { numbers: lines(numbers), prefixes: lines(prefixes),
                     withheld: [...withheld.querySelectorAll('input:checked')].map((i) => i.value) };
      await write('PUT', '/blocklist', body, box2);
    });
    box.append(form);
  }

  async function promptsTab(box) {
    const list = await ctx.json(`${base()}/prompts`);
    const audio = el('audio', { controls: true, id: 'cfg-audio', class: 'cfg-audio' });
    const rows = list.items.map((p) => el('tr', { dataset: { prompt: p.name } },
      el('th', { scope: 'row', text: p.name }), el('td', { text: p.seconds.toFixed(1) }),
      el('td', {}, el('button', { type: 'button', class: 'secondary cfg-listen', text: t('cfg_listen'),
        'aria-label': `${t('cfg_listen')}: ${p.name}`,
        onclick: async () => {
          // the audio needs the token header, which <audio src> cannot send: fetch it
          const response = await ctx.api(p.links.audio);
          if (!response.ok) return;
          if (audio.src) URL.revokeObjectURL(audio.src);
          audio.src = URL.createObjectURL(await response.blob());
          audio.dataset.prompt = p.name;
          audio.play().catch(() => {});
        } }))));
    box.append(rows.length ? table([t('cfg_name'), t('cfg_seconds'), ''], rows)
                           : el('p', { class: 'empty', text: t('cfg_no_prompts') }), audio);
    const form = el('form', { class: 'cfg-upload' });
    const name = el('input', { id: 'cfg-prompt-name', required: true, pattern: '[a-z0-9][a-z0-9_.\\-]{0,63}' });
    const file = el('input', { id: 'cfg-prompt-file', type: 'file', accept: 'audio/wav,.wav', required: true });
    const box2 = el('p', { class: 'cfg-status', role: 'status', 'aria-live': 'polite' });
    form.append(labelled(t('cfg_prompt_name'), name), labelled(t('cfg_prompt_file'), file),
                el('div', { class: 'cfg-actions' }, el('button', { type: 'submit', text: t('cfg_upload') })), box2);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const response = await ctx.api(`${base()}/prompts/${encodeURIComponent(name.value)}`, {
        method: 'PUT', headers: { 'Content-Type': 'audio/wav' }, body: file.files[0] });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) { status(box2, 'error', answer.detail || response.statusText); return; }
      await show('prompts');
      const again = document.querySelector('#page-config .cfg-upload .cfg-status');
      if (again) status(again, 'ok', t('cfg_uploaded', { name: answer.name }));
    });
    box.append(form);
  }

  function errorLine(detail) {
    const m = /^[^:\n]*:(\d+):/.exec(detail) || /line (\d+)/.exec(detail);
    return m ? Number(m[1]) : null;
  }

  async function fileTab(box) {
    const doc = await ctx.json(`${base()}/file`);
    state.etag = doc.etag;
    const gutter = el('pre', { class: 'cfg-gutter', 'aria-hidden': 'true' });
    const text = el('textarea', { id: 'cfg-file', class: 'cfg-file-text', spellcheck: 'false', wrap: 'off', rows: 28,
                                  value: doc.text, 'aria-describedby': 'cfg-file-help cfg-file-status' });
    const renderGutter = (bad) => {
      const n = text.value.split('\n').length;
      gutter.replaceChildren(...Array.from({ length: n }, (_, i) =>
        el('span', { class: i + 1 === bad ? 'line error' : 'line', dataset: { line: String(i + 1) }, text: String(i + 1) })));
      gutter.scrollTop = text.scrollTop;
    };
    text.addEventListener('input', () => renderGutter(null));
    text.addEventListener('scroll', () => { gutter.scrollTop = text.scrollTop; });
    const box2 = el('p', { id: 'cfg-file-status', class: 'cfg-status', role: 'status', 'aria-live': 'polite' });
    const showProblem = (answer) => {
      const detail = answer.detail || answer.title || '';
      const line = errorLine(detail);
      status(box2, 'error', (line ? t('cfg_error_at', { line }) : '') + detail.replace(/^<request>:(\d+:)?\s*/, ''));
      box2.dataset.line = line ? String(line) : '';
      renderGutter(line);
      if (line) {
        const lines = text.value.split('\n');
        const start = lines.slice(0, line - 1).join('\n').length + (line > 1 ? 1 : 0);
        text.focus();
        text.setSelectionRange(start, start + lines[line - 1].length);
        const lineHeight = text.scrollHeight / lines.length;
        text.scrollTop = Math.max(0, (line - 4) * lineHeight);
      }
    };
    const send = async (validateOnly) => {
      const path = validateOnly ? '/file/validate' : '/file';
      const headers = { 'Content-Type': 'application/json' };
      if (!validateOnly) headers['If-Match'] = state.etag || '*';
      const response = await ctx.api(base() + path, { method: validateOnly ? 'POST' : 'PUT', headers,
                                                       body: JSON.stringify({ text: text.value }) });
      const answer = await response.json().catch(() => ({}));
      if (response.status === 412) { status(box2, 'conflict', t('cfg_conflict')); return; }
      if (!response.ok) { showProblem(answer); return; }
      renderGutter(null);
      box2.dataset.line = '';
      if (validateOnly) { status(box2, 'ok', t('cfg_valid', { n: answer.numbers })); return; }
      state.etag = answer.etag;
      status(box2, 'ok', answer.changed === false ? t('cfg_unchanged') : t('cfg_saved', { v: answer.version }));
    };
    box.append(el('p', { id: 'cfg-file-help', class: 'help', text: t('cfg_file_help') }),
               el('div', { class: 'cfg-editor' }, gutter, text),
               el('div', { class: 'cfg-actions' },
                  el('button', { type: 'button', id: 'cfg-validate', class: 'secondary', text: t('cfg_validate'), onclick: () => send(true) }),
                  el('button', { type: 'button', id: 'cfg-apply', text: t('cfg_apply'), onclick: () => send(false) })),
               box2);
    renderGutter(null);
  }

  function dryRunTab(box, preset) {
    const numbers = (state.data.numbers || []).map((n) => n.number);
    const form = el('form', { class: 'cfg-dryrun' });
    const number = el('select', { id: 'dry-number' }, ...numbers.map((n) => new Option(n, n)));
    if (preset && numbers.includes(preset)) number.value = preset;
    const caller = el('input', { id: 'dry-caller', inputmode: 'tel', placeholder: '090-1234-5678' });
    const date = el('input', { id: 'dry-date', type: 'date', required: true });
    const time = el('input', { id: 'dry-time', type: 'time', required: true, value: '19:00' });
    const digits = el('input', { id: 'dry-digits', inputmode: 'numeric', pattern: '[0-9*#]{0,16}' });
    const now = new Date();
    date.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
    const result = el('div', { id: 'dry-result', class: 'cfg-dry-result', 'aria-live': 'polite' });
    form.append(el('h3', { text: t('dry_title') }),
                el('div', { class: 'cfg-grid' }, labelled(t('dry_number'), number),
                   labelled(t('dry_caller'), caller, t('dry_caller_help')), labelled(t('dry_date'), date),
                   labelled(t('dry_time'), time), labelled(t('dry_digits'), digits)),
                el('div', { class: 'cfg-actions' }, el('button', { type: 'submit', text: t('dry_run') })), result);
    const prompts = new Map((state.data.prompts || []).map((p) => [p.name, p.text || '']));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      result.replaceChildren();
      try {
        const sim = await ctx.json(`${base()}/numbers/${encodeURIComponent(number.value)}/simulate`, {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ caller: caller.value.trim(), at: `${date.value} ${time.value}`,
                                 digits: digits.value.trim() }) });
        const list = (id, items) => items.length
          ? el('ol', { id }, ...items.map((x) => el('li', { text: x })))
          : el('p', { id, class: 'empty', text: t('dry_none') });
        result.dataset.version = String(sim.version);
        result.append(
          el('p', { class: 'dry-head', text: `${sim.number} · ${sim.caller} · ${sim.at.replace('T', ' ').slice(0, 16)} · ${t('dry_version')} ${sim.version}` }),
          el('h4', { text: t('dry_rules') }), list('dry-rules', sim.rules),
          el('h4', { text: t('dry_prompts') }),
          list('dry-prompts', sim.prompts.map((p) => (prompts.get(p) ? `${p}: ${prompts.get(p)}` : p))),
          el('h4', { text: t('dry_targets') }), list('dry-targets', sim.targets),
          el('h4', { text: t('dry_ends') }), el('p', { id: 'dry-ends', text: sim.ends }),
          el('details', {}, el('summary', { text: t('dry_lines') }), el('pre', { id: 'dry-lines', text: sim.lines.join('\n') })));
      } catch (err) {
        status(result, 'error', err.message);
      }
    });
    box.append(form);
  }

  // ------------------------------------------------------------------ the page
  let currentTab = 'numbers';
  let section = null;

  async function show(tab, rest) {
    currentTab = tab;
    const body = section.querySelector('.cfg-body');
    body.replaceChildren(el('p', { class: 'empty', text: t('cfg_loading') }));
    for (const a of section.querySelectorAll('.cfg-tabs a')) {
      if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    try {
      await load();
      const v = document.getElementById('cfg-version');
      if (v) v.textContent = `${t('cfg_version')} ${state.version}`;
      const box = el('div', { class: `cfg-tab cfg-${tab}`, dataset: { tab } });
      const build = { numbers: numbersTab, operators: operatorsTab, schedules: schedulesTab,
                      blocklist: blocklistTab, prompts: promptsTab, file: fileTab, dryrun: dryRunTab }[tab];
      await build(box, rest);
      body.replaceChildren(box);
    } catch (err) {
      body.replaceChildren(el('p', { class: 'error', role: 'alert', text: err.message }));
    }
  }

  function mount(container, context, rest) {
    ctx = context;
    section = container;
    const [tab, ...more] = (rest || '').split('/');
    const chosen = TABS.includes(tab) ? tab : 'numbers';
    const business = ctx.business();
    state = { business, etag: null, version: null, data: {} };
    const tabs = el('ul', {}, ...TABS.map((id) => el('li', {}, el('a', { href: `#/config/${id}`, dataset: { tab: id }, text: t(`tab.${id}`) }))));
    container.replaceChildren(
      el('div', { class: 'cfg-head' }, el('h2', { id: 'config-title', text: t('config_title') }),
         el('p', { class: 'business-name', text: business }), el('p', { id: 'cfg-version', class: 'business-name' })),
      el('nav', { class: 'cfg-tabs', 'aria-label': t('config_title') }, tabs),
      el('div', { class: 'cfg-body' }));
    container.setAttribute('aria-labelledby', 'config-title');
    if (!business) {
      container.querySelector('.cfg-body').replaceChildren(el('p', { class: 'empty', text: t('cfg_no_business') }));
      return;
    }
    show(chosen, more.join('/'));
  }

  const page = { id: 'config', navKey: 'nav_config', mount };
  if (window.MEDIASRV_CONSOLE) window.MEDIASRV_CONSOLE.registerPage(page);
  else (window.MEDIASRV_PAGES = window.MEDIASRV_PAGES || []).push(page);
})();
