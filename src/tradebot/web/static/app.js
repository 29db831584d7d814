// tradebot dashboard: one WebSocket (/ws) for the live picture, REST for history, canvas for the charts.
// No framework, no CDN: everything the page needs is served by `tradebot web` itself.
'use strict';

// The operator's one zone (TRADEBOT_DISPLAY_TZ), told by /api/session/me before anything is drawn.
let TZ = 'America/New_York';
let TZL = 'ET';
const S = {
  meta: null, bars: {}, developing: {}, book: {}, regime: {}, position: null, decisions: [], alerts: [],
  executions: [], health: null, link: null, symbol: null, wsConnects: 0, messages: 0, equity: [],
  shown: {},  // fill id -> Date.now() when it first appeared on the page
};
let ws = null;
let backoff = 500;
let drawPending = false;
let loggedIn = false;

const $ = (sel) => document.querySelector(sel);
let timeFmt = null;
let dayFmt = null;
function setZone(zone) {
  TZ = zone || TZ;
  timeFmt = new Intl.DateTimeFormat('en-US', { timeZone: TZ, hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit' });
  dayFmt = new Intl.DateTimeFormat('en-US', { timeZone: TZ, month: '2-digit', day: '2-digit' });
  const part = new Intl.DateTimeFormat('en-US', { timeZone: TZ, timeZoneName: 'short' }).formatToParts(new Date())
    .find((p) => p.type === 'timeZoneName');
  TZL = part ? part.value : TZ;
  const footer = document.querySelector('#tz-note');
  if (footer) footer.textContent = `All times ${TZL} (${TZ}).`;
  const clock = document.querySelector('#clock');
  if (clock) clock.title = `all times on this page are ${TZ}`;
}
setZone(TZ);
const t = (ns) => (ns ? timeFmt.format(new Date(Number(BigInt(ns) / 1000000n))) : '-');
const d = (ns) => (ns ? dayFmt.format(new Date(Number(BigInt(ns) / 1000000n))) : '-');
const money = (c) => (c === null || c === undefined ? '-' : (c < 0 ? '-' : '+') + '$' + (Math.abs(c) / 100).toFixed(2));

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- test and debugging hooks: exactly what the chart draws --------------------------------------------
window.tradebot = {
  state: S,
  chartBars: () => visibleBars().map((b) => ({ ...b })),
  closedBars: (sym) => (S.bars[sym || S.symbol] || []).slice(),
  wsConnects: () => S.wsConnects,
};

// ---- session ---------------------------------------------------------------------------------------------
async function boot() {
  const me = await (await fetch('/api/session/me')).json();
  setZone(me.time_zone);
  setInterval(() => { $('#clock').textContent = timeFmt.format(new Date()) + ' ' + TZL; }, 1000);
  $('#login-form').addEventListener('submit', onLogin);
  for (const b of document.querySelectorAll('button[data-cmd]')) b.addEventListener('click', onControl);
  $('#btn-logout').addEventListener('click', onLogout);
  $('#symbol').addEventListener('change', () => { S.symbol = $('#symbol').value; schedule(); });
  window.addEventListener('resize', schedule);
  if (me.authenticated) start(); else showLogin();
}

function showLogin() {
  loggedIn = false;
  $('#login').hidden = false;
  $('#login-token').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const token = $('#login-token').value;
  const r = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
  if (!r.ok) { $('#login-error').textContent = 'wrong token'; return; }
  $('#login-error').textContent = '';
  $('#control-token').value = token;  // kept in this page's memory only, for control actions
  $('#login-token').value = '';
  $('#login').hidden = true;
  start();
}

async function onLogout() {
  await fetch('/api/logout', { method: 'POST' });
  $('#control-token').value = '';
  if (ws) ws.close();
  showLogin();
}

function start() {
  loggedIn = true;
  $('#login').hidden = true;
  connect();
  loadEquity();
}

// ---- control ---------------------------------------------------------------------------------------------
let armed = null;
async function onControl(ev) {
  const btn = ev.currentTarget;
  const cmd = btn.dataset.cmd;
  if (cmd === 'flatten' && armed !== btn) {  // two clicks: closing every position is not a misclick
    armed = btn; btn.classList.add('armed'); btn.textContent = 'Confirm flatten';
    setTimeout(() => { if (armed === btn) { armed = null; btn.classList.remove('armed'); btn.textContent = 'Flatten'; } }, 4000);
    return;
  }
  armed = null; btn.classList.remove('armed'); if (cmd === 'flatten') btn.textContent = 'Flatten';
  const token = $('#control-token').value;
  const reason = $('#control-reason').value.trim();
  const r = await fetch('/api/session/' + cmd, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
    body: JSON.stringify(reason ? { reason } : {}),
  });
  const body = await r.json().catch(() => ({}));
  const out = $('#control-result');
  out.dataset.status = String(r.status);
  out.textContent = r.ok ? `${cmd}: done, state ${body.state ?? '-'}` : `${cmd}: refused (${r.status}) ${body.detail ?? ''}`;
  out.className = r.ok ? '' : 'error';
}

// ---- live stream -----------------------------------------------------------------------------------------
function connect() {
  if (!loggedIn) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.onopen = () => { S.wsConnects += 1; backoff = 500; setLink('live'); };
  ws.onmessage = (e) => { S.messages += 1; handle(JSON.parse(e.data)); };
  ws.onclose = (e) => {
    if (e.code === 4401) { setLink('logged out'); showLogin(); return; }
    setLink('reconnecting');
    if (loggedIn) setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 4000);
  };
}

