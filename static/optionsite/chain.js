// Live option chain: streams the server-rendered table over /ws/live-options/<UNDERLYING>.
// No dependencies. Protocol: {type: "snapshot"|"delta"|"status"|"error"}; a gap in `seq`
// asks the server to resync. Every field name read here (messages, `data`, legs, freshness)
// is in README.md's "Wire schema", typed once in chains/contracts.py (tests check the names).
// Freshness is the server's verdict (chains/freshness.py), carried by status messages: "Live",
// "No ticks for 42 s" (counted up here between messages), "Market closed", "Last known as of
// 15:29:58". Only a status message or a closed socket changes it: a resent snapshot or a delta
// never makes a chain live. A closed socket is stale at once.
//
// Replay (static/optionsite/history.js): CustomEvent("chain:replay", {detail: {label, chain}})
// on document renders the table and header from `chain` (an /api/v2/options/live answer) and
// shows `label` instead of the freshness badge; the stream is still applied to the live state
// but not drawn until CustomEvent("chain:live"). Cells are updated only where their text
// changed, and nothing in the update path reads layout (no forced reflow per tick).

import * as columns from "./chain-columns.js";

const DASH = "\u2013";
const SIDE_FIELDS = ["oi", "oi_change", "volume", "iv", "ltp", "change", "bid_qty", "bid", "ask",
  "ask_qty", "delta", "gamma", "theta", "vega"];
const QTY = new Set(["oi", "volume", "bid_qty", "ask_qty"]);
const GREEK_DIGITS = { delta: 3, gamma: 5, theta: 2, vega: 2 };
const BUILDUP = { long_buildup: "Long build-up", short_buildup: "Short build-up",
  short_covering: "Short covering", long_unwinding: "Long unwinding" };
const TOTALLED = ["oi", "oi_change", "volume"];
const PREFS = "optionsite.chain"; // localStorage: {atm: "spot"|"forward", side: "calls"|"both"|"puts"}

const config = JSON.parse(document.getElementById("chain-config").textContent);
const table = document.getElementById("oc");
const rowsBody = document.getElementById("rows");
const staleBanner = document.getElementById("stale");
const notice = document.getElementById("notice");
const freshBadge = document.getElementById("freshness");
const replayBadge = document.getElementById("replay");
const marketBadge = document.getElementById("market");
const asOfTime = document.querySelector("#as-of time");

let data = null;          // the live chain (API data shape), kept current while replaying too
let replay = null;        // {label, data} while a recorded minute is shown, else null
let seq = config.seq;     // last applied sequence number
let fresh = config.status.freshness; // {state, words, reason, as_of, seconds_since_tick}
let freshAt = Date.now(); // when `fresh` arrived: a quiet chain's tick count goes on from it
let socket = null;
let retry = 0;
let windowSize = config.window; // null = all strikes
let shift = 0;            // the window's centre, in strikes from the ATM (arrow keys)
const prefs = loadPrefs();
let atmBasis = new URL(location.href).searchParams.get("atm") ?? prefs.atm ?? config.atm;
const cols = columns.load();
let redrawChooser = null;

// The chain drawn: the replayed minute's, else the live one.
const shown = () => (replay ? replay.data : data);

export function indian(value) {
  if (value === null || value === undefined) return DASH;
  const n = Math.round(value);
  const sign = n < 0 ? "-" : "";
  let digits = String(Math.abs(n));
  if (digits.length <= 3) return sign + digits;
  const tail = digits.slice(-3);
  let head = digits.slice(0, -3);
  const groups = [];
  while (head.length > 2) { groups.unshift(head.slice(-2)); head = head.slice(0, -2); }
  if (head) groups.unshift(head);
  return sign + groups.join(",") + "," + tail;
}

// One formatter for every price: toLocaleString builds a new one per call (most of the update
// path's script time with every strike shown).
const NUM2 = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const num2 = (v) => NUM2.format(v);

