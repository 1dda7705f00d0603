// `linecount PATH...`: a script in JavaScript (a plain `wasi:cli/command`).
//
// Prints `PATH: N lines` per file, then a JSON summary as its last line:
// {"files", "lines", "env"}, `env` being the names of the variables it sees.
// A file it cannot read (outside its granted directories, say) is an error:
// `cannot read PATH: ...` on stderr and exit code 1.

import { getArguments, getEnvironment } from "wasi:cli/environment@0.2.3";
import { getDirectories } from "wasi:filesystem/preopens@0.2.3";

// Reads a whole file through the preopened directory that holds it.
function readFile(path) {
  for (const [dir, guest] of getDirectories()) {
    const prefix = guest.endsWith("/") ? guest : `${guest}/`;
    if (path.startsWith(prefix)) {
      const file = dir.openAt({}, path.slice(prefix.length), {}, { read: true });
      const chunks = [];
      let offset = 0n;
      for (;;) {
        const [bytes, end] = file.read(65536n, offset);
        chunks.push(bytes);
        offset += BigInt(bytes.length);
        if (end || bytes.length === 0) break;
      }
      return new TextDecoder().decode(concat(chunks));
    }
  }
  throw { payload: "no-entry (not inside a granted directory)" };
}

function concat(chunks) {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

function linecount(paths, variables) {
  if (paths.length === 0) {
    console.error("usage: linecount PATH...");
    return false;
  }
  let total = 0;
  for (const path of paths) {
    let text;
    try {
      text = readFile(path);
    } catch (err) {
      console.error(`cannot read ${path}: ${err?.payload ?? err}`);
      return false;
    }
    const lines = text.split("\n").length - (text.endsWith("\n") || text === "" ? 1 : 0);
    console.log(`${path}: ${lines} lines`);
    total += lines;
  }
  console.log(JSON.stringify({ files: paths.length, lines: total, env: variables.sort() }));
  return true;
}

export const run = {
  run() {
    const ok = linecount(
      getArguments().slice(1),
      getEnvironment().map(([name]) => name),
    );
    // Throwing is the `err` of `run: func() -> result`: the script fails.
    if (!ok) throw "linecount failed";
  },
};