function setLink(state) {
  const l = $('#link');
  l.dataset.state = state;
  l.textContent = state;
}

function handle(m) {
  switch (m.type) {
    case 'hello':
      S.meta = m.meta || null; S.bars = m.bars || {}; S.developing = m.developing || {}; S.book = m.book || {};
      S.regime = m.regime || {}; S.position = m.position || null; S.decisions = m.decisions || [];
      S.alerts = m.alerts || []; S.executions = m.executions || []; S.health = m.health || null;
      if (m.link) linkStatus(m.link);
      symbols(); renderAll(); break;
    case 'bar': {
      const ring = (S.bars[m.symbol] = S.bars[m.symbol] || []);
      ring.push(m);
      if (ring.length > 300) ring.splice(0, ring.length - 300);
      const dev = S.developing[m.symbol];
      if (dev && dev.start_ns <= m.start_ns) delete S.developing[m.symbol];
      schedule(); break;
    }
    case 'developing': S.developing[m.symbol] = m; schedule(); break;
    case 'book': S.book[m.symbol] = m; renderLadder(); break;
    case 'regime': S.regime[m.symbol] = m; renderRegime(); break;
    case 'decision': S.decisions.push(m); trim(S.decisions); renderDecisions(); break;
    case 'alert': S.alerts.push(m); trim(S.alerts); renderAlerts(); break;
    case 'exec': S.executions.push(m); trim(S.executions); renderExec(); break;
    case 'position': {
      const before = S.position ? S.position.trades.length : 0;
      S.position = m; renderPosition(); schedule();
      if (m.trades.length !== before) loadEquity();
      break;
    }
    case 'health': S.health = m; renderHealth(); break;
    case 'link': linkStatus(m); break;
    default: break;
  }
}

function linkStatus(l) {
  S.link = l;
  if (!l.connected) setLink('daemon down'); else if (ws && ws.readyState === 1) setLink('live');
  renderHealth();
}

function trim(a) { if (a.length > 200) a.splice(0, a.length - 200); }

function symbols() {
  const syms = (S.meta && S.meta.symbols) || Object.keys(S.bars);
  const sel = $('#symbol');
  if (sel.options.length !== syms.length) {
    sel.innerHTML = '';
    for (const s of syms) sel.append(new Option(s, s));
  }
  if (!S.symbol || !syms.includes(S.symbol)) S.symbol = syms[0] || null;
  sel.value = S.symbol || '';
  $('#mode').textContent = S.meta ? `${S.meta.mode} · ${S.meta.feed}` : '-';
}

function renderAll() { renderRegime(); renderLadder(); renderPosition(); renderDecisions(); renderAlerts(); renderExec(); renderHealth(); schedule(); }

// ---- panels ----------------------------------------------------------------------------------------------
function renderRegime() {
  const r = S.regime[S.symbol];
  const box = $('#regime');
  box.dataset.regime = r ? r.regime : '';
  box.textContent = r ? `regime ${r.regime} (confidence ${r.confidence.toFixed(2)}) at ${t(r.ts_ns)} ${TZL} — ${r.reasons.slice(0, 2).join('; ')}` : 'regime -';
  box.style.background = REGIME_COLORS[r ? r.regime : ''] || '#232a33';
}