export function cellText(name, value, lot = null) {
  if (value === null || value === undefined) return DASH;
  if (lot && columns.LOTS_FIELDS.has(name)) value = value / lot; // whole lots: quantities are multiples
  if (QTY.has(name)) return indian(value);
  if (name === "oi_change") return (value > 0 ? "+" : "") + indian(value);
  if (name === "change") return (value > 0 ? "+" : value < 0 ? "-" : "+") + num2(Math.abs(value));
  if (name === "iv") return (value * 100).toFixed(2);
  if (name in GREEK_DIGITS) return value.toFixed(GREEK_DIGITS[name]);
  return num2(value);
}

const lotOf = (data) => (cols.lots ? data.lot_size : null);
const sortedKeys = (data) => Object.keys(data.strikes).sort((a, b) => Number(a) - Number(b));

// The ATM strike on the chosen basis: nearest the spot (NSE's convention; ties: the lower), or
// the chain's own, nearest the put-call-parity forward (chains/presenter.py chain_atm).
function atmOf(data) {
  if (atmBasis === "forward" || data.spot === null || data.spot <= 0) {
    return atmBasis === "forward" ? data.atm_strike : null;
  }
  let best = null;
  for (const k of Object.keys(data.strikes)) {
    const d = Math.abs(Number(k) - data.spot), b = best === null ? Infinity : Math.abs(best - data.spot);
    if (d < b || (d === b && Number(k) < best)) best = Number(k);
  }
  return best;
}

function visibleKeys(data) {
  const keys = sortedKeys(data);
  const atm = atmOf(data);
  if (windowSize === null || atm === null) return keys;
  let centre = 0;
  keys.forEach((k, i) => { if (Math.abs(Number(k) - atm) < Math.abs(Number(keys[centre]) - atm)) centre = i; });
  const moved = Math.min(keys.length - 1, Math.max(0, centre + shift));
  if (data === shown()) shift = moved - centre; // at an end: the next key press moves back at once
  centre = moved;
  return keys.slice(Math.max(0, centre - windowSize), centre + windowSize + 1);
}

function maxOi(data, keys) {
  let max = 0;
  for (const k of keys) for (const side of ["CE", "PE"]) {
    const oi = data.strikes[k][side]?.oi ?? 0;
    if (oi > max) max = oi;
  }
  return max;
}

// In the money against the spot (the forward until the spot is known).
function isItm(data, side, strike) {
  const spot = data.spot ?? data.forward;
  return spot !== null && (side === "CE" ? strike < spot : strike > spot);
}

// How many strikes lie below the spot: the in-the-money shading changes when this does.
function itmEdge(data) {
  const spot = data.spot ?? data.forward;
  return spot === null ? null : Object.keys(data.strikes).filter((k) => Number(k) < spot).length;
}

// The in-the-money shading of the rows drawn, after the spot crossed a strike (classes only).
function reshade(data) {
  for (const row of rowsBody.children) {
    const strike = Number(row.dataset.k);
    for (const td of row.children) {
      if (td.dataset.f) td.classList.toggle("itm", isItm(data, td.dataset.f.slice(0, 2), strike));
    }
  }
}

function cellClass(side, name, change, itm) {
  const classes = [side === "CE" ? "c" : "p", "f-" + name];
  if (name in GREEK_DIGITS) classes.push("g");
  if (cols.hidden.has(name)) classes.push("off");
  if (name === "oi" || name === "ltp") classes.push(name);
  if (name === "change" && change) classes.push(change > 0 ? "up" : "down");
  if (itm) classes.push("itm");
  return classes.join(" ");
}

// The puts side mirrors the calls' around the strike, but the quote fields read left to right in
// the calls' order, as on NSE (chains/presenter.py put_order).
const QUOTES = ["bid_qty", "bid", "ask", "ask_qty"];
function order(side) {
  if (side === "CE") return cols.order;
  const quotes = cols.order.filter((f) => QUOTES.includes(f));
  return [...cols.order].reverse().map((f) => (QUOTES.includes(f) ? quotes.shift() : f));
}

function setBar(td, leg, max) {
  td.style.setProperty("--w", (max ? (100 * (leg?.oi ?? 0)) / max : 0).toFixed(1) + "%");
  const key = leg?.buildup ?? "";
  if (td.dataset.b !== key) td.dataset.b = key;
  td.title = BUILDUP[key] ?? "";
}

