// Users, for administrators: every account with its state, and the switch
// Keystone's API gives (enabled: activating a user who waits for moderation,
// or deactivating one).  Address: #/users.

import {fill, h, notice, table} from "../dom.js";
import {call, session} from "../api.js";
import {go} from "../app.js";

export async function render(main) {
  if (!session().user["SNF:admin"]) {
    fill(main, h("p", {class: "error"}, "Only administrators manage users."));
    return;
  }
  const body = await call("GET", "/identity/v3/users");
  const users = (body.users || []).sort((a, b) => Number(a.enabled) - Number(b.enabled)
                                              || a.name.localeCompare(b.name));
  fill(main, h("h1", {}, "Users"),
    h("p", {}, "Disabled users include those who verified their address and wait for"
              + " an administrator (moderation): activate them here."),
    table([
      {title: "Name", cell: u => u.name},
      {title: "Email", cell: u => u.email || ""},
      {title: "Display name", cell: u => u.description || ""},
      {title: "State", cell: u => u.enabled ? "active" : "not active"},
      {title: "", cell: u => u.id === session().user.id ? "" : h("button", {
        type: "button", class: u.enabled ? "danger" : "", "data-user": u.name,
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            await call("PATCH", `/identity/v3/users/${encodeURIComponent(u.id)}`,
                       {json: {user: {enabled: !u.enabled}}});
            notice(`${u.name} is ${u.enabled ? "deactivated" : "active"} now.`);
            go("#/users");
          } catch (e) {
            notice(e.message || String(e), "error");
            event.target.disabled = false;
          }
        }}, u.enabled ? "Deactivate" : "Activate")},
    ], users, {rowId: u => u.id}));
}
