// `{{name}}`: an agent adapter (world `agent-plugin` of runner:plugin@0.2.0)
// for a CLI that takes the prompt as its last argument and prints text. The
// host runs the CLI; the adapter builds its command line and reads its lines.

// One instance lives for one execution: the last line the CLI printed.
let last;

export const agentAdapter = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "An agent adapter", configSchema: "{}" };
  },

  // Throwing a string refuses the request before anything runs.
  start(request) {
    return {
      program: request.program ?? "{{name}}-cli",
      args: [...request.extraArgs, request.prompt],
      env: [],
      stdin: undefined,
    };
  },

  parseLine(source, line) {
    if (source === "stderr") return [{ tag: "raw", val: line }];
    last = line;
    return [{ tag: "assistant-message", val: line }];
  },

  // `exitCode` is undefined when the CLI was killed by a signal.
  finish(exitCode) {
    const success = exitCode === 0;
    return {
      success,
      summary: last,
      error: success ? undefined : `the CLI exited with ${exitCode ?? "a signal"}`,
      sessionId: undefined,
    };
  },
};
