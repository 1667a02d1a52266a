// Shared with me: the accounts that share something with the user, their
// containers and folders as far as the sharing lets the user see, and the
// objects, to open or download (writing is the owner's page's business).
// Address: #/shared/<account>/<container>/<folder parts>.

import {bytes, fill, h, notice, table} from "../dom.js";
import {request} from "../api.js";
import * as P from "../pithos.js";

const hashOf = (...parts) => "#/shared/" + parts.map(encodeURIComponent).join("/");

/** The object store's root path, before any account. */
function root() { return P.base().replace(/\/[^/]+$/, ""); }

function enc(name) { return name.split("/").map(encodeURIComponent).join("/"); }

async function listing(path, params) {
  const q = new URLSearchParams({format: "json", limit: String(P.PAGE), ...params});
  const r = await request("GET", `${path}?${q}`);
  if (r.status === 204) return [];
  const text = await r.text();
  return text ? JSON.parse(text) : [];
}

/** Everything of a listing, a page at a time, up to ``most`` entries. */
async function all(path, params, key, most = 5000) {
  const found = [];
  let marker;
  for (;;) {
    const page = await listing(path, marker ? {...params, marker} : params);
    found.push(...page);
    if (page.length < P.PAGE || found.length >= most) return found;
    marker = key(page[page.length - 1]);
  }
}

async function download(account, container, name) {
  const r = await request("GET", `${root()}/${encodeURIComponent(account)}/`
                          + `${encodeURIComponent(container)}/${enc(name)}`,
                          {headers: {Accept: "*/*"}});
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", {href: url, download: name.split("/").pop() || "download"});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export async function render(main, parts) {
  parts = parts.slice();
  while (parts.length && parts[parts.length - 1] === "") parts.pop();
  const [account, container, ...folders] = parts;
  if (!account) return sharers(main);
  const names = await P.emailsOf([account]);
  const owner = names[account] || account;
  if (!container) return containers(main, account, owner);
  return objects(main, account, owner, container, folders.filter(Boolean));
}

async function sharers(main) {
  const found = await all(root(), {}, a => a.name);
  const names = await P.emailsOf(found.map(a => a.name));
  fill(main, h("h1", {}, "Shared with me"),
    table([
      {title: "Shared by", cell: a => h("a", {href: hashOf(a.name), class: "sharer"},
                                       names[a.name] || a.name)},
      {title: "Changed", cell: a => a.last_modified || ""},
    ], found, {empty: "Nobody shares anything with you yet.", rowId: a => a.name}));
}

async function containers(main, account, owner) {
  const found = await all(`${root()}/${encodeURIComponent(account)}`, {}, c => c.name);
  fill(main, h("h1", {}, "Shared by ", owner),
    h("p", {}, h("a", {href: "#/shared"}, "All sharers")),
    table([
      {title: "Container", cell: c => h("a", {href: hashOf(account, c.name)}, c.name)},
    ], found, {empty: "Nothing shared here.", rowId: c => c.name}));
}

async function objects(main, account, owner, container, folders) {
  const prefix = folders.length ? folders.join("/") + "/" : "";
  const path = `${root()}/${encodeURIComponent(account)}/${encodeURIComponent(container)}`;
  const found = await all(path, {prefix, delimiter: "/"}, o => o.name || o.subdir);
  const crumbs = [h("a", {href: "#/shared"}, "All sharers"), " / ",
                  h("a", {href: hashOf(account)}, owner), " / ",
                  h("a", {href: hashOf(account, container)}, container)];
  folders.forEach((f, i) => crumbs.push(" / ", h("a", {href: hashOf(account, container,
                                                                    ...folders.slice(0, i + 1))}, f)));
  fill(main, h("h1", {}, "Shared by ", owner), h("p", {class: "crumbs"}, crumbs),
    table([
      {title: "Name", cell: o => o.subdir
        ? h("a", {href: hashOf(account, container, ...o.subdir.replace(/\/$/, "").split("/"))},
            o.subdir.slice(prefix.length))
        : o.name.slice(prefix.length)},
      {title: "Size", cell: o => o.subdir ? "" : bytes(o.bytes)},
      {title: "Modified", cell: o => o.last_modified || ""},
      {title: "", cell: o => o.subdir ? "" : h("button", {
        type: "button", class: "secondary", "data-download": o.name,
        onclick: () => download(account, container, o.name)
          .catch(e => notice(e.message || String(e), "error"))}, "Download")},
    ], found, {empty: "Nothing shared here.", rowId: o => o.name || o.subdir}));
}
