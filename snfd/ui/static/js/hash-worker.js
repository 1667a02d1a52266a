// Hashes a file's blocks off the page's thread, as Pithos names them: the
// SHA-256 of each block of ``blockSize`` bytes with its trailing zero bytes
// stripped (snfd/pithos/hashmap.py).  Message in: {file, blockSize};
// messages out: {type: "progress", hashed, index, hash} per block, then
// {type: "done", hashes}, or {type: "error", message}.

function hex(buffer) {
  const bytes = new Uint8Array(buffer);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, "0");
  return out;
}

async function hashBlocks(file, blockSize) {
  if (!self.crypto || !self.crypto.subtle) {
    throw new Error("This page cannot hash files: it needs a secure context (https or localhost).");
  }
  const hashes = [];
  for (let start = 0, index = 0; start < file.size; start += blockSize, index++) {
    const data = new Uint8Array(await file.slice(start, start + blockSize).arrayBuffer());
    let end = data.length;
    while (end > 0 && data[end - 1] === 0) end--;
    const hash = hex(await self.crypto.subtle.digest("SHA-256", data.subarray(0, end)));
    hashes.push(hash);
    self.postMessage({type: "progress", hashed: Math.min(file.size, start + blockSize),
                      index, hash});
  }
  return hashes;
}

self.onmessage = async (event) => {
  const {file, blockSize} = event.data || {};
  try {
    if (!file || !(blockSize > 0)) throw new Error("Nothing to hash.");
    self.postMessage({type: "done", hashes: await hashBlocks(file, blockSize)});
  } catch (e) {
    self.postMessage({type: "error", message: e && e.message ? e.message : String(e)});
  }
};
