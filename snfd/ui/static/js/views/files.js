// Files: the user's containers, and in a container its folders and objects
// (delimiter "/" listings, a page at a time), uploads by hashmap from a file
// input or a drop (only the blocks the store lacks are sent), downloads,
// moves and copies, versions, sharing, public links and groups.

import {button, bytes, field, fill, form, h, notice, table} from "../dom.js";
import {ApiError, session} from "../api.js";
import {go, onLeave} from "../app.js";
import * as P from "../pithos.js";

const hashOf = (...parts) => "#/files/" + parts.map(encodeURIComponent).join("/");

function when(iso) {
  if (!iso) return "";
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
  return isNaN(d) ? iso : d.toLocaleString();
}

function failed(e) { notice(e.message || String(e), "error"); }

/** Storage used against the quota (account HEAD). */
async function storage() {
  const el = h("p", {id: "storage", class: "files-storage"});
  try {
    const info = await P.accountInfo();
    const used = Number(info.get("X-Account-Bytes-Used") || 0);
    const quota = Number(info.get("X-Account-Policy-Quota") || 0);
    if (quota > 0) {
      fill(el, "Storage: ", bytes(used), " used of ", bytes(quota), " ",
           h("meter", {min: 0, max: 1, value: Math.min(1, used / quota).toFixed(3),
                       title: `${Math.round(used / quota * 100)}%`}));
    } else {
      fill(el, "Storage: ", bytes(used), " used");
    }
  } catch (e) {
    fill(el, h("span", {class: "error"}, e.message));
  }
  return el;
}

/** A list loaded a page at a time: ``load(marker)`` gives a page; ``draw(items)``
 * the list's element; ``key(item)`` its marker. */
