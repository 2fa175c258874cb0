// Live option chain: streams the server-rendered table over /ws/live-options/<UNDERLYING>.
// No dependencies. Protocol: {type: "snapshot"|"delta"|"status"|"error"}; a gap in `seq`
// asks the server to resync. Every field name read here (messages, `data`, legs, freshness)
// is in README.md's "Wire schema", typed once in chains/contracts.py (tests check the names). Freshness is the server's verdict (chains/freshness.py), carried
// by status messages: "Live", "No ticks for 42 s" (counted up here between messages), "Market
// closed", "Last known as of 15:29:58". Only a status message or a closed socket changes it:
// a resent snapshot or a delta never makes a chain live. A closed socket is stale at once.

const DASH = "\u2013";
const SIDE_FIELDS = ["oi", "oi_change", "volume", "iv", "ltp", "change", "bid_qty", "bid", "ask",
  "ask_qty", "delta", "gamma", "theta", "vega"];
const QTY = new Set(["oi", "volume", "bid_qty", "ask_qty"]);
const GREEK_DIGITS = { delta: 3, gamma: 5, theta: 2, vega: 2 };
const BUILDUP = { long_buildup: "Long build-up", short_buildup: "Short build-up",
  short_covering: "Short covering", long_unwinding: "Long unwinding" };

const config = JSON.parse(document.getElementById("chain-config").textContent);
const table = document.getElementById("oc");
const rowsBody = document.getElementById("rows");
const staleBanner = document.getElementById("stale");
const notice = document.getElementById("notice");
const freshBadge = document.getElementById("freshness");
const asOfTime = document.querySelector("#as-of time");

let data = null;          // the full chain (API data shape)
let seq = config.seq;     // last applied sequence number
let fresh = config.status.freshness; // {state, words, reason, as_of, seconds_since_tick}
let freshAt = Date.now(); // when `fresh` arrived: a quiet chain's tick count goes on from it
let socket = null;
let retry = 0;
let windowSize = config.window; // null = all strikes

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

const num2 = (v) => v.toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function cellText(name, value) {
  if (value === null || value === undefined) return DASH;
  if (QTY.has(name)) return indian(value);
  if (name === "oi_change") return (value > 0 ? "+" : "") + indian(value);
  if (name === "change") return (value > 0 ? "+" : value < 0 ? "-" : "+") + num2(Math.abs(value));
  if (name === "iv") return (value * 100).toFixed(2);
  if (name in GREEK_DIGITS) return value.toFixed(GREEK_DIGITS[name]);
  return num2(value);
}

function strikeKey(strike) { return Number.isInteger(strike) ? String(strike) : String(strike); }

function visibleKeys() {
  const keys = Object.keys(data.strikes).sort((a, b) => Number(a) - Number(b));
  if (windowSize === null || data.atm_strike === null) return keys;
  let centre = 0;
  keys.forEach((k, i) => {
    if (Math.abs(Number(k) - data.atm_strike) < Math.abs(Number(keys[centre]) - data.atm_strike)) centre = i;
  });
  return keys.slice(Math.max(0, centre - windowSize), centre + windowSize + 1);
}

function maxOi(keys) {
  let max = 0;
  for (const k of keys) for (const side of ["CE", "PE"]) {
    const oi = data.strikes[k][side]?.oi ?? 0;
    if (oi > max) max = oi;
  }
  return max;
}

function cellClass(side, leg, name, strike) {
  const forward = data.forward ?? data.spot;
  const itm = forward !== null && (side === "CE" ? strike < forward : strike > forward);
  const classes = [side === "CE" ? "c" : "p"];
  if (name in GREEK_DIGITS) classes.push("g", "g-" + name);
  if (name === "oi") classes.push("oi");
  if (name === "ltp") classes.push("ltp");
  if (name === "change" && leg?.change) classes.push(leg.change > 0 ? "up" : "down");
  if (itm) classes.push("itm");
  return classes.join(" ");
}

const CE_ORDER = ["delta", "gamma", "theta", "vega", "oi", "oi_change", "volume", "iv", "ltp",
  "change", "bid_qty", "bid", "ask", "ask_qty"];
const PE_ORDER = ["bid_qty", "bid", "ask", "ask_qty", "change", "ltp", "iv", "volume", "oi_change",
  "oi", "delta", "gamma", "theta", "vega"];

