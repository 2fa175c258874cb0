// Intraday history on the chain page: OI change by strike over a window beside OI by strike,
// spot/PCR/max pain/ATM IV through the day, the rolling ATM straddle with its VWAP, chosen
// strikes' OI and premium, replay of a recorded minute, and the header's IV rank and expected
// move. Data comes from the history API (README "Intraday history"); charts are uPlot, served
// by the site itself (static/vendor/uplot, from package.json; drawn by history-charts.js).
// Times are exchange time (IST).
// Refreshes once a minute, replaying or not (history is recorded per minute: a per-tick redraw
// would show nothing new). A minute not recorded is null in the API's series: a gap here.
//
// Replay: choosing a minute fetches /api/v2/options/live?…&at=HH:MM and dispatches on document
// CustomEvent("chain:replay", {detail: {label: "replay HH:MM", chain: <that answer's JSON>}});
// "Back to live" dispatches CustomEvent("chain:live"). The table's script renders from them.

import {
  DASH, draw, epoch, intradayChart, multiChart, pct, price, redrawAll, redrawMarkers, resizeAll,
  setup, straddleChart, straddleVwap, strikeChart, strikeText, update, whole,
} from "./history-charts.js";

const section = document.getElementById("history");
const config = JSON.parse(document.getElementById("history-config").textContent);
const liveUrl = new URL(section.dataset.live, location.href);
const apiBase = liveUrl.pathname.replace(/live$/, "");
const REFRESH_MS = 60_000;
const YEAR_SECONDS = 365 * 86400; // chains.analytics.years_to_expiry's year
const MAX_PICKS = 6;

const $ = (id) => document.getElementById(id);

const state = {
  minutes: config.minutes, // recorded minutes of the day, "HH:MM"
  replay: null,            // the minute replayed, "HH:MM", or null: live
  preset: "open",          // OI-change window: "open", "15", "30", "60", "custom"
  series: null,            // /history rows of the whole day
  vwap: null,              // the straddle's VWAP per row of `series`
  oi: null,                // the last /oi-change answer's data
  multi: null,             // the last /strikes answer's data for the picks
  picks: [],               // [{strike: "26000", side: "CE"}]
};

// --- API ---------------------------------------------------------------------------------

async function api(endpoint, params = {}) {
  const url = new URL(apiBase + endpoint, location.href);
  for (const [key, value] of liveUrl.searchParams) url.searchParams.set(key, value);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `${endpoint}: HTTP ${response.status}`);
  return body;
}

function showError(error) {
  const box = $("history-error");
  box.textContent = error ? `History: ${error.message}` : "";
  box.hidden = !error;
}
// --- data loading ------------------------------------------------------------------------------

function lastMinute() { return state.minutes.length ? state.minutes[state.minutes.length - 1] : null; }