function renderLadder() {
  const b = S.book[S.symbol];
  const body = $('#ladder tbody');
  body.innerHTML = '';
  if (!b) { const tr = el('tr'); tr.append(el('td', '', 'no book')); body.append(tr); return; }
  const dev = S.developing[S.symbol];
  const last = dev ? dev.close : null;
  const rows = [...b.asks.map(([p, s]) => [p, null, s]).reverse(), ...b.bids.map(([p, s]) => [p, s, null])];
  for (const [p, bid, ask] of rows) {
    const tr = el('tr', p === last ? 'last' : '');
    tr.append(el('td', 'bid', bid ?? ''), el('td', 'px', fmtPx(p)), el('td', 'ask', ask ?? ''));
    body.append(tr);
  }
}

function renderPosition() {
  const p = S.position;
  if (!p) return;
  const st = $('#state');
  st.dataset.state = p.trading_state;
  st.textContent = p.trading_state + (p.reason && p.trading_state !== 'active' ? ` (${p.reason})` : '');
  const pnl = $('#pnl');
  pnl.textContent = money(p.day_pnl_cents);
  pnl.className = p.day_pnl_cents < 0 ? 'neg' : 'pos';
  const pos = Object.entries(p.positions || {}).map(([s, q]) => `${s} ${q > 0 ? '+' : ''}${q}`).join(', ');
  $('#position').textContent = pos || 'flat';
  const box = $('#brackets');
  box.innerHTML = '';
  if (!p.open.length) box.append(el('p', '', 'no open bracket'));
  for (const b of p.open) {
    box.append(el('p', '', `${b.symbol} ${b.side} ${b.open_qty}/${b.quantity} ${b.state} entry ${b.entry ?? b.entry_order ?? 'MKT'} stop ${b.stop} target ${b.target} (${b.pattern})`));
  }
  const body = $('#trades tbody');
  body.innerHTML = '';
  for (const tr of p.trades.slice().reverse().slice(0, 30)) {
    const row = el('tr');
    row.dataset.signalId = tr.signal_id;
    const c = el('td', tr.net_cents < 0 ? 'neg' : 'pos', money(tr.net_cents));
    row.append(el('td', '', `${d(tr.closed_ns)} ${t(tr.closed_ns)}`), el('td', '', tr.symbol), el('td', '', tr.side),
      el('td', '', tr.quantity), el('td', '', fmtPx(tr.entry)), el('td', '', fmtPx(tr.exit)), c, el('td', '', tr.exit_reason));
    body.append(row);
  }
}

function renderDecisions() {
  const ul = $('#decision-feed');
  ul.innerHTML = '';
  for (const x of S.decisions.slice(-60).reverse()) {
    const why = x.outcome === 'taken' ? `taken: entry ${x.entry ?? 'MKT'} stop ${x.stop} target ${x.target}`
      : `${x.outcome}: ${[...(x.codes || []).slice(0, 3), ...(x.reasons || []).slice(0, 2)].join('; ')}`;
    const li = el('li', x.outcome, `${t(x.ts_ns)} ${x.symbol} ${x.pattern} ${x.direction} at ${x.price ?? '-'}, confidence ${Number(x.confidence).toFixed(2)} (${x.regime}) — ${why}`);
    li.dataset.signalId = x.signal_id;
    ul.append(li);
  }
}

function renderAlerts() {
  const ul = $('#alert-feed');
  ul.innerHTML = '';
  for (const a of S.alerts.slice(-60).reverse()) {
    ul.append(el('li', a.severity, `${t(a.ts_ns)} ${a.title}${a.text ? ' — ' + a.text : ''}`));
  }
}

function execText(x) {
  const p = x.payload || {};
  const sym = p.symbol || '';
  if (x.kind === 'broker_fill') return `FILL ${sym} ${p.side > 0 ? 'BUY' : 'SELL'} ${p.quantity} @ ${fmtTicks(sym, p.price)} (${p.client_order_id})`;
  if (x.kind === 'signal') return `signal ${p.signal_id} ${p.verdict}${p.reason ? ': ' + p.reason : ''}`;
  if (x.kind === 'trading_state') return `trading ${p.state}: ${p.reason}`;
  return `${x.kind} ${Object.entries(p).slice(0, 3).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ')}`;
}

