// Servers: the list with live status (changes-since polling, paged with
// "load more"), the create wizard (#/servers/new) with the quota room and
// the admin password shown once, and a server's page (#/servers/<id>) with
// the actions its state allows and its console.

import {field, fill, form, h, notice, table} from "../dom.js";
import {ApiError, call, has, endpoint} from "../api.js";
import {every, go} from "../app.js";
import {addressText, allowed, compute, flavorText, flavors, getWithDate, images, keypairs,
        limits, parsePairs, statusOf} from "../compute.js";

const PAGE = 50;
const POLL_MS = 3000;

export async function render(main, parts) {
  if (parts[0] === "new") return wizard(main);
  if (parts[0]) return detail(main, parts[0]);
  return list(main);
}

// -- the list -------------------------------------------------------------------

async function list(main) {
  const [flavorList, imageList] = await Promise.all([flavors(), images().catch(() => [])]);
  const flavorName = Object.fromEntries(flavorList.map(f => [f.id, f.name]));
  const imageName = Object.fromEntries(imageList.map(i => [i.id, i.name]));
  const servers = new Map();   // id -> server, in the API's order (newest first)
  let marker = null, since = null;
  const box = h("div", {id: "servers-list", class: "servers-list"});
  const more = h("button", {type: "button", class: "secondary", id: "servers-more",
                            onclick: loadMore, hidden: true}, "Load more");
  const count = h("span", {class: "muted", id: "servers-count"});

  async function loadMore() {
    const q = new URLSearchParams({limit: String(PAGE)});
    if (marker) q.set("marker", marker);
    const {body, date} = await getWithDate(`/servers/detail?${q}`);
    if (since === null) since = date;
    const page = (body && body.servers) || [];
    for (const s of page) if (s.status !== "DELETED") servers.set(s.id, s);
    marker = page.length ? page[page.length - 1].id : marker;
    more.hidden = page.length < PAGE;
    draw();
  }

  function draw() {
    fill(count, `${servers.size} shown`);
    fill(box, table([
      {title: "Name", cell: s => h("a", {href: `#/servers/${encodeURIComponent(s.id)}`,
                                         class: "server-name"}, s.name || s.id)},
      {title: "Status", cell: s => statusOf(s)},
      {title: "Flavor", cell: s => flavorName[s.flavor && s.flavor.id] || (s.flavor && s.flavor.id)},
      {title: "Image", cell: s => imageName[s.image && s.image.id] || (s.image && s.image.id) || ""},
      {title: "Addresses", cell: s => addressText(s)},
      {title: "Created", cell: s => (s.created || "").replace("T", " ").replace("Z", "")},
    ], [...servers.values()], {empty: "No servers yet.", rowId: s => s.id}));
  }

  async function changes() {
    const stamp = new Date(since - 2000).toISOString().replace(/\.\d+Z$/, "Z");
    const {body, date} = await getWithDate(
      `/servers/detail?changes-since=${encodeURIComponent(stamp)}`);
    since = date;
    let changed = false;
    const fresh = [];
    for (const s of (body && body.servers) || []) {
      if (s.status === "DELETED") { changed = servers.delete(s.id) || changed; continue; }
      if (!servers.has(s.id)) fresh.push(s);
      else servers.set(s.id, s);
      changed = true;
    }
    if (fresh.length) {
      const old = [...servers.entries()];
      servers.clear();
      for (const s of fresh.reverse()) servers.set(s.id, s);
      for (const [id, s] of old) servers.set(id, s);
    }
    // Nova's dialect unlists a deleted server (changes-since does not show
    // it): while some are being deleted, see which are still listed.
    const deleting = [...servers.values()].filter(s => s["OS-EXT-STS:task_state"] === "deleting");
    if (deleting.length) {
      const listed = await call("GET", `${compute()}/servers?limit=${servers.size + PAGE}`);
      const ids = new Set(((listed && listed.servers) || []).map(s => s.id));
      for (const s of deleting) {
        if (!ids.has(s.id)) { servers.delete(s.id); changed = true; }
      }
    }
    if (changed) draw();
  }

  fill(main,
    h("h1", {}, "Servers"),
    h("div", {class: "toolbar servers-toolbar"},
      h("a", {href: "#/servers/new", class: "button", id: "new-server"}, "New server"),
      count),
    box, more);
  await loadMore();
  every(POLL_MS, changes);
}

