// The chain table's columns as this browser's user chose them: which fields show, in which order
// (calls side from the outside in; the puts side mirrors it around the strike), and whether OI,
// change in OI and volume count contracts' quantity or lots. Remembered in localStorage
// ("optionsite.columns"); chains/presenter.py renders the default (CALL_ORDER, DEFAULT_HIDDEN).

const KEY = "optionsite.columns";
export const FIELDS = ["delta", "gamma", "theta", "vega", "oi", "oi_change", "volume", "iv", "ltp",
  "change", "bid_qty", "bid", "ask", "ask_qty"];
export const GREEKS = ["delta", "gamma", "theta", "vega"];
export const LABELS = { oi: "OI", oi_change: "Chng in OI", volume: "Volume", iv: "IV", ltp: "LTP",
  change: "Chng", bid_qty: "Bid Qty", bid: "Bid", ask: "Ask", ask_qty: "Ask Qty", delta: "\u0394",
  gamma: "\u0393", theta: "\u0398", vega: "Vega" };
const NAMES = { delta: "Delta", gamma: "Gamma", theta: "Theta" }; // the chooser's words for symbols
export const LOTS_FIELDS = new Set(["oi", "oi_change", "volume"]);

export function defaults() {
  return { order: [...FIELDS], hidden: new Set(["gamma", "theta", "vega"]), lots: false };
}

// The remembered choice, checked: unknown or missing fields fall back to the default order
// (a field added later shows up in its default place).
export function load() {
  let raw = null;
  try { raw = JSON.parse(localStorage.getItem(KEY) ?? "null"); } catch (error) {
    console.warn("optionsite: the remembered columns are unreadable, using the default", error);
  }
  const cols = defaults();
  if (!raw || !Array.isArray(raw.order) || !Array.isArray(raw.hidden)) return cols;
  const order = raw.order.filter((f) => FIELDS.includes(f));
  for (const f of FIELDS) if (!order.includes(f)) order.splice(FIELDS.indexOf(f), 0, f);
  return { order, hidden: new Set(raw.hidden.filter((f) => FIELDS.includes(f))), lots: raw.lots === true };
}

export function save(cols) {
  try {
    localStorage.setItem(KEY, JSON.stringify({ order: cols.order, hidden: [...cols.hidden], lots: cols.lots }));
  } catch (error) { // storage off or full: the choice lasts for this page only
    console.warn("optionsite: the column choice cannot be remembered", error);
  }
}

// The chooser: one line per field (shown?, move up, move down), the units, and Reset.
// `onChange(cols)` runs after every change (the choice is saved first).
export function mountChooser(body, cols, onChange) {
  const changed = () => { save(cols); draw(); onChange(cols); };
  function draw() {
    const list = document.createElement("ol");
    list.className = "chooser-list";
    cols.order.forEach((field, i) => {
      const li = document.createElement("li");
      li.dataset.field = field;
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox"; box.checked = !cols.hidden.has(field); box.dataset.field = field;
      box.addEventListener("change", () => {
        if (box.checked) cols.hidden.delete(field); else cols.hidden.add(field);
        changed();
      });
      label.append(box, " " + LABELS[field] + (NAMES[field] ? " (" + NAMES[field] + ")" : ""));
      const up = button("\u2191", "Move " + LABELS[field] + " outwards", i === 0, () => move(i, -1));
      const down = button("\u2193", "Move " + LABELS[field] + " towards the strike",
        i === cols.order.length - 1, () => move(i, 1));
      up.dataset.move = "up"; down.dataset.move = "down";
      li.append(label, up, down);
      list.append(li);
    });
    const units = document.createElement("fieldset");
    units.className = "units";
    const legend = document.createElement("legend");
    legend.textContent = "OI, Chng in OI, Volume in";
    units.append(legend);
    for (const [value, text] of [["qty", "contracts (quantity)"], ["lots", "lots"]]) {
      const label = document.createElement("label");
      const radio = document.createElement("input");
      radio.type = "radio"; radio.name = "units"; radio.value = value;
      radio.checked = (value === "lots") === cols.lots;
      radio.addEventListener("change", () => { cols.lots = value === "lots"; changed(); });
      label.append(radio, " " + text);
      units.append(label);
    }
    const reset = button("Reset", "Back to the default columns", false, () => {
      Object.assign(cols, defaults()); changed();
    });
    reset.id = "columns-reset";
    body.replaceChildren(list, units, reset);
  }
  function move(i, by) {
    const j = i + by;
    [cols.order[i], cols.order[j]] = [cols.order[j], cols.order[i]];
    changed();
  }
  draw();
  return draw; // redraw after a change made elsewhere (the greek toggles, `g`)
}

function button(text, title, disabled, onClick) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = text; b.title = title; b.disabled = disabled;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", onClick);
  return b;
}