function renderExec() {
  const ul = $('#exec-feed');
  ul.innerHTML = '';
  const now = Date.now();
  for (const x of S.executions.slice(-80).reverse()) {
    const li = el('li', x.kind === 'broker_fill' ? 'taken' : '', `${t(x.ts_ns)} ${execText(x)}`);
    if (x.kind === 'broker_fill' && x.payload) {
      const id = x.payload.fill_id;
      if (!(id in S.shown)) S.shown[id] = now;
      li.dataset.fillId = id;
      li.dataset.shownMs = String(S.shown[id]);
      li.dataset.wallNs = String(x.wall_ns || '');
    }
    ul.append(li);
  }
}

function renderHealth() {
  const h = S.health || {};
  const l = S.link || {};
  const rows = [
    ['feed', h.feed_state], ['events', h.events], ['market data age', h.market_data_age_s != null ? h.market_data_age_s + ' s' : '-'],
    ['last market event', h.last_event_ns ? `${d(h.last_event_ns)} ${t(h.last_event_ns)} ${TZL}` : '-'],
    ['loop lag', h.loop_lag_s != null ? h.loop_lag_s + ' s' : '-'], ['rejected records', h.validation_rejects],
    ['errors', h.errors], ['reconnects', h.reconnects], ['heartbeat', h.ts_ns ? `${t(h.ts_ns)} ${TZL}` : '-'],
    ['daemon stream', l.connected === false ? `down: ${l.error || ''}` : 'connected'],
    ['stream drops (daemon)', h.stream ? h.stream.dropped || 0 : '-'], ['stream drops (browsers)', l.dropped_to_browsers ?? 0],
  ];
  const dl = $('#health');
  dl.innerHTML = '';
  for (const [k, v] of rows) dl.append(el('dt', '', k), el('dd', '', v ?? '-'));
}

async function loadEquity() {
  // a web process started before the daemon ever ran has no database yet: ask first (always 200), no console error
  const h = await (await fetch('/', { headers: { Accept: 'application/json' } })).json();
  if (!h.database) { $('#equity-info').textContent = 'no state database yet'; setTimeout(loadEquity, 5000); return; }
  const r = await fetch('/api/statistics?days=30');
  if (!r.ok) return;
  const s = await r.json();
  S.equity = s.equity;
  $('#equity-info').textContent = `${s.trades} trades, net ${money(s.net_cents)}, max drawdown ${money(-s.max_drawdown_cents)}`;
  drawEquity();
}

// ---- footprint chart ---------------------------------------------------------------------------------------
const REGIME_COLORS = { TRENDING_UP: '#1d4d33', TRENDING_DOWN: '#5a2326', RANGING: '#2d3440', VOLATILE: '#5a4514', NO_TRADE: '#3a2d4a' };

function tickOf(sym) { return S.meta && S.meta.tick_size ? Number(S.meta.tick_size[sym]) : 0.25; }
function decimals(sym) { const s = S.meta && S.meta.tick_size ? String(S.meta.tick_size[sym]) : '0.25'; return s.includes('.') ? s.split('.')[1].length : 0; }
function fmtPx(p) { return p === null || p === undefined ? '-' : Number(p).toFixed(decimals(S.symbol)); }
function fmtTicks(sym, ticks) { return (ticks * tickOf(sym)).toFixed(decimals(sym)); }

function chartGeometry() {
  const cv = $('#footprint');
  const W = cv.clientWidth;
  const colW = W < 600 ? 92 : 116;
  const axisW = 58;
  return { W, H: cv.clientHeight, colW, axisW, n: Math.max(1, Math.floor((W - axisW) / colW)) };
}

function visibleBars() {
  const sym = S.symbol;
  if (!sym) return [];
  const closed = S.bars[sym] || [];
  const dev = S.developing[sym];
  const { n } = chartGeometry();
  const out = closed.slice(-(dev ? n - 1 : n));
  if (dev && n > 0) out.push(dev);
  return out;
}

function schedule() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawFootprint(); drawEquity(); renderLadder(); });
}

