// What the compute pages share: the Nova-dialect endpoint the Keystone
// catalog names "compute" (/compute/v2.1), the lookups (flavors, images,
// keypairs, limits) and which actions a server's state allows.

import {call, endpoint, request} from "./api.js";
import {h} from "./dom.js";

/** The compute API's path (Nova's dialect: string ids, SHUTOFF, 404 once deleted). */
export function compute() { return endpoint("compute"); }

/** GET a compute path; also the server's clock from the Date header. */
export async function getWithDate(path) {
  const response = await request("GET", compute() + path);
  const text = await response.text();
  const date = Date.parse(response.headers.get("Date") || "");
  return {body: text ? JSON.parse(text) : null, date: isNaN(date) ? Date.now() : date};
}

export async function flavors() {
  const body = await call("GET", compute() + "/flavors/detail");
  const list = (body && body.flavors) || [];
  // The disk template: the extra spec SNF:disk_template when set, else the
  // tail of Synnefo's flavor names (C1R1024D10file -> file).
  await Promise.all(list.map(async f => {
    let spec = null;
    try {
      const specs = await call("GET", `${compute()}/flavors/${encodeURIComponent(f.id)}/os-extra_specs`);
      spec = specs && specs.extra_specs && specs.extra_specs["SNF:disk_template"];
    } catch (e) { /* no extra specs to read */ }
    const m = /^C\d+R\d+D\d+(\w+)$/.exec(f.name || "");
    f.template = spec || (m ? m[1] : "");
  }));
  return list;
}

export async function images() {
  const body = await call("GET", compute() + "/images/detail");
  return (body && body.images) || [];
}

export async function keypairs() {
  const body = await call("GET", compute() + "/os-keypairs");
  return ((body && body.keypairs) || []).map(k => k.keypair || k);
}

export async function limits() {
  const body = await call("GET", compute() + "/limits");
  return (body && body.limits && body.limits.absolute) || {};
}

/** A flavor as a person reads it. */
export function flavorText(f) {
  if (!f) return "";
  return `${f.vcpus} CPU, ${f.ram} MiB RAM, ${f.disk} GiB disk${f.template ? ", " + f.template : ""}`;
}

/** The server's status with its task, coloured by the stylesheet. */
export function statusOf(server) {
  const task = server["OS-EXT-STS:task_state"];
  return h("span", {class: `status status-${server.status}`, "data-status": server.status},
    server.status, task ? ` (${task})` : "");
}

/** The IPs of a server, one string. */
export function addressText(server) {
  return Object.entries(server.addresses || {})
    .flatMap(([net, list]) => (list || []).map(a => `${a.addr} (${net})`)).join(", ");
}

/** Which actions the server's state allows (snfd.cyclades.model.validate_action
 * as Nova's dialect shows it): a pending task blocks all but delete and
 * rename; BUILD allows the console; ERROR nothing but delete and rename;
 * start, resize and rescue want SHUTOFF, stop wants ACTIVE. */
export function allowed(server) {
  const busy = !!server["OS-EXT-STS:task_state"];
  const s = server.status;
  const ok = new Set(["delete", "rename"]);
  if (busy) return ok;
  if (s === "BUILD") { ok.add("console"); return ok; }
  if (s === "ACTIVE") ["stop", "reboot", "hard-reboot", "console"].forEach(a => ok.add(a));
  if (s === "SHUTOFF") {
    ["start", "reboot", "hard-reboot", "resize", "rescue", "unrescue", "console"]
      .forEach(a => ok.add(a));
  }
  return ok;
}

/** "key=value" lines as an object (empty lines skipped). */
export function parsePairs(text) {
  const out = {};
  for (const line of (text || "").split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`"${line.trim()}" is not key=value.`);
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}
