#!/bin/sh
# The plugin's test: builds it, runs `runner.toml`'s pipeline and checks what
# the plugin did. `RUNNER` picks the runner binary (default: `runner` on PATH).
set -eu
cd "$(dirname "$0")"
./build.sh
events=$("${RUNNER:-runner}" run --json) || {
    printf '%s\n' "$events"
    echo "test failed: the run did not complete" >&2
    exit 1
}
if ! printf '%s\n' "$events" | grep -F -q '{{expect}}'; then
    printf '%s\n' "$events"
    echo 'test failed: no event holds {{expect}}' >&2
    exit 1
fi
echo "test passed: {{name}} ran and its events hold {{expect}}"