// -- the create wizard ----------------------------------------------------------

async function wizard(main) {
  const volumeApi = has("volumev3") ? endpoint("volumev3")
    : has("block-storage") ? endpoint("block-storage") : null;
  const [imageList, flavorList, keys, room, networks, volumes, snapshots] = await Promise.all([
    images(), flavors(), keypairs(), limits(),
    has("network") ? call("GET", endpoint("network") + "/v2.0/networks")
      .then(b => (b && b.networks) || []).catch(() => []) : Promise.resolve([]),
    volumeApi ? call("GET", `${volumeApi}/volumes/detail`)
      .then(b => ((b && b.volumes) || []).filter(v => v.status === "available"))
      .catch(() => []) : Promise.resolve([]),
    volumeApi ? call("GET", `${volumeApi}/snapshots/detail`)
      .then(b => ((b && b.snapshots) || []).filter(v => v.status === "available"))
      .catch(() => []) : Promise.resolve([]),
  ]);
  const usable = flavorList.filter(f => !f["OS-FLV-DISABLED:disabled"]);
  const distinct = key => [...new Set(usable.map(f => f[key]))].sort((a, b) =>
    typeof a === "number" ? a - b : String(a).localeCompare(String(b)));
  const select = (name, values, label, unit = "") => h("label", {},
    h("span", {}, label),
    h("select", {name, onchange: pick}, values.map(v => h("option", {value: String(v)},
      `${v}${unit}`))));
  const chosenBox = h("p", {id: "chosen-flavor"});
  const roomBox = h("div", {id: "quota-room"});
  let chosen = null;

  function pick() {
    const f = el.elements;
    chosen = usable.find(x => String(x.vcpus) === f.vcpus.value &&
      String(x.ram) === f.ram.value && String(x.disk) === f.disk.value &&
      String(x.template) === f.template.value) || null;
    fill(chosenBox, chosen ? `Flavor ${chosen.name}: ${flavorText(chosen)}`
      : h("span", {class: "error"}, "No flavor has this combination."));
    drawRoom();
  }

  function drawRoom() {
    const left = (max, used) => (max === undefined || max < 0) ? Infinity : max - (used || 0);
    const rows = [
      ["Servers", left(room.maxTotalInstances, room.totalInstancesUsed), 1, ""],
      ["CPUs", left(room.maxTotalCores, room.totalCoresUsed), chosen ? chosen.vcpus : 0, ""],
      ["RAM", left(room.maxTotalRAMSize, room.totalRAMUsed), chosen ? chosen.ram : 0, " MiB"],
    ];
    const short = rows.filter(r => r[2] > r[1]);
    fill(roomBox,
      h("h3", {}, "Room left in your quota"),
      table([
        {title: "Resource", cell: r => r[0]},
        {title: "Left", cell: r => r[1] === Infinity ? "unlimited" : `${r[1]}${r[3]}`},
        {title: "This server takes", cell: r => `${r[2]}${r[3]}`},
      ], rows, {rowId: r => r[0]}),
      short.length ? h("p", {class: "error", id: "quota-short"},
        "Not enough room: ", short.map(r => r[0]).join(", "), ". The cloud will refuse it.")
        : h("p", {class: "servers-ok"}, "There is room for this server."));
  }

  const done = h("div", {id: "server-created"});
  const el = form([
    h("label", {}, h("span", {}, "Image"),
      h("select", {name: "image", required: true},
        imageList.map(i => h("option", {value: i.id}, i.name || i.id)))),
    h("fieldset", {class: "servers-flavor"}, h("legend", {}, "Flavor"),
      select("vcpus", distinct("vcpus"), "CPUs"),
      select("ram", distinct("ram"), "RAM", " MiB"),
      select("disk", distinct("disk"), "Disk", " GiB"),
      select("template", distinct("template"), "Disk template"),
      chosenBox),
    volumeApi ? h("fieldset", {class: "servers-disks"}, h("legend", {}, "Disks"),
      h("label", {}, h("span", {}, "Boot disk (a volume needs a flavor of a thin type)"),
        h("select", {name: "boot"},
          h("option", {value: ""}, "The image, on the flavor's disk"),
          h("option", {value: "image-volume"}, "A new volume of the image"),
          volumes.filter(v => v.bootable === "true" || v.bootable === true).map(v =>
            h("option", {value: `volume:${v.id}`}, `The volume ${v.name || v.id}`)),
          snapshots.map(v => h("option", {value: `snapshot:${v.id}`},
                               `A new volume of the snapshot ${v.name || v.id}`)))),
      volumes.length ? h("div", {}, h("span", {}, "Also attach"),
        volumes.map(v => h("label", {class: "servers-check"},
          h("input", {type: "checkbox", name: "extra", value: v.id}), " ",
          `${v.name || v.id} (${v.size} GiB)`))) : null) : null,
    h("label", {}, h("span", {}, "Key pair"),
      h("select", {name: "key_name"}, h("option", {value: ""}, "(none)"),
        keys.map(k => h("option", {value: k.name}, k.name)))),
    networks.length ? h("fieldset", {class: "servers-networks"},
      h("legend", {}, "Networks (optional: none chosen, the cloud's default)"),
      networks.map(n => h("label", {class: "servers-check"},
        h("input", {type: "checkbox", name: "net", value: n.id}), " ", n.name || n.id)))
      : null,
    field("Name", "name", {required: true, maxlength: 255}),
    h("label", {}, h("span", {}, "Metadata (key=value, one a line)"),
      h("textarea", {name: "metadata", rows: 3})),
    roomBox,
  ], "Create server", async (values, formEl) => {
    if (!chosen) throw new Error("Choose a combination some flavor has.");
    const server = {name: values.name.trim(), imageRef: values.image, flavorRef: chosen.id,
                    metadata: parsePairs(values.metadata)};
    if (values.key_name) server.key_name = values.key_name;
    const nets = [...formEl.querySelectorAll("input[name=net]:checked")].map(i => i.value);
    if (nets.length) server.networks = nets.map(uuid => ({uuid}));
    const disks = [];
    const [kind, source] = (values.boot || "").split(/:(.*)/);
    if (kind === "image-volume") {
      disks.push({source_type: "image", uuid: values.image, volume_size: chosen.disk});
      delete server.imageRef;
    } else if (kind === "volume" || kind === "snapshot") {
      disks.push({source_type: kind, uuid: source,
                  ...(kind === "snapshot" ? {volume_size: chosen.disk} : {})});
      delete server.imageRef;
    }
    for (const d of disks) {
      Object.assign(d, {destination_type: "volume", boot_index: 0,
                        delete_on_termination: d.source_type !== "volume"});
    }
    for (const i of formEl.querySelectorAll("input[name=extra]:checked")) {
      disks.push({source_type: "volume", destination_type: "volume", uuid: i.value,
                  boot_index: -1, delete_on_termination: false});
    }
    if (disks.length) server.block_device_mapping_v2 = disks;
    const made = await call("POST", compute() + "/servers", {json: {server}});
    const s = made.server;
    formEl.hidden = true;
    fill(done,
      h("h2", {}, "Server created"),
      h("p", {}, "Its administrator password, shown this once (the cloud does not keep it):"),
      h("pre", {id: "admin-pass", class: "secret"}, s.adminPass || "(none given)"),
      h("p", {}, h("a", {href: `#/servers/${encodeURIComponent(s.id)}`, id: "created-link"},
        "Go to the server"), " · ", h("a", {href: "#/servers"}, "All servers")));
    notice(`Server ${server.name} is being built.`);
  }, {id: "server-form"});
  fill(main, h("h1", {}, "New server"),
    imageList.length ? null : h("p", {class: "error"}, "No image can be booted yet."),
    el, done);
  pick();
}

