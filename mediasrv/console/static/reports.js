'use strict';
// Reports (issue 13 §3): the per-day, medium, campaign and tracking-number tables of the
// reports API, with two charts drawn here as inline SVG (no library): calls and valid calls
// per day, and the answer rate per medium. Each table can be saved as the API's CSV.
(() => {
  const TEXTS = {
    en: {
      reports_title: 'Reports', r_since: 'From', r_until: 'To (inclusive)', r_show: 'Show',
      r_calls_per_day: 'Calls and valid calls per day', r_answer_rate: 'Answer rate per medium',
      r_by_day: 'Per day', r_by_medium: 'Per medium', r_by_campaign: 'Per campaign',
      r_by_number: 'Per tracking number', r_csv: 'CSV', r_none: 'No calls in this period.',
      r_key_day: 'Day', r_key_medium: 'Medium', r_key_campaign: 'Campaign',
      r_key_tracking_number: 'Tracking number', m_calls: 'Calls', m_answered: 'Answered',
      m_valid: 'Valid', m_first_time: 'First time', m_abandoned: 'Abandoned',
      m_voicemail: 'Voicemail', m_blocked: 'Blocked', m_answer_rate: 'Answer rate',
      m_mean_talk_seconds: 'Mean talk', r_unset: '(none)', r_zone: 'Days in {z}.',
      r_chart_day_desc: '{n} days; the most calls in a day: {max}.',
    },
    ja: {
      reports_title: 'レポート', r_since: '開始日', r_until: '終了日（当日を含む）', r_show: '表示',
      r_calls_per_day: '日別の着信数と有効数', r_answer_rate: '媒体別の応答率',
      r_by_day: '日別', r_by_medium: '媒体別', r_by_campaign: 'キャンペーン別',
      r_by_number: '計測番号別', r_csv: 'CSV', r_none: 'この期間の通話はありません。',
      r_key_day: '日付', r_key_medium: '媒体', r_key_campaign: 'キャンペーン',
      r_key_tracking_number: '計測番号', m_calls: '着信', m_answered: '応答',
      m_valid: '有効', m_first_time: '初回', m_abandoned: '放棄',
      m_voicemail: '留守電', m_blocked: '拒否', m_answer_rate: '応答率',
      m_mean_talk_seconds: '平均通話', r_unset: '（なし）', r_zone: '日付は {z} の暦日です。',
      r_chart_day_desc: '{n} 日分。1 日の最多着信: {max} 件。',
    },
  };
  const I18N = (window.MEDIASRV_I18N = window.MEDIASRV_I18N || { en: {}, ja: {} });
  for (const lang of Object.keys(TEXTS)) I18N[lang] = Object.assign(I18N[lang] || {}, TEXTS[lang]);

  const METRICS = ['calls', 'answered', 'valid', 'first_time', 'abandoned', 'voicemail', 'blocked',
                   'answer_rate', 'mean_talk_seconds'];
  const TABLES = [['day', 'r_by_day'], ['medium', 'r_by_medium'], ['campaign', 'r_by_campaign'],
                  ['tracking_number', 'r_by_number']];
  const period = {};
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const fill = (s, values) => s.replace(/\{(\w+)\}/g, (_, k) => String(values[k]));
  const isoDay = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  function dayStart(value, plusDays = 0) {
    const [y, m, d] = value.split('-').map(Number);
    return new Date(y, m - 1, d + plusDays).getTime() / 1000;
  }
  function metric(name, value) {
    if (value === null || value === undefined) return '–';
    if (name === 'answer_rate') return `${(value * 100).toFixed(1)}%`;
    if (name === 'mean_talk_seconds') return `${Math.round(value)} s`;
    return String(value);
  }

  // The days from the first to the last of the period, each with its row or zeros.
  function everyDay(rows, sinceDay, untilDay) {
    const byDay = new Map(rows.map((r) => [r.day, r]));
    const out = [];
    const [y, m, d] = sinceDay.split('-').map(Number);
    for (let i = 0; i < 400; i += 1) {
      const key = isoDay(new Date(y, m - 1, d + i));
      if (key > untilDay) break;
      out.push(byDay.get(key) || { day: key, calls: 0, valid: 0 });
    }
    return out;
  }

  function dayChart(ctx, days) {
    const w = 900; const h = 260; const left = 40; const bottom = 40; const top = 16;
    const max = Math.max(1, ...days.map((r) => r.calls));
    const plotH = h - bottom - top;
    const slot = (w - left - 10) / Math.max(1, days.length);
    const bar = Math.max(2, slot * 0.38);
    const chart = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'chart', id: 'chart-days', role: 'img',
      'aria-labelledby': 'chart-days-title chart-days-desc' });
    chart.append(svg('title', { id: 'chart-days-title' }, ctx.t('r_calls_per_day')),
      svg('desc', { id: 'chart-days-desc' }, fill(ctx.t('r_chart_day_desc'), { n: days.length, max })));
    const ticks = Math.min(max, 4);
    for (let i = 0; i <= ticks; i += 1) {
      const v = Math.round((max * i) / ticks);
      const y = top + plotH - (v / max) * plotH;
      chart.append(svg('line', { x1: left, x2: w - 5, y1: y, y2: y, class: 'grid' }),
        svg('text', { x: left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
    }
    const every = Math.ceil(days.length / 10);
    days.forEach((r, i) => {
      const x = left + i * slot + slot * 0.1;
      for (const [name, dx, cls] of [['calls', 0, 'bar-calls'], ['valid', bar, 'bar-valid']]) {
        const v = r[name] || 0;
        const bh = (v / max) * plotH;
        const rect = svg('rect', { x: x + dx, y: top + plotH - bh, width: bar, height: Math.max(0, bh),
          class: cls, 'data-day': r.day, 'data-value': v });
        rect.append(svg('title', {}, `${r.day} ${ctx.t(`m_${name}`)}: ${v}`));
        chart.append(rect);
      }
      if (i % every === 0) {
        chart.append(svg('text', { x: x + bar, y: h - bottom + 16, class: 'axis', 'text-anchor': 'middle' },
          r.day.slice(5)));
      }
    });
    const legend = el('ul', { class: 'legend' },
      el('li', {}, el('span', { class: 'key key-calls' }), ctx.t('m_calls')),
      el('li', {}, el('span', { class: 'key key-valid' }), ctx.t('m_valid')));
    return el('figure', { class: 'chart-box' },
      el('figcaption', { text: ctx.t('r_calls_per_day') }), chart, legend);
  }

  function rateChart(ctx, rows) {
    const w = 900; const row = 34; const left = 180; const span = w - left - 170; const h = 20 + row * Math.max(1, rows.length);
    const chart = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'chart', id: 'chart-rate', role: 'img',
      'aria-labelledby': 'chart-rate-title' });
    chart.append(svg('title', { id: 'chart-rate-title' }, ctx.t('r_answer_rate')));
    for (const p of [0, 0.5, 1]) {
      const x = left + p * span;
      chart.append(svg('line', { x1: x, x2: x, y1: 4, y2: h - 4, class: 'grid' }));
    }
    rows.forEach((r, i) => {
      const y = 10 + i * row;
      const rate = r.answer_rate === null || r.answer_rate === undefined ? 0 : r.answer_rate;
      const name = r.medium || ctx.t('r_unset');
      chart.append(svg('text', { x: left - 8, y: y + 18, class: 'axis', 'text-anchor': 'end' }, name));
      const rect = svg('rect', { x: left, y, width: Math.max(1, rate * span), height: row - 10,
        class: 'bar-rate', 'data-medium': r.medium, 'data-value': rate });
      rect.append(svg('title', {}, `${name}: ${metric('answer_rate', r.answer_rate)}`));
      chart.append(rect, svg('text', { x: left + rate * span + 6, y: y + 18, class: 'value' },
        `${metric('answer_rate', r.answer_rate)} (${r.answered}/${r.calls - (r.blocked || 0)})`));
    });
    return el('figure', { class: 'chart-box' }, el('figcaption', { text: ctx.t('r_answer_rate') }), chart);
  }

  function table(ctx, dim, titleKey, rows, csv) {
    const t = ctx.t;
    const head = el('tr', {}, el('th', { scope: 'col', text: t(`r_key_${dim}`) }),
      ...METRICS.map((m) => el('th', { scope: 'col', class: 'num', text: t(`m_${m}`) })));
    const body = el('tbody', {}, ...rows.map((r) => el('tr', {},
      el('th', { scope: 'row', text: r[dim] === '' ? t('r_unset') : String(r[dim]) }),
      ...METRICS.map((m) => el('td', { class: 'num', text: metric(m, r[m]) })))));
    const button = el('button', { type: 'button', class: 'secondary csv', 'data-dim': dim,
      'aria-label': `${t(titleKey)}: ${t('r_csv')}`, text: t('r_csv') });
    button.addEventListener('click', csv);
    return el('section', { 'aria-labelledby': `rt-${dim}`, class: 'report-table' },
      el('div', { class: 'table-head' }, el('h3', { id: `rt-${dim}`, text: t(titleKey) }), button),
      el('table', { id: `report-${dim}` }, el('thead', {}, head), body));
  }

  async function show(section, ctx, out) {
    const base = `/api/v1/businesses/${encodeURIComponent(ctx.business())}/reports`;
    const q = new URLSearchParams({ since: String(dayStart(period.since)),
                                    until: String(dayStart(period.until, 1)) });
    out.replaceChildren(el('p', { class: 'help', text: '…' }));
    try {
      const results = await Promise.all(TABLES.map(([dim]) => ctx.json(`${base}/${dim}?${q}`)));
      const [days, media] = [results[0], results[1]];
      const parts = [el('p', { class: 'help', text: fill(ctx.t('r_zone'), { z: days.time_zone }) })];
      if (!days.rows.length) parts.push(el('p', { class: 'empty', id: 'report-empty', text: ctx.t('r_none') }));
      parts.push(el('div', { class: 'charts' },
        dayChart(ctx, everyDay(days.rows, period.since, period.until)), rateChart(ctx, media.rows)));
      TABLES.forEach(([dim, key], i) => parts.push(table(ctx, dim, key, results[i].rows, async () => {
        const response = await ctx.api(`${base}/${dim}/csv?${q}`);
        if (!response.ok) return;
        const url = URL.createObjectURL(await response.blob());
        const a = el('a', { href: url, download: `report-${dim}.csv`, hidden: true });
        document.body.append(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      })));
      out.replaceChildren(...parts);
    } catch (err) {
      out.replaceChildren(el('p', { class: 'error', role: 'alert', text: err.message || String(err) }));
    }
  }

  function mount(section, ctx) {
    const t = ctx.t;
    if (!ctx.business()) { section.replaceChildren(el('p', { class: 'empty', text: t('pick_business') })); return; }
    if (!period.until) {
      const today = new Date();
      period.until = isoDay(today);
      period.since = isoDay(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 13));
    }
    const since = el('input', { id: 'rp-since', type: 'date', value: period.since, required: true });
    const until = el('input', { id: 'rp-until', type: 'date', value: period.until, required: true });
    const form = el('form', { class: 'filters inline' },
      el('div', { class: 'field' }, el('label', { for: 'rp-since', text: t('r_since') }), since),
      el('div', { class: 'field' }, el('label', { for: 'rp-until', text: t('r_until') }), until),
      el('button', { type: 'submit', text: t('r_show') }));
    const out = el('div', { id: 'report-out' });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      period.since = since.value; period.until = until.value;
      show(section, ctx, out);
    });
    section.replaceChildren(el('h2', { id: 'reports-title', text: t('reports_title') }), form, out);
    show(section, ctx, out);
  }

  const page = { id: 'reports', navKey: 'reports_title', mount };
  if (window.MEDIASRV_CONSOLE) window.MEDIASRV_CONSOLE.registerPage(page);
  else (window.MEDIASRV_PAGES = window.MEDIASRV_PAGES || []).push(page);
})();