function buildRow(key, max) {
  const strike = Number(key);
  const legs = data.strikes[key];
  const tr = document.createElement("tr");
  tr.dataset.k = key;
  if (strike === data.atm_strike) tr.className = "atm";
  const cell = (side, name) => {
    const leg = legs[side];
    const td = document.createElement("td");
    td.className = cellClass(side, leg, name, strike);
    td.dataset.f = side + "." + name;
    td.textContent = cellText(name, leg ? leg[name] : null);
    if (name === "oi") {
      td.style.setProperty("--w", (max ? (100 * (leg?.oi ?? 0)) / max : 0).toFixed(1) + "%");
      td.title = BUILDUP[leg?.buildup] ?? "";
    }
    return td;
  };
  for (const name of CE_ORDER) tr.appendChild(cell("CE", name));
  const th = document.createElement("th");
  th.className = "strike"; th.scope = "row"; th.textContent = key;
  tr.appendChild(th);
  for (const name of PE_ORDER) tr.appendChild(cell("PE", name));
  return tr;
}

function renderAll() {
  if (!rowsBody || !data) return;
  const keys = visibleKeys();
  const max = maxOi(keys);
  const fragment = document.createDocumentFragment();
  for (const key of keys) fragment.appendChild(buildRow(key, max));
  rowsBody.replaceChildren(fragment);
  renderTotals(keys);
  renderHeader();
  renderCharts();
}

function updateLegs(legs) {
  const keys = new Set(visibleKeys());
  const max = maxOi([...keys]);
  for (const [key, sides] of Object.entries(legs)) {
    const row = rowsBody?.querySelector(`tr[data-k="${CSS.escape(key)}"]`);
    if (!row) continue;
    for (const [side, leg] of Object.entries(sides)) {
      for (const name of SIDE_FIELDS) {
        const td = row.querySelector(`[data-f="${side}.${name}"]`);
        if (!td) continue;
        const text = cellText(name, leg[name]);
        if (td.textContent !== text) {
          td.textContent = text;
          td.className = cellClass(side, leg, name, Number(key));
          td.classList.remove("flash"); void td.offsetWidth; td.classList.add("flash");
        }
        if (name === "oi") {
          td.style.setProperty("--w", (max ? (100 * (leg.oi ?? 0)) / max : 0).toFixed(1) + "%");
          td.title = BUILDUP[leg.buildup] ?? "";
        }
      }
    }
  }
  renderTotals([...keys]);
}