function shiftMinutes(hm, delta) {
  const [h, m] = hm.split(":").map(Number);
  const total = Math.max(9 * 60 + 15, h * 60 + m + delta);
  return `${String(Math.floor(total / 60)).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}

function oiWindow() {
  const end = state.replay || lastMinute();
  if (state.preset === "custom") return [$("oi-from").value, $("oi-to").value];
  if (state.preset === "open") return ["09:15", end];
  return [shiftMinutes(end, -Number(state.preset)), end];
}

async function loadOi() {
  if (!lastMinute()) return;
  const [from, to] = oiWindow();
  const answer = await api("oi-change", { from, to });
  state.oi = answer.data;
  $("oi-window").textContent = `${from} \u2192 ${to} IST`;
  $("oi-at").textContent = `at ${answer.data.to_bar.slice(11, 16)} IST`;
  if (state.preset !== "custom") { $("oi-from").value = from; $("oi-to").value = to; }
  fillStrikePicker(answer.data.strikes.map((r) => strikeText(r.strike)));
  update("chart-oi-change", strikeChart("change", "OI change", (side) => side.change));
  update("chart-oi", strikeChart("oi", "OI", (side) => side.oi));
}

async function loadSeries() {
  const answer = await api("history");
  const rows = answer.data.series;
  state.series = rows;
  const recorded = rows.filter((r) => Object.entries(r).some(([k, v]) => k !== "time" && v !== null));
  setMinutes(recorded.map((r) => r.time.slice(11, 16)));
  const volumesOf = async (strikes) => (await api("strikes", { strikes: strikes.join(","), fields: "volume" })).data.strikes;
  state.vwap = recorded.length ? await straddleVwap(rows, volumesOf) : null;
  update("chart-intraday", intradayChart);
  update("chart-straddle", straddleChart);
  refreshExpectedMove();
}

async function loadMulti() {
  if (!state.picks.length || !lastMinute()) { state.multi = null; }
  else {
    const strikes = [...new Set(state.picks.map((p) => p.strike))];
    state.multi = (await api("strikes", { strikes: strikes.join(","), fields: "oi,ltp" })).data;
  }
  renderPicks();
  update("chart-ms-oi", multiChart("oi", "OI", whole));
  update("chart-ms-ltp", multiChart("ltp", "Premium", price));
}

async function loadIvRank() {
  const d = (await api("iv-rank")).data;
  $("iv-rank").textContent = d.iv_rank == null ? DASH : d.iv_rank.toFixed(1);
  $("iv-percentile").textContent = d.iv_percentile == null ? DASH : d.iv_percentile.toFixed(1) + "%";
  $("iv-days").textContent = String(d.days);
  $("iv-rank").title = d.iv_rank == null
    ? `IV rank needs at least two daily closes with a spread (${d.days} so far)`
    : `ATM IV ${pct(d.atm_iv)} between ${pct(d.low)} and ${pct(d.high)} over ${d.days} days`;
}

// Expected move ±1σ to expiry = spot × ATM IV × √T, T in 365-day years to 15:30 IST on the
// expiry day (as chains.analytics.years_to_expiry): of the minute replayed, else of the last
// recorded minute with T from now. Without a recorded minute the server's figure stays.
function refreshExpectedMove() {
  const rows = (state.series || []).filter((r) => r.spot != null && r.atm_iv != null);
  const row = state.replay ? rows.filter((r) => r.time.slice(11, 16) <= state.replay).pop() : rows.pop();
  if (!row) return;
  const at = state.replay ? epoch(row.time) : Date.now() / 1000;
  const years = (config.expiry_epoch - at) / YEAR_SECONDS;
  const cell = $("expected-move");
  if (years <= 0) { cell.textContent = DASH; return; }
  const move = row.spot * row.atm_iv * Math.sqrt(years);
  cell.textContent = `\u00b1${move.toFixed(2)} `;
  const small = document.createElement("small");
  small.textContent = `(${(100 * move / row.spot).toFixed(2)}%)`;
  cell.append(small);
}

async function refresh() {
  try {
    await loadSeries();
    await Promise.all([loadOi(), loadMulti(), loadIvRank()]);
    showError(null);
  } catch (error) { showError(error); }
}

// --- replay --------------------------------------------------------------------------------

function setMinutes(minutes) {
  if (minutes.join() === state.minutes.join() && $("replay-minute").options.length === minutes.length + 1) return;
  state.minutes = minutes;
  const slider = $("replay-slider"), picker = $("replay-minute");
  slider.max = String(Math.max(0, minutes.length - 1));
  slider.disabled = picker.disabled = minutes.length === 0;
  picker.replaceChildren(new Option("live", ""), ...minutes.map((m) => new Option(m, m)));
  $("history-empty").hidden = minutes.length > 0;
  syncReplayControls();
}

function syncReplayControls() {
  const slider = $("replay-slider"), picker = $("replay-minute");
  const index = state.replay === null ? state.minutes.length - 1 : state.minutes.indexOf(state.replay);
  slider.value = String(Math.max(0, index));
  picker.value = state.replay || "";
  $("replay-label").textContent = state.replay === null ? "live" : `replay ${state.replay}`;
  $("replay-live").hidden = state.replay === null;
  section.classList.toggle("replaying", state.replay !== null);
}

async function replay(minute) {
  state.replay = minute;
  syncReplayControls();
  try {
    const answer = await api("live", { at: minute });
    if (state.replay !== minute) return; // another minute was chosen meanwhile
    document.dispatchEvent(new CustomEvent("chain:replay", { detail: { label: `replay ${minute}`, chain: answer } }));
    redrawMarkers();
    refreshExpectedMove();
    await loadOi();
    showError(null);
  } catch (error) { showError(error); }
}

async function backToLive() {
  state.replay = null;
  syncReplayControls();
  document.dispatchEvent(new CustomEvent("chain:live"));
  await refresh();
  redrawMarkers();
}

// --- multi-strike picker ---------------------------------------------------------------------

function fillStrikePicker(strikes) {
  const picker = $("ms-strike");
  const current = [...picker.options].map((o) => o.value);
  if (current.join() === strikes.join()) return;
  const chosen = picker.value;
  picker.replaceChildren(...strikes.map((k) => new Option(k, k)));
  if (strikes.includes(chosen)) picker.value = chosen;
}

function renderPicks() {
  const list = $("ms-chosen");
  list.replaceChildren(...state.picks.map((p, i) => {
    const item = document.createElement("li");
    item.className = `pick pick${i + 1}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "\u00d7";
    remove.setAttribute("aria-label", `Remove ${p.strike} ${p.side}`);
    remove.addEventListener("click", () => { state.picks.splice(i, 1); loadMulti().catch(showError); });
    item.append(`${p.strike} ${p.side} `, remove);
    return item;
  }));
  $("ms-add").disabled = state.picks.length >= MAX_PICKS;
}

