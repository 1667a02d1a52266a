// Building the page without ever parsing text as HTML: every string from an
// API becomes a text node (or an attribute value), so nothing it holds can
// run as markup or script.

/** An element: h("a", {href: "#/x", class: "c", onclick: fn}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what ``el`` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns [{title, cell(row) -> node|text}], rows. */
export function table(columns, rows, {empty = "Nothing here yet.", rowId} = {}) {
  if (!rows.length) return h("p", {class: "empty"}, empty);
  return h("table", {class: "list"},
    h("thead", {}, h("tr", {}, columns.map(c => h("th", {}, c.title)))),
    h("tbody", {}, rows.map(r => h("tr", rowId ? {"data-id": rowId(r)} : {},
      columns.map(c => h("td", {}, c.cell(r)))))));
}

/** Bytes as a person reads them (1 KiB = 1024 bytes). */
export function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0, v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(v < 10 ? 1 : 0) : String(v)) + " " + units[i];
}

/** A form whose submit runs ``action(values)`` with its button disabled,
 * showing the API's message on failure. */
export function form(fields, label, action, {id} = {}) {
  const error = h("p", {class: "error", role: "alert"});
  const button = h("button", {type: "submit"}, label);
  const el = h("form", {id}, fields, button, error);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(error);
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(el).entries()), el);
    } catch (e) {
      fill(error, e.message || String(e));
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

/** A labelled input. */
export function field(label, name, attrs = {}) {
  return h("label", {}, h("span", {}, label), h("input", {name, ...attrs}));
}

/** A button running ``run`` (disabled meanwhile; a failure shows the API's
 * message); with ``ask``, only once the person confirms that question. */
export function button(label, run, {ask, ...attrs} = {}) {
  const el = h("button", {type: "button", ...attrs}, label);
  el.addEventListener("click", async () => {
    if (ask && !confirm(ask)) return;
    el.disabled = true;
    try {
      await run();
    } catch (e) {
      notice(e.message || String(e), "error");
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

/** Show a short message at the top of the page. */
export function notice(text, kind = "info") {
  const el = document.getElementById("notice");
  fill(el, h("p", {class: kind}, text));
  if (kind !== "error") setTimeout(() => { if (el.textContent === text) fill(el); }, 6000);
}
