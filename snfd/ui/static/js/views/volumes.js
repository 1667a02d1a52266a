// Volumes (Cinder API v3) and their snapshots: volumes listed with their
// status (polled while the page is shown), created empty, from an image or
// from a snapshot, deleted; attached to a server and detached through
// Nova's os-volume_attachments; snapshots made from a volume, listed,
// deleted, and a server booted from one (block_device_mapping_v2 with
// source_type snapshot).  Actions are offered in the states the API takes
// them in; its refusals are shown as it words them.

import {button, field, fill, form, h, notice} from "../dom.js";
import {call, endpoint, has} from "../api.js";
import {every, go} from "../app.js";
import {pagedList, status} from "../lists.js";

const POLL_MS = 2000;
const GiB = 1 << 30;

export async function render(main) {
  const vol = endpoint(has("volumev3") ? "volumev3" : "block-storage");
  const compute = has("compute") ? endpoint("compute") : null;
  const image = has("image") ? endpoint("image") : null;
  let data = {volumes: [], snapshots: [], servers: [], images: [], flavors: [], types: []};

  const serverName = id => {
    const s = data.servers.find(x => String(x.id) === String(id));
    return s ? `${s.name} (${s.id})` : (id ? `server ${id}` : "");
  };
  const serverKey = () => data.servers.map(s => [s.id, s.name, s.status]);
  const volumeName = id => {
    const v = data.volumes.find(x => x.id === id);
    return v ? (v.name || v.id) : id;
  };
  const source = v => {
    if (v.snapshot_id) return `snapshot ${(data.snapshots.find(s => s.id === v.snapshot_id)
                                          || {}).name || v.snapshot_id}`;
    const img = v.volume_image_metadata && v.volume_image_metadata.image_id;
    if (img) return `image ${(data.images.find(i => i.id === img) || {}).name || img}`;
    return "empty";
  };

  const volumes = pagedList("volume-list", [
    {title: "Name", cell: v => h("span", {class: "volume-name"}, v.name || "(no name)")},
    {title: "Size", cell: v => `${v.size} GiB`},
    {title: "Status", cell: v => status(v.status)},
    {title: "Type", cell: v => v.volume_type},
    {title: "From", cell: v => source(v)},
    {title: "Server", cell: v => v.attachments.map(a => serverName(a.server_id)).join(", ")},
    {title: "", cell: v => h("span", {class: "volumes-actions"}, volumeActions(v))},
  ], {empty: "No volumes.", rowId: v => v.id,
      text: v => [v.name, v.id, v.status, source(v)].join(" "),
      deps: () => [serverKey(), data.snapshots.map(s => [s.id, s.name])]});

  function volumeActions(v) {
    const out = [];
    if (v.status === "available" && compute) {
      const select = h("select", {class: "server-select", "aria-label": "Server"},
        h("option", {value: ""}, "Server…"),
        data.servers.filter(s => ["ACTIVE", "SHUTOFF"].includes(s.status))
          .map(s => h("option", {value: s.id}, `${s.name} (${s.status})`)));
      out.push(select, button("Attach", async () => {
        if (!select.value) throw new Error("Choose a server first.");
        await call("POST", `${compute}/servers/${select.value}/os-volume_attachments`,
                   {json: {volumeAttachment: {volumeId: v.id}}});
        notice(`Attaching ${v.name || v.id} to ${serverName(select.value)}.`);
        await refresh();
      }, {class: "attach-volume"}));
    }
    if (v.status === "in-use" && compute) {
      for (const a of v.attachments) {
        out.push(button("Detach", async () => {
          await call("DELETE", `${compute}/servers/${a.server_id}/os-volume_attachments/${v.id}`);
          notice(`Detaching ${v.name || v.id}.`);
          await refresh();
        }, {class: "secondary detach-volume"}));
      }
    }
    if (v.status === "available" || v.status === "in-use") {
      out.push(button("Snapshot", async () => {
        const name = `${v.name || "volume"}-snapshot`;
        await call("POST", `${vol}/snapshots`, {json: {snapshot: {
          volume_id: v.id, name, force: v.status === "in-use"}}});
        notice(`Snapshot ${name} requested.`);
        await refresh();
      }, {class: "secondary snapshot-volume"}));
    }
    if (["available", "error", "error_restoring", "error_extending"].includes(v.status)) {
      out.push(button("Delete", async () => {
        await call("DELETE", `${vol}/volumes/${v.id}`);
        notice(`Volume ${v.name || v.id} is being deleted.`);
        await refresh();
      }, {class: "danger delete-volume",
          ask: `Delete the volume ${v.name || v.id}?`}));
    }
    return out;
  }

  const snapshots = pagedList("snapshot-list", [
    {title: "Name", cell: s => h("span", {class: "snapshot-name"}, s.name || "(no name)")},
    {title: "Volume", cell: s => volumeName(s.volume_id)},
    {title: "Size", cell: s => `${s.size} GiB`},
    {title: "Status", cell: s => status(s.status)},
    {title: "", cell: s => h("span", {class: "volumes-actions"},
      s.status === "available" ? [
        button("New volume", async () => {
          await call("POST", `${vol}/volumes`, {json: {volume: {
            snapshot_id: s.id, name: `${s.name || "snapshot"}-volume`}}});
          notice(`A volume from ${s.name || s.id} is being made.`);
          await refresh();
        }, {class: "secondary volume-from-snapshot"}),
        compute ? bootForm(s) : null] : null,
      ["available", "error"].includes(s.status) ? button("Delete", async () => {
        await call("DELETE", `${vol}/snapshots/${s.id}`);
        notice(`Snapshot ${s.name || s.id} deleted.`);
        await refresh();
      }, {class: "danger delete-snapshot",
        ask: `Delete the snapshot ${s.name || s.id}?`}) : null)},
  ], {empty: "No snapshots.", rowId: s => s.id,
      text: s => [s.name, s.id, volumeName(s.volume_id)].join(" "),
      deps: () => [data.volumes.map(v => [v.id, v.name]), data.flavors.map(f => f.id)]});

  /** Boot a server from snapshot ``s``: its boot disk a new volume of it. */
  function bootForm(s) {
    const flavor = h("select", {class: "flavor-select", "aria-label": "Flavor"},
      data.flavors.map(f => h("option", {value: f.id},
        `${f.name} (${f.vcpus} CPU, ${f.ram} MiB, ${f.disk} GiB)`)));
    return h("span", {class: "volumes-boot"}, flavor, button("Boot a server", async () => {
      const chosen = data.flavors.find(f => f.id === flavor.value);
      const made = await call("POST", `${compute}/servers`, {json: {server: {
        name: `${s.name || "snapshot"}-server`, flavorRef: flavor.value,
        block_device_mapping_v2: [{source_type: "snapshot", destination_type: "volume",
                                   uuid: s.id, boot_index: 0,
                                   volume_size: Math.max(s.size, chosen ? chosen.disk : 0),
                                   delete_on_termination: true}]}}});
      notice(`Server ${made.server.id} is being built from ${s.name || s.id}: see Servers.`);
      go("#/servers");
    }, {class: "secondary boot-snapshot"}));
  }

  const sourceSelect = h("select", {name: "source", "aria-label": "Source"});
  function drawSources() {
    const options = [h("option", {value: ""}, "Empty"),
      data.images.map(i => h("option", {value: `image:${i.id}`},
        `Image ${i.name || i.id}` + (i.size ? ` (${Math.ceil(i.size / GiB)} GiB)` : ""))),
      data.snapshots.filter(s => s.status === "available")
        .map(s => h("option", {value: `snapshot:${s.id}`}, `Snapshot ${s.name || s.id}`))];
    const key = JSON.stringify([data.images.map(i => i.id),
      data.snapshots.filter(s => s.status === "available").map(s => s.id)]);
    if (sourceSelect.dataset.key === key) return;
    const kept = sourceSelect.value;
    sourceSelect.dataset.key = key;
    fill(sourceSelect, options);
    sourceSelect.value = kept;
    if (sourceSelect.value !== kept) sourceSelect.value = "";
  }
  const typeSelect = h("select", {name: "volume_type", "aria-label": "Type"});

  async function load(first) {
    const [v, s, servers] = await Promise.all([
      call("GET", `${vol}/volumes/detail`), call("GET", `${vol}/snapshots/detail`),
      compute ? call("GET", `${compute}/servers/detail`).catch(() => ({servers: []}))
        : {servers: []},
    ]);
    data.volumes = v.volumes;
    data.snapshots = s.snapshots;
    data.servers = servers.servers || [];
    if (first) {
      const [images, flavors, types] = await Promise.all([
        image ? call("GET", `${image}/v2/images?limit=1000`).catch(() => ({images: []}))
          : {images: []},
        compute ? call("GET", `${compute}/flavors/detail`).catch(() => ({flavors: []}))
          : {flavors: []},
        call("GET", `${vol}/types`).catch(() => ({volume_types: []})),
      ]);
      data.images = (images.images || []).filter(i => i.status === "active");
      data.flavors = flavors.flavors || [];
      data.types = types.volume_types || [];
    }
  }

  function draw() {
    volumes.set(data.volumes);
    snapshots.set(data.snapshots);
    drawSources();
  }

  async function refresh() {
    await load(false);
    draw();
  }

  await load(true);
  fill(typeSelect, h("option", {value: ""}, "Default"),
       data.types.map(t => h("option", {value: t.name}, t.name)));
  fill(main,
    h("h1", {}, "Volumes"),
    h("section", {class: "volumes"},
      h("h2", {}, "New volume"),
      form([field("Name", "name", {maxlength: 255}),
            field("Size (GiB; from an image or snapshot: at least its size)", "size",
                  {type: "number", min: 1, step: 1}),
            h("label", {}, h("span", {}, "From"), sourceSelect),
            h("label", {}, h("span", {}, "Type"), typeSelect)],
           "Create volume", async (values, el) => {
             const body = {name: values.name.trim()};
             if (values.size) body.size = Number(values.size);
             const [kind, id] = (values.source || "").split(":");
             if (kind === "image") body.imageRef = id;
             if (kind === "snapshot") body.snapshot_id = id;
             if (values.volume_type) body.volume_type = values.volume_type;
             if (!body.size && !kind) throw new Error("An empty volume needs a size.");
             const made = (await call("POST", `${vol}/volumes`, {json: {volume: body}})).volume;
             el.reset();
             notice(`Volume ${made.name || made.id} is being made.`);
             await refresh();
           }, {id: "volume-form"})),
    h("section", {class: "volumes"}, h("h2", {}, "Volumes"), volumes.el),
    h("section", {class: "volumes"}, h("h2", {}, "Snapshots"), snapshots.el));
  draw();
  every(POLL_MS, refresh);
}
