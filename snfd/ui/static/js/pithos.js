// The object store (Swift API with the Pithos extensions) as the Files page
// uses it: listings a page at a time, object operations, and uploads by
// hashmap (hash the blocks in a worker, PUT the hashmap, send only the
// blocks the server lacks, PUT the hashmap again), as snfd's own client
// does (snfd/client/pithos.py).  The token goes in X-Auth-Token only.

import {ApiError, call, endpoint, request, session} from "./api.js";

const EMPTY = () => new Uint8Array(0);  // a body of 0 bytes with no Content-Type
export const DIRECTORY = "application/directory";
export const PAGE = 200;

/** The account's path: /object-store/v1/<uuid> (from the catalog). */
export function base() { return endpoint("object-store"); }

export function containerPath(container) {
  return `${base()}/${encodeURIComponent(container)}`;
}

export function objectPath(container, name) {
  return `${containerPath(container)}/${name.split("/").map(encodeURIComponent).join("/")}`;
}

/** "/<container>/<name>", percent-encoded, for X-Copy-From and friends. */
export function sourceHeader(container, name) {
  return `/${encodeURIComponent(container)}/${name.split("/").map(encodeURIComponent).join("/")}`;
}

function query(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    parts.push(v === true ? encodeURIComponent(k)
                          : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? "?" + parts.join("&") : "";
}

/** One page of a listing: entries after ``marker``, at most ``limit``. */
export async function listContainers({marker, limit = PAGE} = {}) {
  return (await call("GET", base() + query({format: "json", limit, marker}))) || [];
}

export async function listObjects(container, {prefix, marker, limit = PAGE, delimiter = "/"} = {}) {
  return (await call("GET", containerPath(container) +
                     query({format: "json", limit, marker, prefix, delimiter}))) || [];
}

export async function accountInfo() {
  return (await request("HEAD", base())).headers;
}

export async function containerInfo(container) {
  return (await request("HEAD", containerPath(container))).headers;
}

export async function objectInfo(container, name, version) {
  return (await request("HEAD", objectPath(container, name) + query({version}))).headers;
}

export async function createContainer(container) {
  const r = await request("PUT", containerPath(container), {body: EMPTY()});
  return r.status === 201;
}

export async function deleteContainer(container) {
  await request("DELETE", containerPath(container));
}

export async function makeFolder(container, name) {
  await request("PUT", objectPath(container, name.replace(/\/+$/, "")),
                {body: EMPTY(), headers: {"Content-Type": DIRECTORY}});
}

/** Delete an object; ``recursive`` also deletes everything under name/. */
export async function deleteObject(container, name, {recursive = false} = {}) {
  await request("DELETE", objectPath(container, name) + query({delimiter: recursive && "/"}));
}

/** Copy (or move, Pithos' X-Move-From) an object by a PUT of the
 * destination; ``version`` copies that version (a restore). */
export async function copyObject(container, name, dstContainer, dstName,
                                 {move = false, version} = {}) {
  const headers = {[move ? "X-Move-From" : "X-Copy-From"]: sourceHeader(container, name)};
  if (version !== undefined && version !== null) headers["X-Source-Version"] = String(version);
  await request("PUT", objectPath(dstContainer, dstName), {body: EMPTY(), headers});
}

/** [[version id, epoch seconds], ...], oldest first. */
export async function versions(container, name) {
  const body = await call("GET", objectPath(container, name) +
                          query({version: "list", format: "json"}));
  return (body && body.versions) || [];
}

/** Merge headers into an object's (POST ?update). */
export async function updateObject(container, name, headers) {
  await request("POST", objectPath(container, name) + "?update", {body: EMPTY(), headers});
}

export async function setSharing(container, name, read, write) {
  const parts = [];
  if (read.length) parts.push("read=" + read.join(","));
  if (write.length) parts.push("write=" + write.join(","));
  await updateObject(container, name, {"X-Object-Sharing": parts.join(";")});
}

export async function setPublic(container, name, on) {
  await updateObject(container, name, {"X-Object-Public": on ? "true" : "false"});
  return on ? (await objectInfo(container, name)).get("X-Object-Public") || "" : "";
}

/** Replace (members given) or remove (none) a group of the account. */
export async function setGroup(group, members) {
  await request("POST", base() + "?update",
                {body: EMPTY(), headers: {[`X-Account-Group-${group}`]: members.join(",")}});
}

/** The object's bytes as a Blob (fetched with the token in a header). */
export async function fetchBlob(container, name, version) {
  const r = await request("GET", objectPath(container, name) + query({version}),
                          {headers: {Accept: "*/*"}});
  return await r.blob();
}

/** Save an object to the user's disk: fetch it, then a link to the blob. */
export async function download(container, name, version) {
  const blob = await fetchBlob(container, name, version);
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name.split("/").pop() || "download";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** uuids of e-mail addresses (the account service's user catalog). */
export async function uuidsOf(emails) {
  if (!emails.length) return {};
  const body = await call("POST", `${endpoint("account")}/user_catalogs`,
                          {json: {displaynames: emails}});
  return (body && body.displayname_catalog) || {};
}

/** e-mail addresses of uuids (unknown ones left out). */
export async function emailsOf(uuids) {
  if (!uuids.length) return {};
  try {
    const body = await call("POST", `${endpoint("account")}/user_catalogs`,
                            {json: {uuids}});
    return (body && body.uuid_catalog) || {};
  } catch (e) {
    return {};
  }
}

/** Sharing entries as the person typed them -> as Pithos stores them:
 * an e-mail becomes its uuid, "group:<name>" the account's group
 * "<my uuid>:<name>"; uuids, "owner:group" and "*" stay. */
export async function sharingEntries(text) {
  const typed = text.split(/[,\s]+/).map(s => s.trim()).filter(Boolean);
  const emails = typed.filter(t => t.includes("@"));
  const found = await uuidsOf(emails);
  const lower = Object.fromEntries(Object.entries(found).map(([k, v]) => [k.toLowerCase(), v]));
  return typed.map(t => {
    if (t.includes("@")) {
      const uuid = lower[t.toLowerCase()];
      if (!uuid) throw new ApiError(0, `There is no user ${t}.`);
      return uuid;
    }
    if (t.startsWith("group:")) return `${session().user.id}:${t.slice(6)}`;
    return t;
  });
}

// -- uploads by hashmap ---------------------------------------------------------

/** Hash ``file``'s blocks in a worker; ``onProgress(bytesHashed)``. */
export function hashFile(file, blockSize, {onProgress, signal} = {}) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./hash-worker.js", import.meta.url));
    const stop = () => { worker.terminate(); reject(new ApiError(0, "The upload was cancelled.")); };
    if (signal) {
      if (signal.aborted) { stop(); return; }
      signal.addEventListener("abort", stop, {once: true});
    }
    worker.onmessage = (event) => {
      const m = event.data;
      if (m.type === "progress") {
        if (onProgress) onProgress(m.hashed);
      } else {
        worker.terminate();
        if (signal) signal.removeEventListener("abort", stop);
        if (m.type === "done") resolve(m.hashes);
        else reject(new ApiError(0, m.message));
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new ApiError(0, "Hashing failed: " + (event.message || "worker error")));
    };
    worker.postMessage({file, blockSize});
  });
}

