// The account: who you are, the API token (renewed here, shown once), the
// settings for the command-line tools, quotas per project, and projects.

import {button, bytes, fill, h, notice, table} from "../dom.js";
import {call, endpoint, scope, session} from "../api.js";

const BYTE_RESOURCES = /(diskspace|ram|disk|volume\.size|\.size)$/;

function amount(resource, value) {
  if (value === undefined || value === null) return "";
  if (/ram$/.test(resource)) return bytes(value);
  return BYTE_RESOURCES.test(resource) ? bytes(value) : String(value);
}

export async function render(main) {
  const s = session();
  const account = endpoint("account");
  const [quotas, projects] = await Promise.all([
    call("GET", `${account}/quotas`),
    call("GET", `${account}/projects`).catch(() => []),
  ]);
  const names = Object.fromEntries((projects || []).map(p => [p.id, p.name]));
  const tokenBox = h("div", {id: "token-box"},
    h("p", {}, "Tokens are stored hashed: a token is shown once, when it is made."),
    button("Renew my API token", renew, {id: "renew-token",
      ask: "Every token of yours, this session's included, stops working now. Go on?"}));

  async function renew() {
    const made = await call("POST", "/ui/token");
    await scope(made.token, s.user.id);
    fill(tokenBox,
      h("p", {}, "Your new API token (until ", made.expires, "): copy it now."),
      h("pre", {id: "new-token", class: "secret"}, made.token),
      h("p", {}, "Settings for the tools:"),
      h("pre", {id: "tool-settings"}, settings(made.token)));
    notice("The token was renewed; the old ones are refused from now on.");
  }

  fill(main,
    h("h1", {}, "Account"),
    h("section", {},
      h("h2", {}, "Profile"),
      h("dl", {class: "facts"},
        h("dt", {}, "Name"), h("dd", {id: "user-name"}, s.user.name),
        h("dt", {}, "User id"), h("dd", {id: "user-id"}, s.user.id),
        h("dt", {}, "Project of this session"), h("dd", {}, s.project ? s.project.name : ""),
        h("dt", {}, "Session ends"), h("dd", {}, s.expires))),
    h("section", {}, h("h2", {}, "API token"), tokenBox),
    h("section", {},
      h("h2", {}, "Quotas"),
      Object.entries(quotas || {}).map(([project, resources]) => h("div", {class: "quota"},
        h("h3", {}, names[project] || (project === s.user.id ? "Base project" : project)),
        table([
          {title: "Resource", cell: r => r[0]},
          {title: "Used", cell: r => amount(r[0], r[1].usage)},
          {title: "Pending", cell: r => amount(r[0], r[1].pending)},
          {title: "Limit", cell: r => amount(r[0], r[1].limit)},
          {title: "", cell: r => meter(r[1])},
        ], Object.entries(resources).sort(), {rowId: r => r[0]})))),
    h("p", {}, h("a", {href: "#/projects"}, "Projects"),
      ": apply for one, join, leave, and manage the members of yours."));
}

function meter(q) {
  const limit = Number(q.limit);
  if (!limit) return "";
  const used = Math.min(1, (Number(q.usage) || 0) / limit);
  return h("meter", {min: 0, max: 1, value: used.toFixed(3),
                     title: `${Math.round(used * 100)}%`});
}

function settings(token) {
  const origin = location.origin;
  return [
    "# openstack, swift (environment)",
    `export OS_AUTH_URL=${origin}/identity/v3`,
    "export OS_AUTH_TYPE=token",
    `export OS_TOKEN=${token}`,
    `export OS_PROJECT_ID=${session().user.id}`,
    "",
    "# snf",
    `snf login --url ${origin} --token ${token}`,
  ].join("\n");
}
