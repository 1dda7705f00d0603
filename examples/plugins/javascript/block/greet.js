// `greet`: a block plugin in JavaScript (world `block-plugin` of runner:plugin@0.2.0).
//
// Config: {"name": "..."}. Output: {"greeting", "language", "upstream"}, where
// `upstream` lists the ids of the tasks whose outputs reached this one.

import { log, progress } from "runner:plugin/host@0.2.0";

export const block = {
  describe() {
    return {
      name: "greet",
      version: "0.1.0",
      description: "Greets someone (a block plugin in JavaScript)",
      configSchema: JSON.stringify({
        type: "object",
        properties: { name: { type: "string" } },
        required: ["name"],
      }),
    };
  },

  run(config, input) {
    const { name } = JSON.parse(config);
    if (typeof name !== "string" || name === "") {
      // Throwing a string fails the task with that message (the `err` case).
      throw "config needs `name` (a non-empty string)";
    }
    progress(`greeting ${name}`, 50);
    log("info", `greeting ${name}`);
    const upstream = Object.keys(JSON.parse(input).outputs ?? {}).sort();
    return JSON.stringify({ greeting: `hello, ${name}`, language: "javascript", upstream });
  },
};
