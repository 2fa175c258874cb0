// Charts of the chain page's intraday history (uPlot; history.js loads the data and drives
// them): strike bar charts (OI change, OI), the intraday lines, the straddle with its VWAP, the
// multi-strike lines. Colours are the section's CSS variables (light and dark themes); times
// are IST. Each axis's tick labels are kept on the chart's element as data-ticks-<axis>.

export const DASH = "\u2013";
const TZ = "Asia/Kolkata";
const HEIGHT = 260;
const MAX_STRIKES = 20; // the strikes endpoint's limit per request

let uPlot = null;   // the library (loaded by history.js)
let section = null; // the history <section>
let state = null;   // history.js's state: series, vwap, oi, multi, picks, replay
const plots = new Map(); // element id → {plot, make: () => [opts, data]}

/** Hands over the library, the section and the shared state; call once before drawing. */
export function setup(library, element, shared) { uPlot = library; section = element; state = shared; }

const hhmmFormat = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const compact = new Intl.NumberFormat("en-IN", { notation: "compact", maximumFractionDigits: 1 });
export const hhmm = (seconds) => hhmmFormat.format(new Date(seconds * 1000));
export const price = (v) => v == null ? DASH : v.toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const whole = (v) => v == null ? DASH : Math.round(v).toLocaleString("en-IN");
export const signedWhole = (v) => v == null ? DASH : (v > 0 ? "+" : "") + whole(v);
export const pct = (v) => v == null ? DASH : (v * 100).toFixed(2) + "%";
export const strikeText = (v) => v == null ? DASH : (Number.isInteger(v) ? String(v) : v.toFixed(2));
export const epoch = (iso) => Date.parse(iso) / 1000;

// --- colours (CSS variables: light and dark themes) ---------------------------------------

function colours() {
  const css = getComputedStyle(section);
  const v = (name) => css.getPropertyValue(name).trim();
  return { fg: v("--h-fg"), muted: v("--h-muted"), grid: v("--h-grid"), ce: v("--h-ce"), pe: v("--h-pe"),
    ceFill: v("--h-ce-fill"), peFill: v("--h-pe-fill"), spot: v("--h-spot"), pain: v("--h-pain"),
    pcr: v("--h-pcr"), iv: v("--h-iv"), straddle: v("--h-straddle"), vwap: v("--h-vwap"),
    marker: v("--h-marker"), picks: [1, 2, 3, 4, 5, 6].map((i) => v(`--h-pick${i}`)) };
}

// --- chart plumbing ------------------------------------------------------------------------

// Each axis's tick labels as drawn, kept on the chart's element (data-ticks-x, data-ticks-y…):
// the canvas holds no text a reader or a test could see.
function ticks(name, format) {
  return (u, splits) => {
    const labels = splits.map((s) => s == null ? "" : format(s));
    u.root.parentElement.dataset[`ticks${name}`] = labels.filter(Boolean).join(" | ");
    return labels;
  };
}

function axis(c, scale, name, label, format, extra = {}) {
  return { scale, label, stroke: c.fg, labelFont: "12px system-ui, sans-serif", font: "11px system-ui, sans-serif",
    grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, values: ticks(name, format), ...extra };
}

// A vertical line at the replayed minute (time charts).
function replayMarker(c) {
  return { hooks: { draw: (u) => {
    if (state.replay === null || !state.series) return;
    const row = state.series.find((r) => r.time.slice(11, 16) === state.replay);
    if (!row) return;
    const x = Math.round(u.valToPos(epoch(row.time), "x", true));
    const { top, height } = u.bbox;
    u.ctx.save();
    u.ctx.strokeStyle = c.marker;
    u.ctx.lineWidth = 2 * devicePixelRatio;
    u.ctx.beginPath(); u.ctx.moveTo(x, top); u.ctx.lineTo(x, top + height); u.ctx.stroke();
    u.ctx.restore();
  } } };
}

// Touch: a tap lands as a mouse click (the browser's), a horizontal drag moves the cursor.
function touchCursor(u) {
  u.over.addEventListener("touchmove", (event) => {
    const touch = event.touches[0];
    const box = u.over.getBoundingClientRect();
    u.setCursor({ left: touch.clientX - box.left, top: touch.clientY - box.top });
  }, { passive: true });
}

