// `{{name}}`: a block plugin (world `block-plugin` of runner:plugin@0.2.0).

import { log, progress } from "runner:plugin/host@0.2.0";

export const block = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "A block plugin", configSchema: "{}" };
  },

  // `config` and `input` are JSON; the returned text is the task's output
  // (JSON). Throwing a string fails the task with that message.
  run(config, input) {
    const { who = "world" } = JSON.parse(config);
    if (typeof who !== "string") throw "`who` must be a string";
    progress(`greeting ${who}`, 50);
    log("info", `greeting ${who}`);
    return JSON.stringify({ greeting: `hello, ${who}` });
  },
};