function buildRow(data, key, max, atm) {
  const strike = Number(key);
  const legs = data.strikes[key];
  const lot = lotOf(data);
  const tr = document.createElement("tr");
  tr.dataset.k = key;
  if (strike === atm) tr.className = "atm";
  const cell = (side, name) => {
    const leg = legs[side];
    const td = document.createElement("td");
    td.className = cellClass(side, name, leg?.change, isItm(data, side, strike));
    td.dataset.f = side + "." + name;
    td.textContent = cellText(name, leg ? leg[name] : null, lot);
    if (name === "oi") setBar(td, leg, max);
    return td;
  };
  for (const name of order("CE")) tr.appendChild(cell("CE", name));
  const th = document.createElement("th");
  th.className = "strike"; th.scope = "row"; th.textContent = key;
  tr.appendChild(th);
  for (const name of order("PE")) tr.appendChild(cell("PE", name));
  return tr;
}

function buildHead() {
  const thead = table.tHead;
  const count = cols.order.filter((f) => !cols.hidden.has(f)).length;
  const sides = document.createElement("tr");
  sides.className = "sides";
  const side = (text, cls) => { const th = document.createElement("th"); th.textContent = text; th.className = cls; th.colSpan = count; return th; };
  const gap = document.createElement("th"); gap.className = "strike";
  sides.append(side("CALLS", "side-c"), gap, side("PUTS", "side-p"));
  const row = document.createElement("tr");
  row.className = "cols";
  const head = (s, name) => {
    const th = document.createElement("th");
    th.className = cellClass(s, name, null, false);
    th.dataset.col = s + "." + name;
    th.textContent = columns.LABELS[name] + (cols.lots && columns.LOTS_FIELDS.has(name) ? " (lots)" : "");
    return th;
  };
  for (const name of order("CE")) row.append(head("CE", name));
  const strike = document.createElement("th"); strike.className = "strike"; strike.textContent = "Strike";
  row.append(strike);
  for (const name of order("PE")) row.append(head("PE", name));
  thead.replaceChildren(sides, row);
}

function buildFoot(data, keys) {
  const rows = [["shown", `Total \u00b7 ${keys.length} shown`, keys],
    ["all", `All ${Object.keys(data.strikes).length} strikes`, sortedKeys(data)]];
  const foot = table.tFoot;
  foot.replaceChildren(...rows.map(([cls, label, ks]) => {
    const tr = document.createElement("tr");
    tr.className = cls;
    const cell = (side, name) => {
      const td = document.createElement("td");
      td.className = cellClass(side, name, null, false);
      if (TOTALLED.includes(name)) { td.dataset.t = `${cls}.${side}.${name}`; }
      return td;
    };
    for (const name of order("CE")) tr.append(cell("CE", name));
    const th = document.createElement("th");
    th.className = "strike"; th.scope = "row"; th.dataset.t = cls + ".label"; th.textContent = label;
    tr.append(th);
    for (const name of order("PE")) tr.append(cell("PE", name));
    return tr;
  }));
  renderTotals(data, keys);
}

function renderAll() {
  const data = shown();
  if (!rowsBody || !data) return;
  const keys = visibleKeys(data);
  const max = maxOi(data, keys);
  const atm = atmOf(data);
  const fragment = document.createDocumentFragment();
  for (const key of keys) fragment.appendChild(buildRow(data, key, max, atm));
  buildHead();
  rowsBody.replaceChildren(fragment);
  buildFoot(data, keys);
  renderHeader(data);
  renderCharts();
  renderShift();
  table.dataset.drawn = replay ? "replay" : "live"; // drawn here (not by the server) from that chain
}

// A changed cell is highlighted for 0.4-0.8 s: a class set once and cleared in a batch, not an
// animation (an animated background repaints every frame: most of the page's main-thread time
// with every strike shown, measured in Chromium).
let flashNew = new Set(), flashOld = new Set(), flashTimer = null;
function flash(td) {
  flashOld.delete(td); flashNew.add(td); td.classList.add("flash");
  flashTimer ??= setInterval(ageFlash, 400);
}
function ageFlash() {
  for (const td of flashOld) td.classList.remove("flash");
  flashOld = flashNew; flashNew = new Set();
  if (!flashOld.size) { clearInterval(flashTimer); flashTimer = null; }
}

