// Projects (Astakos): the ones you own or belong to, applying for a new one,
// joining and leaving, and for a project's owner its members (accept,
// reject, remove) and its pending application; an administrator decides
// applications.  Addresses: #/projects, #/projects/<id>.

import {button, bytes, field, fill, form, h, notice, table} from "../dom.js";
import {call, endpoint, session} from "../api.js";
import {go} from "../app.js";

const UNITS = {k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4};

/** "10G", "512 MiB", "1000" -> bytes, for resources counted in bytes. */
export function parseAmount(text, unit) {
  const m = String(text).trim().match(/^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i);
  if (!m) throw new Error(`Not an amount: ${text}`);
  const scale = unit === "bytes" && m[2] ? UNITS[m[2].toLowerCase()] : 1;
  return Math.round(Number(m[1]) * scale);
}

function amount(unit, value) { return unit === "bytes" ? bytes(value) : String(value); }

export async function render(main, parts) {
  const account = endpoint("account");
  if (parts[0]) return project(main, account, parts[0]);
  const [projects, memberships, resources] = await Promise.all([
    call("GET", `${account}/projects`),
    call("GET", `${account}/projects/memberships`),
    call("GET", `${account}/resources`),
  ]);
  const mine = Object.fromEntries(memberships.filter(m => m.user === session().user.id)
                                             .map(m => [m.project, m]));
  fill(main,
    h("h1", {}, "Projects"),
    table([
      {title: "Name", cell: p => h("a", {href: `#/projects/${encodeURIComponent(p.id)}`},
                                   p.name)},
      {title: "State", cell: p => p.state},
      {title: "Role", cell: p => p.owner === session().user.id ? "owner"
                                 : (mine[p.id] ? `member (${mine[p.id].state})` : "")},
      {title: "", cell: p => membershipButtons(account, mine[p.id])},
    ], projects, {empty: "No projects.", rowId: p => p.id}),
    h("section", {}, h("h2", {}, "Join a project"),
      form([field("Project id", "project", {required: true})], "Ask to join",
           async ({project}) => {
             await call("POST", `${account}/projects/memberships`,
                        {json: {join: {project: project.trim()}}});
             notice("Asked to join: the project's policy or owner decides.");
             go("#/projects");
           }, {id: "join-form"})),
    h("section", {}, h("h2", {}, "Apply for a new project"),
      applicationForm(account, resources)));
}

function membershipButtons(account, membership) {
  if (!membership) return "";
  return (membership.allowed_actions || []).filter(a => a === "leave" || a === "cancel")
    .map(action => button(action === "leave" ? "Leave" : "Cancel request", async () => {
      await call("POST", `${account}/projects/memberships/${membership.id}/action`,
                 {json: {[action]: {}}});
      notice(action === "leave" ? "You left the project." : "Your request was cancelled.");
      go("#/projects");
    }, {class: "secondary", "data-membership-action": action}));
}

function applicationForm(account, resources) {
  const names = Object.keys(resources || {}).sort();
  const rows = names.map(name => h("tr", {},
    h("td", {}, name, h("br"), h("small", {}, resources[name].description || "")),
    h("td", {}, h("input", {name: `member:${name}`, placeholder: resources[name].unit === "bytes"
                                                                 ? "e.g. 10G" : "e.g. 2"})),
    h("td", {}, h("input", {name: `project:${name}`}))));
  const end = new Date(Date.now() + 90 * 86400e3).toISOString().slice(0, 10);
  return form([
    field("Name (domain style, e.g. lab.example.org)", "name", {required: true}),
    field("Description", "description"),
    field("Homepage", "homepage", {type: "url"}),
    field("Ends on", "end_date", {type: "date", required: true, value: end}),
    h("label", {}, h("span", {}, "Who may join"),
      h("select", {name: "join_policy"}, h("option", {value: "moderated"}, "those the owner accepts"),
        h("option", {value: "auto"}, "anyone"), h("option", {value: "closed"}, "nobody"))),
    field("Most members (empty: no limit)", "max_members", {type: "number", min: 0}),
    h("table", {class: "list"}, h("thead", {}, h("tr", {}, h("th", {}, "Resource"),
      h("th", {}, "Each member"), h("th", {}, "The whole project"))), h("tbody", {}, rows)),
  ], "Apply", async (values) => {
    const wanted = {};
    for (const name of names) {
      const member = values[`member:${name}`], whole = values[`project:${name}`];
      if (!member && !whole) continue;
      const unit = resources[name].unit;
      const m = parseAmount(member || whole, unit), p = parseAmount(whole || member, unit);
      wanted[name] = {member_capacity: m, project_capacity: Math.max(m, p)};
    }
    const spec = {name: values.name.trim(), description: values.description,
                  homepage: values.homepage || undefined, join_policy: values.join_policy,
                  end_date: new Date(values.end_date + "T23:59:59Z").toISOString(),
                  resources: wanted};
    if (values.max_members) spec.max_members = Number(values.max_members);
    const made = await call("POST", `${account}/projects`, {json: spec});
    notice("Your application was sent: an administrator decides it.");
    go(`#/projects/${encodeURIComponent(made.id)}`);
  }, {id: "apply-form"});
}