function drawFootprint() {
  const cv = $('#footprint');
  const { W, H, colW, axisW } = chartGeometry();
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
  const g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const bars = visibleBars();
  const sym = S.symbol;
  $('#chart-info').textContent = sym ? `${sym} · ${S.meta ? S.meta.bar_seconds : '-'} s bars · ${bars.length} shown` : '';
  if (!bars.length) { g.fillStyle = '#8b95a1'; g.fillText('waiting for the first bar…', 12, 20); return; }
  const tick = tickOf(sym);
  const top = 14; const bottom = 34;
  // the price range is the bars' own (+1 tick), so bid x ask stays readable; a stop or target beyond it is
  // pinned to the chart's edge with its price
  const hi = Math.max(...bars.map((b) => b.high)) + tick; const lo = Math.min(...bars.map((b) => b.low)) - tick;
  const open = ((S.position && S.position.open) || []).filter((b) => sameRoot(b.symbol, sym));
  const rows = Math.round((hi - lo) / tick) + 1;
  const rowH = Math.min(22, (H - top - bottom) / rows);
  const pad = (H - top - bottom - rows * rowH) / 2;  // a narrow range sits in the middle, rows stay readable
  const y = (p) => top + pad + ((hi - p) / tick) * rowH + rowH / 2;
  const fs = Math.max(7, Math.min(11, rowH - 1));
  g.font = `${fs}px ui-monospace, monospace`;
  g.textBaseline = 'middle';
  bars.forEach((b, i) => {
    const x0 = i * colW;
    g.fillStyle = b.developing ? '#3a4653' : (REGIME_COLORS[b.regime] || '#232a33');
    g.fillRect(x0 + 1, 0, colW - 2, top - 3);
    g.fillStyle = '#c9d1da';
    g.font = '9px system-ui'; g.textAlign = 'left';
    g.fillText(b.developing ? `${t(b.start_ns)} dev` : t(b.start_ns), x0 + 4, top / 2 - 1);
    g.font = `${fs}px ui-monospace, monospace`;
    if (b.vah != null && b.val != null) {
      g.fillStyle = 'rgba(120,135,255,0.10)';
      g.fillRect(x0 + 8, y(b.vah) - rowH / 2, colW - 12, (b.vah - b.val) / tick * rowH + rowH);
      g.fillStyle = '#9aa7ff';  // the value area as a bracket on the column's left side
      g.fillRect(x0 + 8, y(b.vah) - rowH / 2, 2, (b.vah - b.val) / tick * rowH + rowH);
    }
    const maxv = Math.max(1, ...b.levels.map((l) => Math.max(l.bid, l.ask)));
    const buy = new Set(b.buy_imbalances || []); const sell = new Set(b.sell_imbalances || []);
    const half = (colW - 14) / 2;
    for (const l of b.levels) {
      const yy = y(l.price) - rowH / 2;
      g.fillStyle = sell.has(l.price) ? 'rgba(229,72,77,0.75)' : `rgba(229,72,77,${0.06 + 0.35 * l.bid / maxv})`;
      g.fillRect(x0 + 10, yy + 0.5, half - 1, Math.max(1, rowH - 1));
      g.fillStyle = buy.has(l.price) ? 'rgba(47,191,113,0.75)' : `rgba(47,191,113,${0.06 + 0.35 * l.ask / maxv})`;
      g.fillRect(x0 + 10 + half, yy + 0.5, half - 1, Math.max(1, rowH - 1));
      if (rowH >= 7.5) {
        g.fillStyle = '#e8edf2';
        g.textAlign = 'right'; g.fillText(String(l.bid), x0 + 10 + half - 4, yy + rowH / 2);
        g.textAlign = 'left'; g.fillText(String(l.ask), x0 + 10 + half + 4, yy + rowH / 2);
      }
    }
    g.strokeStyle = '#f5c542'; g.lineWidth = 1.5;
    g.strokeRect(x0 + 10, y(b.poc) - rowH / 2, colW - 14, rowH);
    // OHLC at the left edge
    g.strokeStyle = '#8b95a1'; g.lineWidth = 1;
    g.beginPath(); g.moveTo(x0 + 5, y(b.high)); g.lineTo(x0 + 5, y(b.low)); g.stroke();
    g.fillStyle = b.close >= b.open ? '#2fbf71' : '#e5484d';
    g.fillRect(x0 + 3, Math.min(y(b.open), y(b.close)) - 1, 5, Math.abs(y(b.open) - y(b.close)) + 2);
    // stacked imbalances: a bar at the column's right edge
    for (const p of b.patterns || []) {
      if (!p.pattern.startsWith('STACKED')) continue;
      const ps = p.prices;
      g.fillStyle = p.pattern.includes('BUY') ? '#2fbf71' : '#e5484d';
      g.fillRect(x0 + colW - 4, y(Math.max(...ps)) - rowH / 2, 3, (Math.max(...ps) - Math.min(...ps)) / tick * rowH + rowH);
    }
    if (b.developing) { g.setLineDash([4, 3]); g.strokeStyle = '#8b95a1'; g.strokeRect(x0 + 1, top, colW - 2, H - top - bottom); g.setLineDash([]); }
    g.textAlign = 'center'; g.font = '10px ui-monospace, monospace';
    g.fillStyle = b.delta >= 0 ? '#2fbf71' : '#e5484d';
    g.fillText(`Δ ${b.delta > 0 ? '+' : ''}${b.delta}`, x0 + colW / 2, H - bottom + 9);
    g.fillStyle = b.cum_delta >= 0 ? '#2fbf71' : '#e5484d';
    g.fillText(`CVD ${b.cum_delta > 0 ? '+' : ''}${b.cum_delta}`, x0 + colW / 2, H - bottom + 24);
    g.font = `${fs}px ui-monospace, monospace`;
  });
  // trades: entry/exit markers on the bars they happened in
  for (const tr of ((S.position && S.position.trades) || []).filter((x) => sameRoot(x.symbol, sym))) {
    marker(g, bars, tr.opened_ns, tr.entry, tr.side === 'LONG' ? '#4ea1ff' : '#ff9f43', y, colW, tr.side === 'LONG');
    marker(g, bars, tr.closed_ns, tr.exit, '#d7dde4', y, colW, tr.side !== 'LONG');
  }
  // open brackets: entry, stop, target across the chart
  const right = bars.length * colW;
  for (const b of open) {
    for (const [p, c, label] of [[b.entry ?? b.entry_order, '#4ea1ff', 'entry'], [b.stop, '#e5484d', 'stop'], [b.target, '#2fbf71', 'target']]) {
      if (p == null) continue;
      const beyond = p > hi ? ' ↑' : p < lo ? ' ↓' : '';
      const yy = y(Math.min(hi, Math.max(lo, p)));
      g.strokeStyle = c; g.setLineDash(label === 'entry' ? [] : [6, 4]); g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(0, yy); g.lineTo(right, yy); g.stroke(); g.setLineDash([]);
      g.fillStyle = c; g.textAlign = 'left'; g.font = 'bold 10px ui-monospace, monospace';
      g.fillText(`${label} ${fmtPx(p)}${beyond}`, 2, yy + (p < lo ? -7 : 7));
    }
  }
  // price axis
  g.fillStyle = '#8b95a1'; g.textAlign = 'left'; g.font = '10px ui-monospace, monospace';
  const every = Math.max(1, Math.ceil(12 / rowH));
  for (let k = 0; k < rows; k += every) { const p = hi - k * tick; g.fillText(fmtPx(p), W - axisW + 4, y(p)); }
}

