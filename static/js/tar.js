// Packs a folder chosen in the browser into one GNU tar, as a Blob that references the files instead of
// copying them: a folder of any size costs the page no memory, and the server gets a single archive it
// checks like any other (one code path for every upload, and no thousands of multipart parts).

const BLOCK = 512;
const encoder = new TextEncoder();

function octal(value, width) {
  // width includes the terminating NUL
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(nameBytes, size, mtime, type) {
  const block = new Uint8Array(BLOCK);
  const put = (offset, text) => block.set(encoder.encode(text), offset);
  block.set(nameBytes.subarray(0, 100), 0);
  put(100, octal(type === "5" ? 0o755 : 0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(size, 12));
  put(136, octal(Math.max(0, Math.floor(mtime)), 12));
  put(148, "        "); // checksum is computed with its own field as spaces
  put(156, type);
  put(257, "ustar  \0"); // GNU magic and version
  let sum = 0;
  for (const byte of block) sum += byte;
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function padding(size) {
  const rest = size % BLOCK;
  return rest === 0 ? new Uint8Array(0) : new Uint8Array(BLOCK - rest);
}

/** Drop the folder's own name when every path starts with it, as browsers send webkitRelativePath. */
export function stripSharedTop(paths) {
  if (paths.length === 0) return paths;
  const tops = new Set(paths.map((p) => (p.includes("/") ? p.split("/")[0] : null)));
  if (tops.size !== 1 || tops.has(null)) return paths;
  const [top] = tops;
  return paths.map((p) => p.slice(top.length + 1));
}

/** entries: [{file: File, path: "folder/sub/name"}] -> Blob holding a GNU tar of those files. */
export function folderToTar(entries) {
  const paths = stripSharedTop(entries.map((e) => e.path));
  const parts = [];
  entries.forEach((entry, i) => {
    const nameBytes = encoder.encode(paths[i]);
    const mtime = (entry.file.lastModified || 0) / 1000;
    if (nameBytes.length > 100) {
      // GNU long name: a "././@LongLink" entry of type L carries the full name first.
      parts.push(header(encoder.encode("././@LongLink"), nameBytes.length + 1, 0, "L"));
      parts.push(nameBytes, new Uint8Array(1), padding(nameBytes.length + 1));
    }
    parts.push(header(nameBytes, entry.file.size, mtime, "0"));
    parts.push(entry.file, padding(entry.file.size));
  });
  parts.push(new Uint8Array(BLOCK * 2));
  return new Blob(parts, { type: "application/x-tar" });
}
