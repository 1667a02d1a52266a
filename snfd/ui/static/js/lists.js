// What the networks and volumes pages share: long lists with a filter and
// "show more", and a status badge.

import {fill, h, table} from "./dom.js";

const PAGE = 100;

/** A list drawn a page at a time with a filter (copes with hundreds of rows),
 * redrawn only when its rows or ``deps()`` changed. */
export function pagedList(id, columns, {empty, rowId, text, deps = () => null}) {
  const box = h("div", {id, class: "networks-list"});
  let rows = [];
  let shown = PAGE;
  let last = null;
  const filter = h("input", {type: "search", placeholder: "Filter", class: "networks-filter",
                             oninput: () => { shown = PAGE; last = null; draw(); }});
  const body = h("div", {});
  fill(box, h("div", {class: "toolbar"}, filter), body);
  function draw() {
    const q = filter.value.trim().toLowerCase();
    const matching = q ? rows.filter(r => text(r).toLowerCase().includes(q)) : rows;
    const key = JSON.stringify([q, shown, matching, deps()]);
    if (key === last) return;
    last = key;
    filter.hidden = rows.length < 10;
    fill(body, table(columns, matching.slice(0, shown), {empty, rowId}),
      matching.length > shown
        ? h("p", {}, `${shown} of ${matching.length} shown. `,
            h("button", {type: "button", class: "secondary",
                         onclick: () => { shown += PAGE; draw(); }}, "Show more"))
        : null);
  }
  return {el: box, set(newRows) { rows = newRows; draw(); }, redraw() { last = null; draw(); }};
}

export function status(text) {
  return h("span", {class: `status status-${text}`}, text);
}
