// Images (Glance v2 at /image/v2): yours, those shared with you and the
// public ones; registering a file you have in Pithos as an image (Synnefo's
// way: Plankton's POST /image/v1.0/images/ with X-Image-Meta-* headers and
// the file's pithos:// location; Glance v2 serves no locations here), and
// unregistering one of yours (the file stays).

import {bytes, field, fill, form, h, notice, table} from "../dom.js";
import {call, endpoint, request, session} from "../api.js";
import {go} from "../app.js";
import {parsePairs} from "../compute.js";

const FORMATS = ["diskdump", "raw", "qcow2", "vmdk", "vdi", "vhd", "iso", "extdump", "ntfsdump"];

async function allImages() {
  const base = endpoint("image");
  const out = [];
  let next = "/v2/images?limit=200";
  for (let i = 0; next && i < 50; i++) {
    const page = await call("GET", base + next);
    out.push(...((page && page.images) || []));
    next = page && page.next;
  }
  return out;
}

export async function render(main) {
  const s = session();
  const mine = new Set([s.user.id, s.project && s.project.id]);
  const list = await allImages();
  const groups = [
    ["Mine", "images-mine", list.filter(i => mine.has(i.owner))],
    ["Shared with me", "images-shared", list.filter(i => !mine.has(i.owner) &&
      !["public", "community"].includes(i.visibility))],
    ["Public", "images-public", list.filter(i => !mine.has(i.owner) &&
      ["public", "community"].includes(i.visibility))],
  ];
  const plankton = endpoint("image") + "/v1.0/images/";

  async function unregister(image) {
    if (!confirm(`Stop ${image.name} being an image? Its file stays in your storage.`)) return;
    await request("DELETE", plankton + encodeURIComponent(image.id));
    notice(`${image.name} is no longer an image.`);
    go("#/images");
  }

  const columns = own => [
    {title: "Name", cell: i => h("span", {class: "image-name"}, i.name || i.id)},
    {title: "Status", cell: i => i.status},
    {title: "Format", cell: i => `${i.disk_format || ""}/${i.container_format || ""}`},
    {title: "Size", cell: i => bytes(i.size)},
    {title: "Visibility", cell: i => i.visibility},
    {title: "OS", cell: i => i.OS || i.os || ""},
    {title: "Id", cell: i => h("code", {}, i.id)},
    own ? {title: "", cell: i => h("button", {type: "button", class: "secondary",
      "data-unregister": i.id, onclick: () => unregister(i).catch(e =>
        notice(e.message || String(e), "error"))}, "Unregister")} : null,
  ].filter(Boolean);

  fill(main,
    h("h1", {}, "Images"),
    groups.map(([title, id, rows]) => h("section", {id},
      h("h2", {}, title, ` (${rows.length})`),
      table(columns(id === "images-mine"), rows, {empty: "None.", rowId: i => i.id}))),
    h("section", {class: "narrow"},
      h("h2", {}, "Register a file of yours as an image"),
      h("p", {}, "Upload the disk to your storage (Files, or snf file upload), then name it here."),
      form([
        field("Name", "name", {required: true, maxlength: 255}),
        field("File: container/path, or pithos://account/container/path", "location",
              {required: true, placeholder: "images/disk.diskdump"}),
        h("label", {}, h("span", {}, "Disk format"),
          h("select", {name: "disk_format"}, FORMATS.map(f => h("option", {value: f}, f)))),
        h("label", {class: "images-check"},
          h("input", {type: "checkbox", name: "public", value: "true"}), " Public"),
        h("label", {}, h("span", {}, "Properties (key=value, one a line: OS, OSFAMILY, ROOT_PARTITION, users...)"),
          h("textarea", {name: "properties", rows: 4})),
      ], "Register", async (v) => {
        let location = v.location.trim().replace(/^\/+/, "");
        if (!location.startsWith("pithos://")) location = `pithos://${s.user.id}/${location}`;
        const headers = {
          "X-Image-Meta-Name": encodeURIComponent(v.name.trim()),
          "X-Image-Meta-Location": location,
          "X-Image-Meta-Disk-Format": v.disk_format,
          "X-Image-Meta-Container-Format": "bare",
          "X-Image-Meta-Is-Public": v.public ? "true" : "false",
        };
        for (const [key, value] of Object.entries(parsePairs(v.properties))) {
          headers[`X-Image-Meta-Property-${encodeURIComponent(key)}`] = encodeURIComponent(value);
        }
        const response = await request("POST", plankton, {headers});
        notice(`Registered ${v.name.trim()} (${response.headers.get("X-Image-Meta-Id") || ""}).`);
        go("#/images");
      }, {id: "register-image-form"})));
}
