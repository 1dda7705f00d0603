// `{{name}}`: a batch type (world `batch-plugin` of runner:plugin@0.2.0):
// runs the declared tasks in order and completes when all of them did.

export const batch = {
  describe() {
    return { name: "{{name}}", version: "0.1.0", description: "A batch type", configSchema: "{}" };
  },

  // `spec` is the batch's `with` table as JSON; `tasks` are its declared
  // tasks. Throwing a string fails the batch with that message.
  expand(spec, tasks) {
    return { mode: "sequential", failFast: true, tasks };
  },

  reduce(spec, results) {
    const done = results.filter((r) => r.state === "completed").length;
    const completed = done === results.length;
    return {
      completed,
      summary: `${done} of ${results.length} tasks completed`,
      error: completed ? undefined : "a task did not complete",
      output: JSON.stringify({ completed: done }),
    };
  },
};
