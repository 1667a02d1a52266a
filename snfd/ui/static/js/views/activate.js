// The mailed link (/ui/activate?auth=CODE): verify the address and set the
// password; nothing happens until the person submits.

import {field, fill, form, h} from "../dom.js";
import {call} from "../api.js";

export async function render(main) {
  const auth = new URLSearchParams(location.search).get("auth") || "";
  const section = h("section", {class: "narrow"});
  fill(main, section);
  fill(section,
    h("h1", {}, "Verify your email address"),
    h("p", {}, "Choose the account's password to finish."),
    form([field("Password", "password", {type: "password", required: true,
                                         autocomplete: "new-password"})],
         "Verify", async ({password}) => {
           const done = await call("POST", "/ui/activate", {json: {auth, password},
                                                            token: null});
           fill(section, h("h1", {}, "Address verified"),
                h("p", {id: "activate-done"}, done.state === "active"
                  ? "Your account is active."
                  : "Your account waits for an administrator's approval."),
                h("p", {}, h("a", {href: "/ui/#/login"}, "Log in")));
         }, {id: "activate-form"}));
}