function pagedList(load, draw, key) {
  const box = h("div", {class: "files-list"});
  const more = h("button", {type: "button", id: "load-more", class: "secondary", hidden: true},
                 "Load more");
  const holder = h("div");
  let items = [], marker = null;
  async function page() {
    more.disabled = true;
    try {
      const got = await load(marker);
      items = items.concat(got);
      if (got.length) marker = key(got[got.length - 1]);
      fill(holder, draw(items));
      more.hidden = got.length < P.PAGE;
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => page().catch(failed));
  fill(box, holder, more);
  return {el: box, reload: async () => { items = []; marker = null; await page(); }};
}

export async function render(main, parts) {
  parts = parts.slice();
  while (parts.length && parts[parts.length - 1] === "") parts.pop();
  if (!parts.length) return await containers(main);
  return await browse(main, parts[0], parts.slice(1));
}

// -- the containers ---------------------------------------------------------------

async function containers(main) {
  const list = pagedList(marker => P.listContainers({marker}), items => table([
    {title: "Container", cell: c => h("a", {href: hashOf(c.name), class: "container"}, c.name)},
    {title: "Objects", cell: c => String(c.count ?? "")},
    {title: "Size", cell: c => bytes(c.bytes)},
    {title: "Modified", cell: c => when(c.last_modified)},
    {title: "", cell: c => button("Delete", async () => {
      await P.deleteContainer(c.name);
      notice(`The container ${c.name} was deleted.`);
      go("#/files");
    }, {class: "danger", "data-delete": c.name,
        ask: `Delete the container ${c.name}? It must be empty.`})},
  ], items, {empty: "No containers yet: create one.", rowId: c => c.name}), c => c.name);
  await list.reload();
  fill(main,
    h("h1", {}, "Files"),
    await storage(),
    h("section", {class: "files"},
      h("h2", {}, "Containers"),
      form([field("New container", "name", {required: true, maxlength: 256})], "Create",
           async ({name}) => {
             name = name.trim();
             if (name.includes("/")) throw new ApiError(0, "A container name cannot hold /.");
             await P.createContainer(name);
             notice(`The container ${name} was created.`);
             go(hashOf(name));
           }, {id: "new-container"}),
      list.el),
    await groups());
}

async function groups() {
  const el = h("section", {class: "files", id: "groups"});
  async function draw() {
    const info = await P.accountInfo();
    const found = [];
    for (const [k, v] of info.entries()) {
      if (k.startsWith("x-account-group-")) {
        found.push([decodeURIComponent(k.slice(16)), v.split(",").filter(Boolean)]);
      }
    }
    const names = await P.emailsOf([...new Set(found.flatMap(g => g[1]))]);
    fill(el,
      h("h2", {}, "Groups"),
      h("p", {class: "empty"}, "Share with a group by naming it group:<name>."),
      table([
        {title: "Group", cell: g => g[0]},
        {title: "Members", cell: g => g[1].map(m => names[m] || m).join(", ")},
        {title: "", cell: g => button("Delete", async () => {
          await P.setGroup(g[0], []);
          await draw();
        }, {class: "danger"})},
      ], found, {empty: "No groups.", rowId: g => g[0]}),
      form([field("Group name", "group", {required: true, pattern: "[A-Za-z0-9_.\\-]+"}),
            field("Members (e-mails or user ids)", "members", {required: true})],
           "Save group", async ({group, members}) => {
             await P.setGroup(group.trim(), await P.sharingEntries(members));
             notice(`The group ${group} was saved.`);
             await draw();
           }, {id: "group-form"}));
  }
  try { await draw(); } catch (e) { fill(el, h("p", {class: "error"}, e.message)); }
  return el;
}

// -- one container ----------------------------------------------------------------

async function browse(main, container, folders) {
  const prefix = folders.length ? folders.join("/") + "/" : "";
  const uploads = new Set();
  onLeave(() => { for (const u of uploads) u.abort(); });
  const head = await P.containerInfo(container);  // 404: the API's message
  const details = h("section", {id: "details", class: "files-details", hidden: true});

  const crumbs = h("nav", {class: "files-crumbs", "aria-label": "Folders"},
    h("a", {href: "#/files"}, "Containers"), " / ",
    h("a", {href: hashOf(container)}, container),
    folders.map((f, i) => [" / ", h("a", {href: hashOf(container, ...folders.slice(0, i + 1))}, f)]));

  function rows(items) {
    const seen = new Set(), out = [];
    for (const item of items) {
      let entry;
      if (item.subdir !== undefined) {
        entry = {folder: true, name: item.subdir.replace(/\/$/, "")};
      } else if (item.content_type && item.content_type.split(";")[0] === P.DIRECTORY) {
        entry = {folder: true, name: item.name.replace(/\/$/, ""), marker: item};
      } else {
        entry = {folder: false, name: item.name, item};
      }
      const id = (entry.folder ? "d:" : "o:") + entry.name;
      if (seen.has(id) || (entry.folder && entry.name + "/" === prefix)) continue;
      seen.add(id);
      out.push(entry);
    }
    return out;
  }

  const list = pagedList(marker => P.listObjects(container, {prefix, marker}), items => table([
    {title: "Name", cell: e => {
      const short = e.name.slice(prefix.length);
      if (e.folder) {
        return h("a", {href: hashOf(container, ...e.name.split("/")), class: "folder"},
                 short + "/");
      }
      return h("button", {type: "button", class: "link object-name", "data-name": e.name,
                          onclick: () => open(e.name).catch(failed)}, short);
    }},
    {title: "Size", cell: e => e.folder ? "" : bytes(e.item.bytes)},
    {title: "Modified", cell: e => e.folder ? "" : when(e.item.last_modified)},
    {title: "", cell: e => e.folder ? button("Delete", async () => {
      await P.deleteObject(container, e.name, {recursive: true});
      await list.reload();
    }, {class: "danger", ask: `Delete the folder ${e.name}/ and everything in it?`})
      : h("span", {class: "files-actions"},
      button("Download", () => P.download(container, e.name), {class: "secondary"}),
      button("Delete", async () => {
        await P.deleteObject(container, e.name);
        details.hidden = true;
        notice(`${e.name} was deleted.`);
        await list.reload();
      }, {class: "danger", "data-delete": e.name, ask: `Delete ${e.name}?`}))},
  ], rows(items), {empty: "This folder is empty.", rowId: e => e.name}),
  item => item.subdir !== undefined ? item.subdir : item.name);
  await list.reload();

  // Uploads: a file input and a drop zone; each file by its hashmap.
  const progress = h("div", {id: "uploads", class: "files-uploads"});
  const input = h("input", {type: "file", id: "upload-input", multiple: true});
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    start(files);
  });
  const drop = h("div", {id: "drop-zone", class: "files-drop"},
    "Drop files here to upload them to ", h("strong", {}, container + "/" + prefix),
    ", or choose them: ", input);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    start([...((e.dataTransfer && e.dataTransfer.files) || [])]);
  });

  async function start(files) {
    for (const file of files) {
      await send(file);
    }
    await list.reload().catch(failed);
  }

  async function send(file) {
    const name = prefix + file.name;
    const abort = new AbortController();
    uploads.add(abort);
    const bar = h("progress", {max: 1, value: 0});
    const status = h("span", {class: "upload-status"}, "Waiting…");
    const cancel = h("button", {type: "button", class: "secondary",
                                onclick: () => abort.abort()}, "Cancel");
    const row = h("div", {class: "upload", "data-name": name},
                  h("strong", {}, file.name), " ", bar, " ", status, " ", cancel);
    progress.prepend(row);
    try {
      await P.upload(container, name, file, {signal: abort.signal, onProgress: (s) => {
        row.dataset.phase = s.phase;
        row.dataset.sent = s.sent;
        row.dataset.blocks = s.blocks;
        if (s.phase === "hashing") {
          bar.value = s.size ? s.hashed / s.size : 1;
          fill(status, `Hashing: ${bytes(s.hashed)} of ${bytes(s.size)}`);
        } else if (s.phase === "checking") {
          fill(status, `Hashed ${bytes(s.size)}; asking which blocks are missing…`);
        } else if (s.phase === "sending") {
          bar.value = s.needed ? s.sent / s.needed : 1;
          fill(status, `Sending: ${s.sent} of ${s.needed} missing blocks sent`);
        } else {
          bar.value = 1;
          fill(status, `Uploaded: ${s.sent} of ${s.blocks} blocks sent` +
                       (s.blocks > s.sent ? ` (${s.blocks - s.sent} already stored)` : ""));
        }
      }});
    } catch (e) {
      row.dataset.phase = "failed";
      fill(status, h("span", {class: "error"}, e.message || String(e),
                     " (upload again to resume: only missing blocks are sent)"));
    } finally {
      uploads.delete(abort);
      cancel.remove();
    }
  }

  // One object: its facts and what can be done with it.
  async function open(name) {
    const info = await P.objectInfo(container, name);
    const sharing = info.get("X-Object-Sharing") || "";
    const lists = {read: [], write: []};
    for (const part of sharing.split(";")) {
      const [kind, who] = part.split("=");
      if (lists[kind.trim()] && who) lists[kind.trim()] = who.split(",").filter(Boolean);
    }
    const emails = await P.emailsOf([...lists.read, ...lists.write]);
    const me = session().user.id + ":";
    const shown = (entries) => entries.map(
      e => emails[e] || (e.startsWith(me) ? "group:" + e.slice(me.length) : e)).join(", ");
    const publicUrl = info.get("X-Object-Public");
    const whole = `${container}/${name}`;
    const splitDest = (to) => {
      const at = to.trim().replace(/^\//, "");
      const slash = at.indexOf("/");
      if (slash <= 0 || slash === at.length - 1) {
        throw new ApiError(0, "Give the destination as container/name.");
      }
      return [at.slice(0, slash), at.slice(slash + 1)];
    };
    const versionsBox = h("div", {id: "versions"});
    fill(details,
      h("h2", {}, name.slice(prefix.length)),
      h("dl", {class: "facts"},
        h("dt", {}, "Size"), h("dd", {id: "object-size"}, bytes(Number(info.get("Content-Length")))),
        h("dt", {}, "Type"), h("dd", {}, info.get("Content-Type") || ""),
        h("dt", {}, "Modified"), h("dd", {}, info.get("Last-Modified") || ""),
        h("dt", {}, "Version"), h("dd", {}, info.get("X-Object-Version") || ""),
        h("dt", {}, "Shared"), h("dd", {id: "object-sharing"}, sharing ? [
          lists.read.length ? `read: ${shown(lists.read)}` : "",
          lists.read.length && lists.write.length ? "; " : "",
          lists.write.length ? `write: ${shown(lists.write)}` : ""] : "No"),
        h("dt", {}, "Public link"), h("dd", {},
          publicUrl ? h("a", {id: "public-url", href: publicUrl, rel: "noreferrer",
                              target: "_blank"}, publicUrl) : "None")),
      h("div", {class: "toolbar"},
        button("Download", () => P.download(container, name), {id: "download"}),
        publicUrl
          ? button("Remove the public link", async () => {
            await P.setPublic(container, name, false);
            await open(name);
          }, {id: "unpublish", class: "secondary"})
          : button("Make a public link", async () => {
            await P.setPublic(container, name, true);
            await open(name);
          }, {id: "publish", class: "secondary"}),
        button("Delete", async () => {
          await P.deleteObject(container, name);
          details.hidden = true;
          notice(`${name} was deleted.`);
          await list.reload();
        }, {id: "delete-object", class: "danger", ask: `Delete ${name}?`}),
        button("Close", () => { details.hidden = true; }, {class: "secondary"})),
      h("h3", {}, "Share"),
      form([field("Readers (e-mails, user ids, group:<name>, or *)", "read",
                  {value: shown(lists.read)}),
            field("Writers", "write", {value: shown(lists.write)})],
           "Save sharing", async ({read, write}) => {
             await P.setSharing(container, name, await P.sharingEntries(read),
                                await P.sharingEntries(write));
             notice(`The sharing of ${name} was saved.`);
             await open(name);
           }, {id: "share-form"}),
      h("h3", {}, "Move or rename"),
      form([field("To (container/name)", "to", {value: whole, required: true})], "Move",
           async ({to}) => {
             const [c, n] = splitDest(to);
             await P.copyObject(container, name, c, n, {move: true});
             notice(`Moved to ${c}/${n}.`);
             details.hidden = true;
             await list.reload();
           }, {id: "move-form"}),
      h("h3", {}, "Copy"),
      form([field("To (container/name)", "to", {value: whole + " copy", required: true})],
           "Copy", async ({to}) => {
             const [c, n] = splitDest(to);
             await P.copyObject(container, name, c, n);
             notice(`Copied to ${c}/${n}.`);
             await list.reload();
           }, {id: "copy-form"}),
      h("h3", {}, "Versions"),
      versionsBox);
    details.hidden = false;
    details.scrollIntoView({block: "nearest"});
    const found = (await P.versions(container, name)).slice().reverse();
    const current = info.get("X-Object-Version");
    fill(versionsBox, table([
      {title: "Version", cell: v => String(v[0]) + (String(v[0]) === current ? " (current)" : "")},
      {title: "Made", cell: v => new Date(Number(v[1]) * 1000).toLocaleString()},
      {title: "", cell: v => h("span", {class: "files-actions"},
        button("Download", () => P.download(container, name, v[0]), {class: "secondary"}),
        String(v[0]) === current ? null : button("Restore", async () => {
          await P.copyObject(container, name, container, name, {version: v[0]});
          notice(`Version ${v[0]} of ${name} was restored.`);
          await list.reload();
          await open(name);
        }, {class: "secondary", "data-version": v[0]}))},
    ], found, {empty: "No versions.", rowId: v => String(v[0])}));
  }

  const summary = h("div", {class: "files-summary"});
  async function summarize(info) {
    info = info || await P.containerInfo(container);
    fill(summary, `${info.get("X-Container-Object-Count") || 0} objects, `,
         bytes(Number(info.get("X-Container-Bytes-Used") || 0)), " in this container. ",
         await storage());
  }
  await summarize(head);
  const reloadList = list.reload;
  list.reload = async () => { await reloadList(); await summarize().catch(failed); };
  fill(main,
    h("h1", {}, "Files"),
    crumbs,
    summary,
    h("section", {class: "files"},
      drop, progress,
      form([field("New folder", "folder", {required: true})], "Create folder",
           async ({folder}) => {
             const clean = folder.trim().replace(/^\/+|\/+$/g, "");
             if (!clean) throw new ApiError(0, "Name the folder.");
             await P.makeFolder(container, prefix + clean);
             go(hashOf(container, ...(prefix + clean).split("/")));
           }, {id: "folder-form"}),
      list.el),
    details);
}
