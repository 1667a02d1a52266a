// The one way the UI talks to the cloud: the public APIs, with the user's
// token in X-Auth-Token.  The session (token, user, project, catalog) lives
// in sessionStorage: it goes with the tab, and no cookie carries it.

const KEY = "snfd.session";
const IDENTITY = "/identity/v3";

/** An API's refusal, with its own message (Keystone's, Nova's, Swift's...). */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message || `The request failed (${status}).`);
    this.status = status;
    this.body = body;
  }
}

let current = load();

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && saved.expires && Date.parse(saved.expires) > Date.now()) return saved;
  } catch (e) { /* a damaged entry: no session */ }
  return null;
}

/** The session, or null when nobody is logged in (or the token expired). */
export function session() {
  if (current && Date.parse(current.expires) <= Date.now()) logout();
  return current;
}

export function logout() {
  current = null;
  sessionStorage.removeItem(KEY);
}

/** The message an API put in its error body. */
export function messageOf(status, text, type) {
  if (type && type.includes("json")) {
    try {
      const body = JSON.parse(text);
      const found = findMessage(body);
      if (found) return found;
    } catch (e) { /* not JSON after all */ }
  }
  const plain = (text || "").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return plain ? plain.slice(0, 500) : `The request failed (${status}).`;
}

function findMessage(body) {
  if (!body || typeof body !== "object") return null;
  if (typeof body.message === "string") return body.message;
  if (typeof body.detail === "string") return body.detail;
  for (const value of Object.values(body)) {
    if (value && typeof value === "object") {
      if (typeof value.message === "string") return value.message;
      if (typeof value.detail === "string") return value.detail;
    }
  }
  return null;
}

/** fetch, with the token, turning an error status into ApiError.
 * ``url`` is a path on this origin. */
export async function request(method, url, {json, body, headers = {}, token} = {}) {
  const h = {...headers};
  const auth = token === undefined ? (session() && session().token) : token;
  if (auth) h["X-Auth-Token"] = auth;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  if (!("Accept" in h)) h["Accept"] = "application/json";
  let response;
  try {
    response = await fetch(url, {method, headers: h, body, credentials: "omit",
                                 cache: "no-store"});
  } catch (e) {
    throw new ApiError(0, "The cloud cannot be reached: " + e.message);
  }
  if (response.status === 401 && auth && token === undefined) {
    logout();
    window.dispatchEvent(new Event("snfd:logged-out"));
  }
  if (!response.ok) {
    const text = await response.text();
    throw new ApiError(response.status,
                       messageOf(response.status, text, response.headers.get("content-type")),
                       text);
  }
  return response;
}

/** The JSON answer of a call (null for an empty body). */
export async function call(method, url, options = {}) {
  const response = await request(method, url, options);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** The path of a service's public endpoint, from the token's catalog:
 * "object-store", "compute", "network", "image", "volumev3", "identity",
 * "account".  Only the path is used: the UI calls its own origin. */
export function endpoint(type) {
  const s = session();
  const entry = s && (s.catalog || []).find(e => e.type === type);
  if (!entry) throw new ApiError(0, `This cloud has no ${type} service.`);
  const ep = entry.endpoints.find(e => e.interface === "public") || entry.endpoints[0];
  return new URL(ep.url, location.origin).pathname.replace(/\/$/, "");
}

/** Has the cloud this service? */
export function has(type) {
  const s = session();
  return !!(s && (s.catalog || []).some(e => e.type === type));
}

async function token(auth) {
  const response = await request("POST", IDENTITY + "/auth/tokens",
                                 {json: {auth}, token: null});
  const body = await response.json();
  return {token: response.headers.get("X-Subject-Token"), body: body.token};
}

/** Log in with a password: a token for the user's base project (whose id
 * is the user's), kept for this tab. */
export async function login(name, password) {
  const first = await token({identity: {methods: ["password"], password: {
    user: {name, domain: {id: "default"}, password}}}});
  return await scope(first.token, first.body.user.id);
}

/** A token of ``project`` made from ``raw`` (any valid token of the user),
 * kept as the session. */
export async function scope(raw, project) {
  const scoped = await token({identity: {methods: ["token"], token: {id: raw}},
                              scope: {project: {id: project}}});
  current = {token: scoped.token, expires: scoped.body.expires_at,
             user: scoped.body.user, project: scoped.body.project,
             catalog: scoped.body.catalog || []};
  sessionStorage.setItem(KEY, JSON.stringify(current));
  return current;
}

/** Keep as the session a token a login provider handed over (Shibboleth,
 * OpenID Connect): scoped to the user's base project. */
export async function adopt(raw) {
  const response = await request("GET", IDENTITY + "/auth/tokens",
                                 {headers: {"X-Subject-Token": raw}, token: raw});
  const body = await response.json();
  return await scope(raw, body.token.user.id);
}