function updateLegs(data, legs) {
  const keys = visibleKeys(data);
  const max = maxOi(data, keys);
  const lot = lotOf(data);
  for (const [key, sides] of Object.entries(legs)) {
    const row = rowsBody?.querySelector(`tr[data-k="${CSS.escape(key)}"]`);
    if (!row) continue;
    for (const side of Object.keys(sides)) {
      const leg = data.strikes[key][side]; // the merged leg: a delta may carry only some fields
      const itm = isItm(data, side, Number(key));
      for (const name of SIDE_FIELDS) {
        const td = row.querySelector(`[data-f="${side}.${name}"]`);
        if (!td) continue;
        const text = cellText(name, leg[name], lot);
        if (td.textContent !== text) {
          td.textContent = text;
          td.className = cellClass(side, name, leg.change, itm);
          flash(td);
        }
        if (name === "oi") setBar(td, leg, max);
      }
    }
  }
  renderTotals(data, keys);
}

function renderTotals(data, keys) {
  const lot = lotOf(data);
  const sum = (ks) => {
    const sums = { CE: { oi: 0, oi_change: 0, volume: 0 }, PE: { oi: 0, oi_change: 0, volume: 0 } };
    for (const k of ks) for (const side of ["CE", "PE"]) for (const f of TOTALLED) {
      sums[side][f] += data.strikes[k][side]?.[f] ?? 0;
    }
    return sums;
  };
  const totals = { shown: sum(keys), all: sum(sortedKeys(data)) };
  for (const td of table.tFoot.querySelectorAll("td[data-t]")) {
    const [which, side, f] = td.dataset.t.split(".");
    const text = cellText(f, totals[which][side][f], lot);
    if (td.textContent !== text) td.textContent = text;
  }
}

function timeToExpiry() {
  const [y, m, d] = config.expiry.split("-").map(Number);
  const close = Date.UTC(y, m - 1, d, 10, 0, 0); // 15:30 IST
  let left = Math.floor((close - Date.now()) / 1000);
  if (left <= 0) return "expired";
  const days = Math.floor(left / 86400); left %= 86400;
  const hours = Math.floor(left / 3600); const minutes = Math.floor((left % 3600) / 60);
  return days ? `${days}d ${hours}h ${minutes}m` : `${hours}h ${minutes}m`;
}

// The spot's change since the index's previous close, as chains/presenter.py spot_change
// writes it: "+123.45 (+0.47%)", coloured up/down; "–" with the reason while either is unknown.
const SPOT_CHANGE_UNKNOWN = "The change since the previous close needs the index's previous close, which the chain's feed has not sent yet";
function renderSpotChange(spot, prevClose) {
  const el = document.querySelector('[data-h="spot_change"]');
  if (!el) return;
  let text = DASH, css = "", title = SPOT_CHANGE_UNKNOWN;
  if (spot !== null && spot !== undefined && prevClose !== null && prevClose !== undefined && prevClose > 0) {
    const change = Math.round((spot - prevClose) * 100) / 100;
    const pct = Math.round((change / prevClose) * 10000) / 100 + 0; // + 0: no "-0.00"
    text = `${cellText("change", change)} (${pct < 0 ? "" : "+"}${pct.toFixed(2)}%)`;
    css = change > 0 ? "up" : change < 0 ? "down" : "";
    title = `Since the previous close, ${num2(prevClose)}`;
  }
  if (el.textContent !== text) el.textContent = text;
  if (el.className !== css) el.className = css;
  if (el.title !== title) el.title = title;
}