function base(c, extra) {
  return { width: 280, height: HEIGHT, legend: { live: true }, cursor: { points: { size: 6 } },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), TZ), hooks: { init: [touchCursor] }, ...extra };
}

export function draw(id, make) {
  const el = document.getElementById(id);
  const old = plots.get(id);
  if (old) old.plot.destroy();
  const [opts, data] = make();
  opts.width = Math.max(280, el.clientWidth);
  plots.set(id, { plot: new uPlot(opts, data, el), make });
}

// New data for a chart; a chart whose series changed (the multi-strike picks) is drawn anew.
export function update(id, make) {
  const entry = plots.get(id);
  const [opts, data] = make();
  if (!entry || entry.plot.series.length !== opts.series.length) return draw(id, make);
  entry.make = make;
  entry.plot.setData(data);
}

export function redrawAll() { for (const [id, entry] of plots) draw(id, entry.make); }

// --- the charts ------------------------------------------------------------------------------

export function strikeChart(field, label, valueOf) {
  return () => {
    const c = colours();
    const rows = state.oi ? state.oi.strikes : [];
    const bars = (align) => uPlot.paths.bars({ size: [0.4, 40], align });
    const side = (name, stroke, fill, align) => ({ label: `${name} ${label}`, stroke, fill, width: 1, scale: "y",
      paths: bars(align), points: { show: false }, value: (u, v) => field === "change" ? signedWhole(v) : whole(v) });
    const opts = base(c, {
      // bars stand on zero: the y range always holds it
      scales: { x: { time: false, range: (u, min, max) => [min - strikeGap(rows), max + strikeGap(rows)] },
        y: { range: (u, min, max) => [Math.min(0, min ?? 0) * 1.1, Math.max(0, max ?? 0) * 1.1 || 1] } },
      series: [{ label: "Strike", value: (u, v) => strikeText(v) }, side("CE", c.ce, c.ceFill, -1), side("PE", c.pe, c.peFill, 1)],
      axes: [axis(c, "x", "X", "Strike", strikeText), axis(c, "y", "Y", label, (v) => compact.format(v), { size: 60 })],
    });
    return [opts, [rows.map((r) => r.strike), rows.map((r) => valueOf(r.CE)), rows.map((r) => valueOf(r.PE))]];
  };
}

function strikeGap(rows) {
  return rows.length > 1 ? (rows[rows.length - 1].strike - rows[0].strike) / (rows.length - 1) : 50;
}

function times() { return (state.series || []).map((r) => epoch(r.time)); }
const column = (name) => (state.series || []).map((r) => r[name]);

export function intradayChart() {
  const c = colours();
  const opts = base(c, {
    scales: { x: { time: true } },
    plugins: [replayMarker(c)],
    series: [
      { label: "Time", value: (u, v) => v == null ? DASH : `${hhmm(v)} IST` },
      { label: "Spot", stroke: c.spot, width: 2, scale: "price", value: (u, v) => price(v) },
      { label: "Max pain", stroke: c.pain, width: 1.5, dash: [6, 4], scale: "price", value: (u, v) => strikeText(v) },
      { label: "PCR", stroke: c.pcr, width: 1.5, scale: "pcr", value: (u, v) => v == null ? DASH : v.toFixed(2) },
      { label: "ATM IV", stroke: c.iv, width: 1.5, scale: "iv", value: (u, v) => pct(v) },
    ],
    axes: [
      axis(c, "x", "X", "Time (IST)", hhmm),
      axis(c, "price", "Y", "Spot / max pain", (v) => whole(v), { size: 70 }),
      axis(c, "pcr", "Pcr", "PCR", (v) => v.toFixed(2), { side: 1, size: 50, grid: { show: false } }),
      axis(c, "iv", "Iv", "ATM IV", (v) => (v * 100).toFixed(1) + "%", { side: 1, size: 60, grid: { show: false } }),
    ],
  });
  return [opts, [times(), column("spot"), column("max_pain"), column("pcr"), column("atm_iv")]];
}

