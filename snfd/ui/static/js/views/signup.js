// Sign up: the account waits for the mailed link to be followed.

import {field, fill, form, h} from "../dom.js";
import {call} from "../api.js";

export async function render(main) {
  const section = h("section", {class: "narrow"});
  fill(main, section);
  fill(section,
    h("h1", {}, "Sign up"),
    form([field("Email", "email", {type: "email", required: true, autocomplete: "email"}),
          field("First name", "first_name", {autocomplete: "given-name"}),
          field("Last name", "last_name", {autocomplete: "family-name"}),
          field("Password", "password", {type: "password", required: true,
                                         autocomplete: "new-password"})],
         "Sign up", async (values) => {
           await call("POST", "/ui/signup", {json: values, token: null});
           fill(section, h("h1", {}, "Check your mail"),
                h("p", {id: "signup-done"},
                  `A message to ${values.email} holds the link that verifies the address.`,
                  " Follow it to finish."));
         }, {id: "signup-form"}),
    h("p", {}, "Have an account? ", h("a", {href: "#/login"}, "Log in"), "."));
}