function renderHeader(data) {
  const set = (name, text) => { const el = document.querySelector(`[data-h="${name}"]`); if (el && el.textContent !== text) el.textContent = text; };
  const price = (v) => (v === null || v === undefined ? DASH : num2(v));
  set("spot", price(data.spot));
  renderSpotChange(data.spot, data.spot_prev_close);
  set("forward", price(data.forward));
  const atm = atmOf(data);
  set("atm_strike", atm === null ? DASH : String(atm));
  const atmLegs = atm === null ? null : data.strikes[String(atm)];
  const ivs = atmLegs ? ["CE", "PE"].map((s) => atmLegs[s]?.iv).filter((v) => v !== null && v !== undefined) : [];
  set("atm_iv", ivs.length ? ((ivs.reduce((a, b) => a + b, 0) / ivs.length) * 100).toFixed(2) : DASH);
  set("pcr", data.pcr === null ? DASH : data.pcr.toFixed(2));
  set("max_pain", data.max_pain === null ? DASH : String(data.max_pain));
  set("to_expiry", timeToExpiry());
  set("lot_size", String(data.lot_size));
  document.getElementById("atm-basis").textContent = atmBasis;
  for (const row of rowsBody?.children ?? []) row.classList.toggle("atm", Number(row.dataset.k) === atm);
}

function renderShift() {
  const el = document.getElementById("window-shift");
  el.hidden = shift === 0 || windowSize === null;
  el.textContent = `Window ${Math.abs(shift)} strike${Math.abs(shift) === 1 ? "" : "s"} ${shift < 0 ? "below" : "above"} ATM \u00b7 Home: back`;
}

// --- charts (SVG, redrawn at most every 500 ms) ----------------------------------------------
let chartTimer = null;
function renderCharts() {
  if (chartTimer) return;
  chartTimer = setTimeout(() => { chartTimer = null; const d = shown(); if (d) { drawOi(d); drawIv(d); } }, 500);
}

function svgEl(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawOi(data) {
  const svg = document.getElementById("oi-chart");
  if (!svg) return;
  const keys = visibleKeys(data);
  const max = maxOi(data, keys) || 1;
  const atm = atmOf(data);
  const width = 600, height = 200, slot = width / Math.max(keys.length, 1);
  const parts = [];
  keys.forEach((k, i) => {
    const ce = data.strikes[k].CE?.oi ?? 0, pe = data.strikes[k].PE?.oi ?? 0;
    const hc = (ce / max) * height, hp = (pe / max) * height;
    parts.push(svgEl("rect", { x: i * slot + slot * 0.1, y: height - hc, width: slot * 0.4, height: hc, class: "bar ce" }));
    parts.push(svgEl("rect", { x: i * slot + slot * 0.5, y: height - hp, width: slot * 0.4, height: hp, class: "bar pe" }));
    if (Number(k) === atm) parts.push(svgEl("line", { x1: i * slot + slot / 2, x2: i * slot + slot / 2, y1: 0, y2: height, class: "atm" }));
  });
  const label = (text, x) => { const t = svgEl("text", { x, y: 215, class: "axis" }); t.textContent = text; return t; };
  if (keys.length) { parts.push(label(keys[0], 0)); parts.push(label(keys[keys.length - 1], width - 40)); }
  svg.replaceChildren(...parts);
}

function drawIv(data) {
  const svg = document.getElementById("iv-chart");
  if (!svg) return;
  const keys = visibleKeys(data);
  const points = { CE: [], PE: [] };
  let lo = Infinity, hi = -Infinity;
  keys.forEach((k, i) => { for (const s of ["CE", "PE"]) { const iv = data.strikes[k][s]?.iv; if (iv !== null && iv !== undefined) { points[s].push([i, iv]); lo = Math.min(lo, iv); hi = Math.max(hi, iv); } } });
  const parts = [];
  if (lo <= hi) {
    const width = 600, height = 200, slot = width / Math.max(keys.length, 1), span = hi - lo || 1;
    for (const s of ["CE", "PE"]) {
      const d = points[s].map(([i, iv]) => `${(i * slot + slot / 2).toFixed(1)},${(height - ((iv - lo) / span) * (height - 10) - 5).toFixed(1)}`).join(" ");
      if (d) parts.push(svgEl("polyline", { points: d, class: "smile " + s.toLowerCase() }));
    }
    const label = (text, y) => { const t = svgEl("text", { x: 2, y, class: "axis" }); t.textContent = text; return t; };
    parts.push(label((hi * 100).toFixed(1) + "%", 12), label((lo * 100).toFixed(1) + "%", 198));
  }
  svg.replaceChildren(...parts);
}

// --- freshness, market and feed badges --------------------------------------------------------
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const IST = new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Kolkata", year: "numeric",
  month: "numeric", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hourCycle: "h23" });

