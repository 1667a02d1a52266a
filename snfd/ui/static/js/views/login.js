// Log in with a password (the local provider, or LDAP where configured).

import {field, fill, form, h} from "../dom.js";
import {call, login} from "../api.js";
import {LOGIN_PENDING, go} from "../app.js";

export async function render(main) {
  const known = await call("GET", "/ui/providers", {token: null}).catch(() => ({providers: []}));
  const others = known.providers.filter(p => p.kind === "redirect");
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
      others.length ? h("div", {class: "providers"}, h("p", {}, "Or log in with:"),
        others.map(p => h("p", {}, h("a", {
          href: p.url, class: "provider",
          onclick: () => sessionStorage.setItem(LOGIN_PENDING, String(Date.now())),
        }, p.name.replace(/^oidc:/, ""))))) : null,
      h("p", {}, "No account? ", h("a", {href: "#/signup"}, "Sign up"), ".")));
}
