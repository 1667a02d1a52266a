// Log in with a password (the local provider, or LDAP where configured).

import {field, fill, form, h} from "../dom.js";
import {login} from "../api.js";
import {go} from "../app.js";

export async function render(main) {
  fill(main,
    h("section", {class: "narrow"},
      h("h1", {}, "Log in"),
      form([field("Email or username", "name", {autocomplete: "username", required: true,
                                                autofocus: true}),
            field("Password", "password", {type: "password", required: true,
                                           autocomplete: "current-password"})],
           "Log in", async ({name, password}) => {
             await login(name.trim(), password);
             go("#/files");
           }, {id: "login-form"}),
      h("p", {}, "No account? ", h("a", {href: "#/signup"}, "Sign up"), ".")));
}
