// The app: a page per address (#/files, #/servers ...), each drawn by its
// module in views/ from the APIs.  Pages other than login, sign-up and
// activation need a session.

import {fill, h, notice} from "./dom.js";
import {adopt, logout, session} from "./api.js";

const PUBLIC = new Set(["login", "signup", "activate"]);
const PAGES = new Set(["login", "signup", "activate", "account", "files", "shared", "projects", "users", "servers",
                       "networks", "volumes", "images", "keys"]);
let drawing = 0;
let leaving = [];

/** Run ``fn`` when the page changes (stop polling, workers...). */
export function onLeave(fn) { leaving.push(fn); }

/** Run ``fn`` every ``ms`` (counted from the end of each run) until the
 * page changes; a failure shows its message and the loop goes on. */
export function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    try { await fn(); } catch (e) {
      if (!stopped) notice(e.message || String(e), "error");
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  onLeave(() => { stopped = true; clearTimeout(timer); });
}

/** The page's name and the rest of its address, from the location. */
function route() {
  if (location.pathname.replace(/\/$/, "").endsWith("/ui/activate")) {
    return {page: "activate", parts: []};
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts.shift() || (session() ? "files" : "login");
  return {page: PAGES.has(page) ? page : "files", parts};
}

/** Go to a page of the app. */
export function go(hash) {
  if (location.pathname.replace(/\/$/, "").endsWith("/ui/activate")) {
    location.assign("/ui/" + hash);
    return;
  }
  if (location.hash === hash) draw(); else location.hash = hash;
}

async function draw() {
  for (const fn of leaving.splice(0)) {
    try { fn(); } catch (e) { console.error(e); }
  }
  const mine = ++drawing;
  let {page, parts} = route();
  const s = session();
  if (!s && !PUBLIC.has(page)) page = "login";
  if (s && (page === "login" || page === "signup")) page = "files";
  frame(s, page);
  // Each drawing gets an element of its own: a page still drawing when the
  // next one starts (waiting on the APIs) only fills its own, detached one.
  const here = h("div", {class: `page page-${page}`},
                 h("p", {class: "loading"}, "Loading…"));
  fill(document.getElementById("main"), here);
  try {
    const view = await import(`./views/${page}.js`);
    if (mine !== drawing) return;
    await view.render(here, parts);
  } catch (e) {
    if (mine !== drawing) return;
    fill(here, h("p", {class: "error", role: "alert"}, e.message || String(e)));
  }
}

function frame(s, page) {
  document.getElementById("nav").hidden = !s;
  document.getElementById("logout").hidden = !s;
  fill(document.getElementById("who"), s ? s.user.name : "");
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.dataset.page === page);
    if ("admin" in a.dataset) a.hidden = !(s && s.user["SNF:admin"]);
  }
}

document.getElementById("logout").addEventListener("click", () => {
  logout();
  notice("Logged out.");
  go("#/login");
});
window.addEventListener("snfd:logged-out", () => {
  notice("Your session ended: log in again.", "error");
  go("#/login");
});
window.addEventListener("hashchange", draw);

// A login provider's hand-over (/ui/#token=...): drop it from the address
// and the history at once, and keep the token only when this tab asked for
// a login in the last ten minutes (login.js notes it): a link carrying
// someone else's token must not log the person into that account.
export const LOGIN_PENDING = "snfd.login-pending";

async function start() {
  const handed = location.hash.match(/^#token=([^&]+)/);
  if (handed) {
    history.replaceState(null, "", location.pathname + "#/files");
    const asked = Number(sessionStorage.getItem(LOGIN_PENDING) || 0);
    sessionStorage.removeItem(LOGIN_PENDING);
    if (Date.now() - asked > 600e3) {
      notice("A login this page did not start was ignored.", "error");
    } else {
      try {
        await adopt(decodeURIComponent(handed[1]));
      } catch (e) {
        notice(e.message || String(e), "error");
      }
    }
  }
  draw();
}
start();
