// Networks (Neutron API): networks with their subnets, created with a
// subnet CIDR, deleted; a network's ports (a port with a server's device_id
// is that server's NIC: adding one attaches the server, deleting it
// detaches); floating IPs allocated from a public network's pool, attached
// to a server (through one of its ports, Synnefo's way: the cloud adds a
// port on the public network), detached and released.  The page polls
// while it is shown and redraws a list only when what it shows changed.

import {button, field, fill, form, h, notice, table} from "../dom.js";
import {pagedList, status} from "../lists.js";
import {call, endpoint, has} from "../api.js";
import {every} from "../app.js";

const POLL_MS = 2500;

export async function render(main) {
  const net = endpoint("network") + "/v2.0";
  const compute = has("compute") ? endpoint("compute") : null;
  let data = {networks: [], subnets: [], ports: [], floatingips: [], servers: []};
  let selected = null;  // the network whose ports are shown

  const serverName = id => {
    const s = data.servers.find(x => String(x.id) === String(id));
    return s ? `${s.name} (${s.id})` : (id ? `server ${id}` : "");
  };
  const serverKey = () => data.servers.map(s => [s.id, s.name, s.status]);
  const subnetsOf = n => data.subnets.filter(s => s.network_id === n.id);
  const serverOptions = () => data.servers
    .filter(s => !["DELETED", "ERROR"].includes(s.status))
    .map(s => h("option", {value: s.id}, `${s.name} (${s.status})`));

  function serverPicker(label, action, attrs) {
    const select = h("select", {class: "server-select", "aria-label": "Server"},
                     h("option", {value: ""}, "Server…"), serverOptions());
    return h("span", {class: "networks-attach"}, select,
      button(label, async () => {
        if (!select.value) throw new Error("Choose a server first.");
        await action(select.value);
      }, attrs));
  }

  const networks = pagedList("network-list", [
    {title: "Name", cell: n => h("span", {class: "network-name"}, n.name || "(no name)")},
    {title: "Status", cell: n => status(n.status)},
    {title: "Kind", cell: n => n["router:external"] || n.public ? "public"
      : (n.shared ? "shared" : `private (${n.type || ""})`)},
    {title: "Subnets", cell: n => h("ul", {class: "networks-subnets"},
      subnetsOf(n).map(s => h("li", {"data-id": s.id}, s.cidr,
        s.gateway_ip ? ` gw ${s.gateway_ip}` : "", s.name ? ` (${s.name})` : "")))},
    {title: "", cell: n => h("span", {class: "networks-actions"},
      button(selected === n.id ? "Hide ports" : "Ports", async () => {
        selected = selected === n.id ? null : n.id;
        networks.redraw();
        drawPorts();
      }, {class: "secondary show-ports"}),
      compute && !n["router:external"]
        ? serverPicker("Attach server", async (server) => {
          await call("POST", `${net}/ports`, {json: {port: {network_id: n.id,
                                                             device_id: server}}});
          notice(`Attaching ${serverName(server)} to ${n.name}.`);
          selected = n.id;
          await refresh();
        }, {class: "attach-server"}) : null,
      mine(n) ? button("Delete", async () => {
        await call("DELETE", `${net}/networks/${n.id}`);
        notice(`Network ${n.name} deleted.`);
        if (selected === n.id) selected = null;
        await refresh();
      }, {class: "danger delete-network", ask: `Delete the network ${n.name || n.id}?`}) : null)},
  ], {empty: "No networks.", rowId: n => n.id,
      text: n => [n.name, n.id, ...subnetsOf(n).map(s => s.cidr)].join(" "),
      deps: () => [data.subnets, serverKey(), selected]});

  const mine = n => !n["router:external"] && !n.shared && !n.public;

  const portsTitle = h("h2", {}, "Ports");
  const ports = pagedList("port-list", [
    {title: "Port", cell: p => h("code", {}, p.id)},
    {title: "Status", cell: p => status(p.status)},
    {title: "Server", cell: p => serverName(p.device_id)},
    {title: "Addresses", cell: p => p.fixed_ips.map(ip => ip.ip_address).join(", ")},
    {title: "MAC", cell: p => p.mac_address},
    {title: "", cell: p => button(p.device_id ? "Detach" : "Delete", async () => {
      await call("DELETE", `${net}/ports/${p.id}`);
      notice(p.device_id ? `Detaching ${serverName(p.device_id)}.` : "Port deleted.");
      await refresh();
    }, {class: "danger delete-port",
        ask: p.device_id ? `Detach ${serverName(p.device_id)}?` : "Delete the port?"})},
  ], {empty: "No ports of yours on this network.", rowId: p => p.id,
      text: p => [p.id, serverName(p.device_id), ...p.fixed_ips.map(i => i.ip_address)]
        .join(" "),
      deps: serverKey});
  const portsSection = h("section", {id: "ports", class: "networks", hidden: true}, portsTitle, ports.el);

  function drawPorts() {
    const n = data.networks.find(x => x.id === selected);
    portsSection.hidden = !n;
    if (!n) return;
    fill(portsTitle, `Ports of ${n.name || n.id}`);
    ports.set(data.ports.filter(p => p.network_id === n.id));
  }

  const ips = pagedList("floating-ip-list", [
    {title: "Address", cell: ip => h("span", {class: "fip-address"}, ip.floating_ip_address)},
    {title: "Status", cell: ip => status(ip.status)},
    {title: "Server", cell: ip => serverName(ip.instance_id)},
    {title: "", cell: ip => h("span", {class: "networks-actions"},
      ip.port_id
        ? button("Detach", async () => {
          await call("PUT", `${net}/floatingips/${ip.id}`, {json: {floatingip: {port_id: null}}});
          notice(`${ip.floating_ip_address} detached.`);
          await refresh();
        }, {class: "secondary detach-ip"})
        : (compute ? serverPicker("Attach", async (server) => {
          const port = data.ports.find(p => p.device_id === String(server));
          if (!port) throw new Error("That server has no port to reach it through.");
          await call("PUT", `${net}/floatingips/${ip.id}`, {json: {floatingip: {port_id: port.id}}});
          notice(`${ip.floating_ip_address} attached to ${serverName(server)}.`);
          await refresh();
        }, {class: "attach-ip"}) : null),
      ip.port_id ? null : button("Release", async () => {
        await call("DELETE", `${net}/floatingips/${ip.id}`);
        notice(`${ip.floating_ip_address} released.`);
        await refresh();
      }, {class: "danger release-ip", ask: `Release ${ip.floating_ip_address}?`}))},
  ], {empty: "No floating IPs.", rowId: ip => ip.id,
      text: ip => [ip.floating_ip_address, serverName(ip.instance_id)].join(" "),
      deps: () => [serverKey(), data.ports.map(p => [p.id, p.device_id])]});

  const pool = h("select", {name: "floating_network_id", "aria-label": "Pool"});
  function drawPools() {
    const pools = data.networks.filter(n => n["SNF:floating_ip_pool"] || n["router:external"]);
    const key = JSON.stringify(pools.map(n => n.id));
    if (pool.dataset.key === key) return;
    pool.dataset.key = key;
    fill(pool, pools.map(n => h("option", {value: n.id}, n.name || n.id)));
  }

  async function load() {
    const [n, s, p, f, v] = await Promise.all([
      call("GET", `${net}/networks`), call("GET", `${net}/subnets`),
      call("GET", `${net}/ports`), call("GET", `${net}/floatingips`),
      compute ? call("GET", `${compute}/servers/detail`).catch(() => ({servers: []}))
        : {servers: []},
    ]);
    data = {networks: n.networks, subnets: s.subnets, ports: p.ports,
            floatingips: f.floatingips, servers: v.servers || []};
  }

  function draw() {
    networks.set(data.networks);
    ips.set(data.floatingips);
    drawPools();
    drawPorts();
  }

  async function refresh() {
    await load();
    draw();
  }

  await load();
  fill(main,
    h("h1", {}, "Networks"),
    h("section", {class: "networks"},
      h("h2", {}, "New network"),
      form([field("Name", "name", {required: true, maxlength: 255}),
            field("Subnet (CIDR)", "cidr", {required: true, placeholder: "10.0.0.0/24"})],
           "Create network", async ({name, cidr}, el) => {
             const made = (await call("POST", `${net}/networks`,
                                      {json: {network: {name: name.trim()}}})).network;
             try {
               await call("POST", `${net}/subnets`, {json: {subnet: {
                 network_id: made.id, cidr: cidr.trim(),
                 ip_version: cidr.includes(":") ? 6 : 4}}});
             } catch (e) {
               // The network without the subnet it was asked with: undone.
               await call("DELETE", `${net}/networks/${made.id}`).catch(() => null);
               throw e;
             }
             el.reset();
             notice(`Network ${made.name} created.`);
             await refresh();
           }, {id: "network-form"})),
    h("section", {class: "networks"}, h("h2", {}, "Networks"), networks.el),
    portsSection,
    h("section", {class: "networks"},
      h("h2", {}, "Floating IPs"),
      form([h("label", {}, h("span", {}, "From the pool of"), pool)], "Allocate an IP",
           async () => {
             if (!pool.value) throw new Error("This cloud has no floating IP pool.");
             const made = (await call("POST", `${net}/floatingips`, {json: {floatingip: {
               floating_network_id: pool.value}}})).floatingip;
             notice(`${made.floating_ip_address} allocated.`);
             await refresh();
           }, {id: "floating-ip-form"}),
      ips.el));
  draw();
  every(POLL_MS, refresh);
}