function addPick() {
  const pick = { strike: $("ms-strike").value, side: $("ms-side").value };
  if (!pick.strike || state.picks.length >= MAX_PICKS) return;
  if (state.picks.some((p) => p.strike === pick.strike && p.side === pick.side)) return;
  state.picks.push(pick);
  loadMulti().catch(showError);
}

// --- wiring --------------------------------------------------------------------------------

function wire() {
  const slider = $("replay-slider");
  slider.addEventListener("input", () => { $("replay-label").textContent = `replay ${state.minutes[Number(slider.value)]}`; });
  slider.addEventListener("change", () => replay(state.minutes[Number(slider.value)]));
  $("replay-minute").addEventListener("change", (event) => {
    if (event.target.value) replay(event.target.value); else backToLive();
  });
  $("replay-live").addEventListener("click", backToLive);
  for (const button of $("oi-presets").querySelectorAll("button[data-preset]")) {
    button.addEventListener("click", () => {
      state.preset = button.dataset.preset;
      for (const b of $("oi-presets").querySelectorAll("button[data-preset]")) b.setAttribute("aria-pressed", String(b === button));
      loadOi().then(() => showError(null), showError);
    });
  }
  $("ms-add").addEventListener("click", addPick);
  // Sizes follow the figures' widths; colours follow the theme (a toggle or the system's).
  const resize = new ResizeObserver(resizeAll);
  for (const el of section.querySelectorAll(".plot")) resize.observe(el);
  new MutationObserver(redrawAll).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawAll);
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
}

async function start() {
  setup((await import(section.dataset.uplot)).default, section, state);
  const atm = $("ms-strike").value;
  if (atm) state.picks = [{ strike: atm, side: "CE" }, { strike: atm, side: "PE" }];
  for (const [id, make] of [["chart-oi-change", strikeChart("change", "OI change", (s) => s.change)],
    ["chart-oi", strikeChart("oi", "OI", (s) => s.oi)], ["chart-intraday", intradayChart],
    ["chart-straddle", straddleChart], ["chart-ms-oi", multiChart("oi", "OI", whole)],
    ["chart-ms-ltp", multiChart("ltp", "Premium", price)]]) draw(id, make);
  wire();
  section.dataset.ready = "true";
  await refresh();
  section.dataset.loaded = "true";
}

start().catch(showError);