function istParts(date) {
  return Object.fromEntries(IST.formatToParts(date).map((p) => [p.type, p.value]));
}

// The server's clock_text: "15:29:58" today (Indian time), "12 Mar 15:29:58" before.
export function clockText(iso) {
  if (!iso) return DASH;
  const at = istParts(new Date(iso));
  const today = istParts(new Date());
  const time = `${at.hour}:${at.minute}:${at.second}`;
  if (at.year === today.year && at.month === today.month && at.day === today.day) return time;
  return `${at.day} ${MONTHS[Number(at.month) - 1]} ${time}`;
}

// The server's no_ticks_words.
export function noTicksWords(seconds) {
  if (seconds === null || seconds === undefined) return "No ticks yet";
  return seconds < 120 ? `No ticks for ${seconds} s` : `No ticks for ${Math.floor(seconds / 60)} min`;
}

function staleFreshness(reason) {
  const asOf = data?.as_of ?? fresh?.as_of ?? null;
  return { state: "stale", words: asOf ? "Last known as of " + clockText(asOf) : "No data",
    reason, as_of: asOf, seconds_since_tick: null };
}

function renderFreshness() {
  let words = fresh.words;
  if (fresh.state === "quiet" && fresh.seconds_since_tick !== null) {
    words = noTicksWords(fresh.seconds_since_tick + Math.floor((Date.now() - freshAt) / 1000));
  }
  // While a recorded minute is shown its label takes the badge's place: never "Live" then.
  freshBadge.hidden = replay !== null;
  replayBadge.hidden = replay === null;
  if (replay && replayBadge.textContent !== replay.label) replayBadge.textContent = replay.label;
  if (freshBadge.textContent !== words) freshBadge.textContent = words;
  freshBadge.className = "badge fresh-" + fresh.state;
  freshBadge.dataset.state = fresh.state;
  freshBadge.title = fresh.reason || "Ticks arriving";
  const asOf = replay ? replay.data.as_of : (data?.as_of ?? fresh.as_of);
  const asOfText = clockText(asOf);
  if (asOfTime.textContent !== asOfText) { asOfTime.textContent = asOfText; asOfTime.dateTime = asOf ?? ""; }
  const stale = fresh.state === "stale" && replay === null;
  staleBanner.hidden = !stale;
  if (stale) {
    document.getElementById("stale-words").textContent = words;
    document.getElementById("stale-reason").textContent = fresh.reason ? " \u2014 " + fresh.reason : "";
  }
  document.body.classList.toggle("is-stale", stale);
}

// The calendar's verdict (rendered by the server) until the feed says more: a closed market
// per the broker's status messages, or ticks arriving (open).
function renderMarket() {
  let state = config.market.state, words = config.market.words;
  if (fresh.state === "closed" && state === "open") { state = "closed"; words = "Market closed"; }
  if (fresh.state === "live") { state = "open"; words = "Market open"; }
  if (marketBadge.textContent !== words) marketBadge.textContent = words;
  marketBadge.className = "badge market-" + state;
  marketBadge.dataset.state = state;
}

// feedState null: this page lost its own connection, so it cannot know the feed's state.
function renderFeed(feedState) {
  const feed = document.getElementById("feed");
  feed.textContent = feedState === null ? "Feed state unknown"
    : (config.feed_words[feedState] ?? config.feed_unknown);
  feed.className = "badge feed-" + (feedState ?? "unknown");
  feed.dataset.state = feedState ?? "unknown";
  feed.title = fresh.reason || "The feed worker holds the broker connection";
}

function applyStatus(msg) {
  if (msg.freshness) fresh = msg.freshness;
  else if (msg.code) fresh = staleFreshness(msg.message); // e.g. store_unavailable
  else if (msg.feed_state === "live" || msg.feed_state === "quiet") { // a server without freshness
    const live = msg.feed_state === "live";
    fresh = { state: msg.feed_state, words: live ? "Live" : "No recent ticks", reason: "",
      as_of: data?.as_of ?? fresh.as_of, seconds_since_tick: live ? 0 : null };
  }
  freshAt = Date.now();
  renderFeed(msg.feed_state);
  notice.hidden = true;
  renderFreshness();
  renderMarket();
}