async function putHashmap(container, name, file, hashes) {
  try {
    await request("PUT", objectPath(container, name) + "?hashmap&format=json", {
      body: JSON.stringify({bytes: file.size, hashes}),
      headers: {"Content-Type": file.type || "application/octet-stream"}});
    return [];
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      let missing = null;
      try { missing = JSON.parse(e.body); } catch (x) { /* not the list */ }
      if (Array.isArray(missing) && missing.length) return missing.map(h => String(h).toLowerCase());
    }
    throw e;
  }
}

/** Upload ``file`` as ``container``/``name`` by its hashmap, sending only
 * the blocks the server lacks (so a second try after an interruption
 * resumes).  ``onProgress({phase, hashed, size, sent, needed, blocks})``.
 * Returns {blocks, sent}. */
export async function upload(container, name, file, {onProgress = () => {}, signal,
                                                     parallel = 3} = {}) {
  const info = await containerInfo(container);
  const blockSize = Number(info.get("X-Container-Block-Size")) || 4 * 1024 * 1024;
  const algorithm = (info.get("X-Container-Block-Hash") || "sha256").toLowerCase();
  if (algorithm !== "sha256") {
    throw new ApiError(0, `The container hashes blocks with ${algorithm}; this page knows sha256 only.`);
  }
  const state = {phase: "hashing", hashed: 0, size: file.size, sent: 0, needed: 0,
                 blocks: Math.ceil(file.size / blockSize)};
  onProgress({...state});
  const hashes = await hashFile(file, blockSize, {
    signal, onProgress: (hashed) => { state.hashed = hashed; onProgress({...state}); }});
  state.hashed = file.size;
  for (let attempt = 0; attempt < 4; attempt++) {
    state.phase = "checking";
    onProgress({...state});
    if (signal && signal.aborted) throw new ApiError(0, "The upload was cancelled.");
    const missing = await putHashmap(container, name, file, hashes);
    if (!missing.length) {
      state.phase = "done";
      onProgress({...state});
      return {blocks: state.blocks, sent: state.sent};
    }
    // Each missing hash once, from the first block that has it.
    const todo = [...new Set(missing)].map(h => hashes.indexOf(h));
    if (todo.some(i => i < 0)) throw new ApiError(409, "The server asked for a block this file does not have.");
    state.phase = "sending";
    state.needed += todo.length;
    onProgress({...state});
    let next = 0;
    const sendOne = async () => {
      while (next < todo.length) {
        if (signal && signal.aborted) throw new ApiError(0, "The upload was cancelled.");
        const index = todo[next++];
        const block = file.slice(index * blockSize, (index + 1) * blockSize);
        await request("POST", containerPath(container) + "?update&format=json", {
          body: block, headers: {"Content-Type": "application/octet-stream"}});
        state.sent++;
        onProgress({...state});
      }
    };
    await Promise.all(Array.from({length: Math.min(parallel, todo.length)}, sendOne));
  }
  throw new ApiError(409, "The server kept asking for blocks; try the upload again.");
}