function sameRoot(a, b) { return a === b || a === 'M' + b || b === 'M' + a; }

function marker(g, bars, ns, price, color, y, colW, up) {
  if (!ns || price == null) return;
  const i = bars.findIndex((b) => BigInt(b.start_ns) <= BigInt(ns) && BigInt(ns) < BigInt(b.end_ns));
  if (i < 0) return;
  const x = i * colW + colW - 10; const yy = y(price);
  g.fillStyle = color; g.beginPath();
  if (up) { g.moveTo(x, yy - 6); g.lineTo(x - 5, yy + 3); g.lineTo(x + 5, yy + 3); } else { g.moveTo(x, yy + 6); g.lineTo(x - 5, yy - 3); g.lineTo(x + 5, yy - 3); }
  g.fill();
}

function drawEquity() {
  const cv = $('#equity');
  const W = cv.clientWidth; const H = cv.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
  const g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const pts = [[0, 0], ...S.equity.map(([, v], i) => [i + 1, v])];
  if (pts.length < 2) { g.fillStyle = '#8b95a1'; g.font = '11px system-ui'; g.fillText('no closed trade yet', 8, 16); return; }
  const vs = pts.map((p) => p[1]); const mx = Math.max(0, ...vs); const mn = Math.min(0, ...vs);
  const X = (i) => 6 + (i / (pts.length - 1)) * (W - 12); const Y = (v) => 8 + (mx - v) / Math.max(1, mx - mn) * (H - 16);
  g.strokeStyle = '#3a4653'; g.beginPath(); g.moveTo(0, Y(0)); g.lineTo(W, Y(0)); g.stroke();
  g.strokeStyle = vs[vs.length - 1] >= 0 ? '#2fbf71' : '#e5484d'; g.lineWidth = 2; g.beginPath();
  pts.forEach(([i, v], k) => (k ? g.lineTo(X(i), Y(v)) : g.moveTo(X(i), Y(v))));
  g.stroke();
}

boot();