export function straddleChart() {
  const c = colours();
  const opts = base(c, {
    scales: { x: { time: true } },
    plugins: [replayMarker(c)],
    series: [
      { label: "Time", value: (u, v) => v == null ? DASH : `${hhmm(v)} IST` },
      { label: "ATM straddle", stroke: c.straddle, width: 2, scale: "premium", value: (u, v) => price(v) },
      { label: "VWAP", stroke: c.vwap, width: 1.5, dash: [6, 4], scale: "premium", value: (u, v) => price(v) },
      { label: "Spot", stroke: c.spot, width: 1, scale: "price", value: (u, v) => price(v) },
    ],
    axes: [
      axis(c, "x", "X", "Time (IST)", hhmm),
      axis(c, "premium", "Y", "Straddle premium", (v) => whole(v), { size: 60 }),
      axis(c, "price", "Spot", "Spot", (v) => whole(v), { side: 1, size: 70, grid: { show: false } }),
    ],
  });
  return [opts, [times(), column("straddle"), state.vwap || column("straddle").map(() => null), column("spot")]];
}

export function multiChart(field, label, format) {
  return () => {
    const c = colours();
    const data = state.multi;
    const picks = data ? state.picks.filter((p) => data.strikes[p.strike]) : [];
    const opts = base(c, {
      scales: { x: { time: true } },
      plugins: [replayMarker(c)],
      series: [{ label: "Time", value: (u, v) => v == null ? DASH : `${hhmm(v)} IST` },
        ...picks.map((p, i) => ({ label: `${p.strike} ${p.side}`, stroke: c.picks[i], width: 1.5, scale: "y", value: (u, v) => format(v) }))],
      axes: [axis(c, "x", "X", "Time (IST)", hhmm), axis(c, "y", "Y", label, (v) => field === "oi" ? compact.format(v) : whole(v), { size: 60 })],
    });
    const xs = data ? data.times.map(epoch) : [];
    return [opts, [xs, ...picks.map((p) => data.strikes[p.strike][p.side][field])]];
  };
}

// --- the straddle's VWAP --------------------------------------------------------------------
// VWAP of the rolling ATM straddle: each recorded minute weighs the straddle premium of that
// minute by the volume the ATM legs traded in it, Σ(premium × weight) / Σ(weight) from the open
// to that minute. The weight of minute t is the rise in cumulative volume of the CE and the
// PE at the minute's ATM strike since that strike's last recorded minute (so the volume traded
// during a gap counts at the first minute after it; a fall, e.g. a broker's reset, counts 0).
// Minutes without a straddle or a volume carry no weight; before any weight VWAP is null.

export async function straddleVwap(rows, volumesOf) {
  const atms = [...new Set(rows.map((r) => r.atm_strike).filter((k) => k != null))].map(strikeText);
  const volumes = {};
  for (let i = 0; i < atms.length; i += MAX_STRIKES) Object.assign(volumes, await volumesOf(atms.slice(i, i + MAX_STRIKES)));
  const last = {}; // "strike side" → last cumulative volume seen
  let sumPv = 0, sumV = 0;
  return rows.map((row, i) => {
    for (const key of atms) for (const side of ["CE", "PE"]) {
      // every strike's last volume moves on, ATM or not, so a strike's rise is its own
      const v = volumes[key] ? volumes[key][side].volume[i] : null;
      if (v == null) continue;
      const before = last[`${key} ${side}`];
      last[`${key} ${side}`] = v;
      if (row.atm_strike != null && strikeText(row.atm_strike) === key && row.straddle != null && before != null) {
        const traded = Math.max(0, v - before);
        sumPv += row.straddle * traded; sumV += traded;
      }
    }
    return row.straddle == null || sumV === 0 ? null : sumPv / sumV;
  });
}

/** Redraws every chart as it is (the replay marker moved). */
export function redrawMarkers() { for (const { plot } of plots.values()) plot.redraw(false); }

/** Fits every chart to its element's width. */
export function resizeAll() {
  for (const [id, { plot }] of plots) plot.setSize({ width: Math.max(280, document.getElementById(id).clientWidth), height: HEIGHT });
}