// --- socket ----------------------------------------------------------------------------------
function onMessage(event) {
  const msg = JSON.parse(event.data);
  if (msg.type === "snapshot") {
    if (!rowsBody && msg.data) { location.reload(); return; } // first data: render it server-side
    data = msg.data; seq = msg.seq; // freshness is the status message's to say
    if (data && !replay) { renderAll(); renderFreshness(); }
  } else if (msg.type === "delta") {
    if (seq !== null && msg.seq !== seq + 1) { socket.send(JSON.stringify({ type: "resync" })); return; }
    if (!data) return;
    seq = msg.seq;
    for (const [key, sides] of Object.entries(msg.legs)) {
      const legs = (data.strikes[key] ??= {});
      for (const [side, fields] of Object.entries(sides)) legs[side] = Object.assign(legs[side] ?? {}, fields);
    }
    const atmBefore = atmOf(data), edgeBefore = itmEdge(data);
    if (msg.header) Object.assign(data, msg.header);
    data.as_of = msg.as_of;
    if (replay) return; // applied, not drawn: the replayed minute stays on screen
    // A new ATM moves the window; a spot that crossed a strike moves the in-the-money shading.
    if (atmOf(data) !== atmBefore && windowSize !== null) renderAll();
    else {
      if (itmEdge(data) !== edgeBefore) reshade(data);
      updateLegs(data, msg.legs); renderHeader(data); renderCharts();
    }
    renderFreshness();
  } else if (msg.type === "status") {
    applyStatus(msg);
  } else if (msg.type === "error") {
    notice.hidden = false; notice.className = "notice " + msg.code; notice.textContent = msg.code + ": " + msg.message;
  }
}

// Closes after which reconnecting cannot help (chains/socket_guard.py): say what to do instead.
const REFUSED = {
  4401: { code: "session_ended", login: true,
    text: "Your session has ended: log in again to see live prices." },
  4429: { code: "too_many_sockets", login: false,
    text: "Too many live chains are open for your user or address: close other tabs of this " +
      "site, then reload this page." },
};

function showRefusal(event) {
  const refusal = REFUSED[event.code];
  if (!refusal) return;
  if (notice.hidden) { // no error message came before the close: its reason, or ours
    notice.className = "notice " + refusal.code;
    notice.textContent = refusal.code + ": " + (event.reason || refusal.text);
  }
  if (refusal.login) {
    const link = document.createElement("a");
    link.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = "Log in again";
    notice.append(" ", link);
  }
  notice.hidden = false;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + config.ws);
  socket.addEventListener("open", () => { retry = 0; });
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", (event) => {
    const refused = event.code >= 4400 && event.code < 4500;
    // Without the socket nothing here is current: stale at once, until a status says otherwise.
    fresh = staleFreshness(REFUSED[event.code]?.text ?? ("The connection to the server is lost" +
      (refused ? "." : ": reconnecting\u2026")));
    freshAt = Date.now();
    renderFreshness();
    renderFeed(null);
    showRefusal(event);
    if (refused) return; // refused (bad request, logged out, too many tabs): the notice says why
    const delay = Math.min(30000, 500 * 2 ** retry++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  });
}

// --- replay (history.js dispatches these) ----------------------------------------------------
document.addEventListener("chain:replay", (event) => {
  const { label, chain } = event.detail;
  if (!chain?.data) { // an answer without a chain: nothing to draw, say so and stay live
    notice.hidden = false; notice.className = "notice";
    notice.textContent = `${label}: no chain was recorded for that minute.`;
    return;
  }
  replay = { label, data: chain.data };
  document.body.classList.add("replaying");
  renderAll(); renderFreshness();
});
document.addEventListener("chain:live", () => {
  replay = null;
  document.body.classList.remove("replaying");
  if (data) renderAll();
  renderFreshness();
});