async function project(main, account, id) {
  const p = await call("GET", `${account}/projects/${encodeURIComponent(id)}`);
  const resources = await call("GET", `${account}/resources`);
  const me = session().user;
  const owner = p.owner === me.id;
  const app = p.last_application;
  const members = owner || me["SNF:admin"]
    ? await call("GET", `${account}/projects/memberships?project=${encodeURIComponent(id)}`)
    : [];
  const emails = members.length ? (await call("POST", `${account}/user_catalogs`,
                                              {json: {uuids: members.map(m => m.user)}})
                                   .catch(() => ({uuid_catalog: {}}))).uuid_catalog || {} : {};
  fill(main,
    h("h1", {}, p.name),
    h("p", {}, h("a", {href: "#/projects"}, "All projects")),
    h("dl", {class: "facts"},
      h("dt", {}, "State"), h("dd", {id: "project-state"}, p.state),
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, p.id)),
      h("dt", {}, "Description"), h("dd", {}, p.description || ""),
      h("dt", {}, "Ends"), h("dd", {}, p.end_date || ""),
      h("dt", {}, "Joining"), h("dd", {}, p.join_policy)),
    h("h2", {}, "Resources"),
    table([
      {title: "Resource", cell: r => r[0]},
      {title: "Each member", cell: r => amount((resources[r[0]] || {}).unit, r[1].member_capacity)},
      {title: "Whole project", cell: r => amount((resources[r[0]] || {}).unit,
                                                 r[1].project_capacity)},
    ], Object.entries(p.resources || {}).sort(), {empty: "None."}),
    app && app.state === "pending" ? h("section", {id: "pending-application"},
      h("h2", {}, "Pending application"),
      h("p", {}, `Application ${app.id} for ${app.name}, waiting for an administrator.`),
      me["SNF:admin"] ? ["approve", "deny"].map(a => button(a === "approve" ? "Approve"
        : "Deny", async () => {
          await call("POST", `${account}/projects/${encodeURIComponent(id)}/action`,
                     {json: {[a]: {app_id: app.id}}});
          notice(a === "approve" ? "Approved." : "Denied.");
          go(`#/projects/${encodeURIComponent(id)}`);
        }, {class: "secondary", "data-application-action": a})) : null,
      owner ? button("Cancel the application", async () => {
        await call("POST", `${account}/projects/${encodeURIComponent(id)}/action`,
                   {json: {cancel: {app_id: app.id}}});
        go(`#/projects/${encodeURIComponent(id)}`);
      }, {class: "secondary"}) : null) : null,
    members.length ? h("section", {}, h("h2", {}, "Members"),
      table([
        {title: "User", cell: m => emails[m.user] || m.user},
        {title: "State", cell: m => m.state},
        {title: "", cell: m => (m.allowed_actions || [])
          .filter(a => ["accept", "reject", "remove"].includes(a))
          .map(a => button(a[0].toUpperCase() + a.slice(1), async () => {
            await call("POST", `${account}/projects/memberships/${m.id}/action`,
                       {json: {[a]: {}}});
            go(`#/projects/${encodeURIComponent(id)}`);
          }, {class: "secondary", "data-member-action": a}))},
      ], members, {rowId: m => m.user})) : null);
}
