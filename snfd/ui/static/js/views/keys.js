// Key pairs (Nova's os-keypairs): the list, uploading a public key, making
// a new pair (the private key is offered once, as a download from a Blob
// URL, then forgotten) and deleting one.

import {field, fill, form, h, notice, table} from "../dom.js";
import {call} from "../api.js";
import {go, onLeave} from "../app.js";
import {compute, keypairs} from "../compute.js";

export async function render(main) {
  const keys = await keypairs();
  const secretBox = h("div", {id: "private-key-box"});
  let blobUrl = null;

  function forget() {
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = null;
    fill(secretBox);
  }
  onLeave(forget);

  async function remove(name) {
    if (!confirm(`Delete the key pair ${name}?`)) return;
    await call("DELETE", `${compute()}/os-keypairs/${encodeURIComponent(name)}`);
    notice(`Key pair ${name} deleted.`);
    forget();
    go("#/keys");
  }

  const listBox = h("section", {id: "keys-list"});
  function drawList(list) {
    fill(listBox, table([
      {title: "Name", cell: k => h("span", {class: "key-name"}, k.name)},
      {title: "Type", cell: k => k.type || "ssh"},
      {title: "Fingerprint", cell: k => h("code", {}, k.fingerprint || "")},
      {title: "", cell: k => h("button", {type: "button", class: "danger",
        "data-delete": k.name, onclick: () => remove(k.name).catch(e =>
          notice(e.message || String(e), "error"))}, "Delete")},
    ], list, {empty: "No key pairs yet.", rowId: k => k.name}));
  }
  drawList(keys);

  fill(main,
    h("h1", {}, "Key pairs"),
    secretBox,
    listBox,
    h("div", {class: "keys-forms"},
      h("section", {class: "narrow"}, h("h2", {}, "Make a new key pair"),
        h("p", {}, "The cloud makes the pair and gives the private key once; it keeps only the public key."),
        form([field("Name", "name", {required: true, maxlength: 255})], "Generate",
          async ({name}) => {
            const made = await call("POST", `${compute()}/os-keypairs`,
                                    {json: {keypair: {name: name.trim()}}});
            const kp = made.keypair;
            forget();
            blobUrl = URL.createObjectURL(new Blob([kp.private_key],
                                                   {type: "application/x-pem-file"}));
            fill(secretBox, h("section", {class: "keys-secret"},
              h("h2", {}, `Private key of ${kp.name}`),
              h("p", {}, "Save it now: it is shown this once and the cloud does not keep it."),
              h("p", {class: "toolbar"},
                h("a", {href: blobUrl, download: `${kp.name}.pem`, id: "private-key-download",
                        class: "button"}, `Download ${kp.name}.pem`),
                h("button", {type: "button", class: "secondary", id: "private-key-forget",
                             onclick: () => { forget(); go("#/keys"); }}, "I saved it: forget it")),
              h("pre", {id: "private-key", class: "secret"}, kp.private_key)));
            notice(`Key pair ${kp.name} made.`);
            drawList(await keypairs());
          }, {id: "generate-key-form"})),
      h("section", {class: "narrow"}, h("h2", {}, "Upload a public key"),
        form([field("Name", "name", {required: true, maxlength: 255}),
              h("label", {}, h("span", {}, "Public key (ssh-rsa, ssh-ed25519 ...)"),
                h("textarea", {name: "public_key", rows: 4, required: true}))],
          "Upload", async ({name, public_key}) => {
            await call("POST", `${compute()}/os-keypairs`,
                       {json: {keypair: {name: name.trim(), public_key: public_key.trim()}}});
            notice(`Key pair ${name.trim()} uploaded.`);
            go("#/keys");
          }, {id: "upload-key-form"}))));
}