// --- controls ----------------------------------------------------------------------------------
function loadPrefs() {
  try { return JSON.parse(localStorage.getItem(PREFS) ?? "{}") ?? {}; } catch (error) {
    console.warn("optionsite: the remembered chain settings are unreadable", error);
    return {};
  }
}

function savePrefs() {
  try { localStorage.setItem(PREFS, JSON.stringify(prefs)); } catch (error) { // storage off
    console.warn("optionsite: the chain settings cannot be remembered", error);
  }
}

function setUrl(name, value) {
  const url = new URL(location.href); url.searchParams.set(name, value);
  history.replaceState(null, "", url);
  for (const a of document.querySelectorAll(".expiries a")) { const u = new URL(a.href); u.searchParams.set(name, value); a.href = u; }
}

function columnsChanged() {
  for (const box of document.querySelectorAll("#greek-toggle input")) box.checked = !cols.hidden.has(box.value);
  renderAll();
}

setInterval(() => { renderFreshness(); renderMarket(); }, 1000); // a quiet chain's count goes up

document.getElementById("window")?.addEventListener("change", (event) => {
  windowSize = event.target.value === "all" ? null : Number(event.target.value);
  shift = 0;
  setUrl("window", event.target.value);
  renderAll();
});

const atmSelect = document.getElementById("atm");
atmSelect.value = atmBasis;
atmSelect.addEventListener("change", () => {
  atmBasis = atmSelect.value; prefs.atm = atmBasis; savePrefs();
  setUrl("atm", atmBasis);
  shift = 0;
  renderAll();
});

document.getElementById("greek-toggle").addEventListener("change", (event) => {
  if (event.target.checked) cols.hidden.delete(event.target.value); else cols.hidden.add(event.target.value);
  columns.save(cols); redrawChooser?.(); columnsChanged();
});

function setSide(side) {
  table?.setAttribute("data-side", side);
  for (const r of document.querySelectorAll("#side-toggle input")) r.checked = r.value === side;
  prefs.side = side; savePrefs();
}
document.getElementById("side-toggle").addEventListener("change", (event) => setSide(event.target.value));
setSide(prefs.side ?? "both");

document.getElementById("underlying").addEventListener("change", (event) => {
  location.href = "/chains/" + encodeURIComponent(event.target.value) + "/";
});

redrawChooser = columns.mountChooser(document.getElementById("chooser-body"), cols, columnsChanged);
for (const box of document.querySelectorAll("#greek-toggle input")) box.checked = !cols.hidden.has(box.value);

// --- keyboard ------------------------------------------------------------------------------------
// ↑/↓ move the strike window, Home brings it back to the ATM, e: next expiry, g: next greek
// (one at a time), /: the index picker. Not while typing in a field or with a modifier held.
function nextGreek() {
  const current = columns.GREEKS.find((g) => !cols.hidden.has(g)) ?? columns.GREEKS.at(-1);
  const next = columns.GREEKS[(columns.GREEKS.indexOf(current) + 1) % columns.GREEKS.length];
  for (const g of columns.GREEKS) { if (g === next) cols.hidden.delete(g); else cols.hidden.add(g); }
  columns.save(cols); redrawChooser?.(); columnsChanged();
}

function nextExpiry() {
  const links = [...document.querySelectorAll(".expiries a[data-expiry]")];
  if (links.length < 2) return;
  const at = links.findIndex((a) => a.classList.contains("current"));
  location.href = links[(at + 1) % links.length].href;
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest?.("input, select, textarea, [contenteditable]")) return;
  const moves = { ArrowUp: -1, ArrowDown: 1 };
  if (event.key in moves && windowSize !== null && shown()) {
    shift += moves[event.key];
    event.preventDefault(); renderAll();
  } else if (event.key === "Home" && shift !== 0) {
    shift = 0; event.preventDefault(); renderAll();
  } else if (event.key === "e") {
    nextExpiry();
  } else if (event.key === "g") {
    nextGreek();
  } else if (event.key === "/") {
    event.preventDefault(); document.getElementById("underlying").focus();
  }
});

// The server drew the default columns and ATM; the socket's first snapshot redraws the table
// with this browser's choices (renderAll).
renderMarket();
connect();