// -- a server's page -------------------------------------------------------------

async function detail(main, id) {
  const base = `${compute()}/servers/${encodeURIComponent(id)}`;
  const [flavorList, imageList] = await Promise.all([flavors(), images().catch(() => [])]);
  const flavorById = Object.fromEntries(flavorList.map(f => [f.id, f]));
  const imageName = Object.fromEntries(imageList.map(i => [i.id, i.name]));
  let server = (await call("GET", base)).server;
  const facts = h("dl", {class: "facts servers-facts", id: "server-facts"});
  const buttons = {};
  const out = h("div", {id: "server-output"});
  const resizeTo = h("select", {id: "resize-flavor"},
    flavorList.map(f => h("option", {value: f.id}, `${f.name} (${flavorText(f)})`)));

  async function act(body, said) {
    await call("POST", base + "/action", {json: body});
    notice(said);
    await refresh();
  }
  const actions = {
    start: ["Start", () => act({"os-start": null}, "Starting.")],
    stop: ["Shut down", () => act({"os-stop": null}, "Shutting down.")],
    reboot: ["Reboot", () => act({reboot: {type: "SOFT"}}, "Rebooting.")],
    "hard-reboot": ["Hard reboot", () => act({reboot: {type: "HARD"}}, "Rebooting (hard).")],
    resize: ["Resize", () => act({resize: {flavorRef: resizeTo.value}}, "Resizing.")],
    rescue: ["Rescue", async () => {
      const made = await call("POST", base + "/action", {json: {rescue: null}});
      fill(out, h("p", {}, "Rescue mode; password: "),
        h("pre", {class: "secret"}, (made && made.adminPass) || "(none given)"));
      await refresh();
    }],
    unrescue: ["Unrescue", () => act({unrescue: null}, "Leaving rescue mode.")],
    console: ["Console", async () => {
      const made = await call("POST", base + "/action", {json: {console: {type: "vnc"}}});
      const c = (made && made.console) || {};
      fill(out, h("h3", {}, "Console"), h("dl", {class: "facts", id: "console-info"},
        Object.entries(c).map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
    }],
    rename: ["Rename", async () => {
      const name = prompt("New name", server.name);
      if (!name || !name.trim()) return;
      await call("PUT", base, {json: {server: {name: name.trim()}}});
      notice("Renamed.");
      await refresh();
    }],
    delete: ["Delete", async () => {
      if (!confirm(`Delete the server ${server.name}? Its disk is lost.`)) return;
      await call("DELETE", base);
      notice(`Server ${server.name} is being deleted.`);
      go("#/servers");
    }],
  };
  for (const [key, [label, run]] of Object.entries(actions)) {
    buttons[key] = h("button", {type: "button", id: `action-${key}`,
      class: key === "delete" ? "danger" : "secondary",
      onclick: async () => {
        buttons[key].disabled = true;
        fill(out);
        try { await run(); } catch (e) {
          fill(out, h("p", {class: "error", role: "alert", id: "action-error"},
            e.message || String(e)));
        } finally { enable(); }
      }}, label);
  }

  function enable() {
    const ok = allowed(server);
    for (const [key, b] of Object.entries(buttons)) b.disabled = !ok.has(key);
  }

  function draw() {
    const f = flavorById[server.flavor && server.flavor.id];
    const meta = Object.entries(server.metadata || {});
    fill(title, server.name || server.id);
    fill(facts,
      h("dt", {}, "Status"), h("dd", {id: "server-status"}, statusOf(server)),
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, server.id)),
      h("dt", {}, "Flavor"), h("dd", {}, f ? `${f.name} (${flavorText(f)})` : (server.flavor || {}).id),
      h("dt", {}, "Image"), h("dd", {}, imageName[(server.image || {}).id] || (server.image || {}).id || ""),
      h("dt", {}, "Key pair"), h("dd", {}, server.key_name || "(none)"),
      h("dt", {}, "Addresses"), h("dd", {}, addressText(server) || "(none yet)"),
      h("dt", {}, "Created"), h("dd", {}, server.created || ""),
      h("dt", {}, "Updated"), h("dd", {}, server.updated || ""),
      h("dt", {}, "Metadata"), h("dd", {}, meta.length
        ? meta.map(([k, v]) => h("div", {}, `${k} = ${v}`)) : "(none)"));
    enable();
  }

  async function refresh() {
    try {
      server = (await call("GET", base)).server;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        fill(main, h("h1", {}, "Server deleted"),
          h("p", {}, h("a", {href: "#/servers"}, "All servers")));
        return;
      }
      throw e;
    }
    draw();
  }

  const title = h("h1", {id: "server-title"});
  fill(main, title, h("p", {}, h("a", {href: "#/servers"}, "← All servers")),
    facts,
    h("div", {class: "toolbar servers-actions"}, Object.values(buttons)),
    h("div", {class: "toolbar servers-resize"}, h("span", {}, "Resize to"), resizeTo),
    out);
  draw();
  every(2000, refresh);
}