function renderTotals(keys) {
  const sums = { CE: { oi: 0, oi_change: 0, volume: 0 }, PE: { oi: 0, oi_change: 0, volume: 0 } };
  for (const k of keys) for (const side of ["CE", "PE"]) for (const f of ["oi", "oi_change", "volume"]) {
    sums[side][f] += data.strikes[k][side]?.[f] ?? 0;
  }
  for (const td of document.querySelectorAll("[data-t]")) {
    const [side, f] = td.dataset.t.split(".");
    td.textContent = cellText(f, sums[side][f]);
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

function renderHeader() {
  const set = (name, text) => { const el = document.querySelector(`[data-h="${name}"]`); if (el && el.textContent !== text) el.textContent = text; };
  const price = (v) => (v === null || v === undefined ? DASH : num2(v));
  set("spot", price(data.spot));
  set("forward", price(data.forward));
  set("atm_strike", data.atm_strike === null ? DASH : String(data.atm_strike));
  const atm = data.atm_strike === null ? null : data.strikes[strikeKey(data.atm_strike)];
  const ivs = atm ? ["CE", "PE"].map((s) => atm[s]?.iv).filter((v) => v !== null && v !== undefined) : [];
  set("atm_iv", ivs.length ? ((ivs.reduce((a, b) => a + b, 0) / ivs.length) * 100).toFixed(2) : DASH);
  set("pcr", data.pcr === null ? DASH : data.pcr.toFixed(2));
  set("max_pain", data.max_pain === null ? DASH : String(data.max_pain));
  set("to_expiry", timeToExpiry());
  for (const row of rowsBody?.children ?? []) row.classList.toggle("atm", Number(row.dataset.k) === data.atm_strike);
}

// --- charts (SVG, redrawn at most every 500 ms) ----------------------------------------------
let chartTimer = null;
function renderCharts() {
  if (chartTimer) return;
  chartTimer = setTimeout(() => { chartTimer = null; drawOi(); drawIv(); }, 500);
}

function svgEl(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawOi() {
  const svg = document.getElementById("oi-chart");
  if (!svg || !data) return;
  const keys = visibleKeys();
  const max = maxOi(keys) || 1;
  const width = 600, height = 200, slot = width / Math.max(keys.length, 1);
  const parts = [];
  keys.forEach((k, i) => {
    const ce = data.strikes[k].CE?.oi ?? 0, pe = data.strikes[k].PE?.oi ?? 0;
    const hc = (ce / max) * height, hp = (pe / max) * height;
    parts.push(svgEl("rect", { x: i * slot + slot * 0.1, y: height - hc, width: slot * 0.4, height: hc, class: "bar ce" }));
    parts.push(svgEl("rect", { x: i * slot + slot * 0.5, y: height - hp, width: slot * 0.4, height: hp, class: "bar pe" }));
    if (Number(k) === data.atm_strike) parts.push(svgEl("line", { x1: i * slot + slot / 2, x2: i * slot + slot / 2, y1: 0, y2: height, class: "atm" }));
  });
  const label = (text, x) => { const t = svgEl("text", { x, y: 215, class: "axis" }); t.textContent = text; return t; };
  if (keys.length) { parts.push(label(keys[0], 0)); parts.push(label(keys[keys.length - 1], width - 40)); }
  svg.replaceChildren(...parts);
}

function drawIv() {
  const svg = document.getElementById("iv-chart");
  if (!svg || !data) return;
  const keys = visibleKeys();
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

// --- freshness ------------------------------------------------------------------------------
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
  if (freshBadge.textContent !== words) freshBadge.textContent = words;
  freshBadge.className = "badge fresh-" + fresh.state;
  freshBadge.dataset.state = fresh.state;
  freshBadge.title = fresh.reason || "Ticks arriving";
  const asOf = data?.as_of ?? fresh.as_of;
  const asOfText = clockText(asOf);
  if (asOfTime.textContent !== asOfText) { asOfTime.textContent = asOfText; asOfTime.dateTime = asOf ?? ""; }
  const stale = fresh.state === "stale";
  staleBanner.hidden = !stale;
  if (stale) {
    document.getElementById("stale-words").textContent = words;
    document.getElementById("stale-reason").textContent = fresh.reason ? " \u2014 " + fresh.reason : "";
  }
  document.body.classList.toggle("is-stale", stale);
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
  const feed = document.getElementById("feed");
  feed.textContent = "Feed: " + msg.feed_state;
  feed.className = "badge feed-" + msg.feed_state;
  notice.hidden = true;
  renderFreshness();
}

// --- socket ----------------------------------------------------------------------------------
function onMessage(event) {
  const msg = JSON.parse(event.data);
  if (msg.type === "snapshot") {
    if (!rowsBody && msg.data) { location.reload(); return; } // first data: render it server-side
    data = msg.data; seq = msg.seq; // freshness is the status message's to say
    if (data) { renderAll(); renderFreshness(); }
  } else if (msg.type === "delta") {
    if (seq !== null && msg.seq !== seq + 1) { socket.send(JSON.stringify({ type: "resync" })); return; }
    if (!data) return;
    seq = msg.seq;
    for (const [key, sides] of Object.entries(msg.legs)) Object.assign(data.strikes[key] ??= {}, sides);
    const atmBefore = data.atm_strike;
    if (msg.header) Object.assign(data, msg.header);
    data.as_of = msg.as_of;
    if (data.atm_strike !== atmBefore && windowSize !== null) renderAll();
    else { updateLegs(msg.legs); renderHeader(); renderCharts(); }
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
    showRefusal(event);
    if (refused) return; // refused (bad request, logged out, too many tabs): the notice says why
    const delay = Math.min(30000, 500 * 2 ** retry++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  });
}

setInterval(renderFreshness, 1000); // a quiet chain's count goes up; nothing else moves here

document.getElementById("window")?.addEventListener("change", (event) => {
  windowSize = event.target.value === "all" ? null : Number(event.target.value);
  const url = new URL(location.href); url.searchParams.set("window", event.target.value);
  history.replaceState(null, "", url);
  for (const a of document.querySelectorAll(".expiries a")) { const u = new URL(a.href); u.searchParams.set("window", event.target.value); a.href = u; }
  renderAll();
});

document.getElementById("greek-toggle")?.addEventListener("change", (event) => {
  if (table) table.dataset.greek = event.target.value;
});

connect();
