// `{{name}}`: a script (a plain `wasi:cli/command`). It sees only the
// directories and variables `runner.toml` grants it.

import { getArguments } from "wasi:cli/environment@0.2.3";

export const run = {
  run() {
    const [who = "world"] = getArguments().slice(1);
    console.log(`hello, ${who}`);
  },
};
