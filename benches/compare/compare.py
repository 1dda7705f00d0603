#!/usr/bin/env python3
"""Side-by-side figures: runner against what a user would use instead.

    python3 benches/compare/compare.py [--runner PATH] [--runs 5] [--quick]

Prints medians and ratios, asserts nothing (the machines are shared), and
merges every figure into target/bench/summary.json (beside those of
`cargo bench --bench store` and `--bench ws_load`), so two commits can be
compared. Each pair runs alternately (A, B, A, B, ...) in the same process,
so a busy moment hurts both sides alike.

Pairs:
  exec     N exec tasks running `true`, concurrency 2, against the same
           Makefile with `make -s -j2` (N = 200 and 2,000).
  script   N script tasks (the `probe` test component, `probe exit 0`)
           against N runs of the `wasmtime run` CLI on the same component,
           when a `wasmtime` is on PATH (else that pair is skipped, saying so).
  check    `runner check` on pipelines of 2,000 / 4,000 / 8,000 / 10,000
           tasks (linear means the time per task stays flat).
  memory   peak RSS of a 10,000-task run (its plugins already compiled).
  startup  `runner --version` and `runner check` on the repository's
           runner.toml, beside `git --version`.

Build first: `cargo build --release` (the runner and, through its build
script, the test plugins under target/plugins).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_timed(argv, cwd, env=None):
    """Wall seconds and peak RSS (KiB) of one command; fails loudly."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} exited {proc.returncode} in {cwd}:\n{err}")
    return wall, usage.ru_maxrss


def alternate(pairs, runs):
    """Runs each (name, fn) in turn `runs` times; medians by name."""
    times = {name: [] for name, _ in pairs}
    for _ in range(runs):
        for name, fn in pairs:
            times[name].append(fn())
    return {name: statistics.median(ts) for name, ts in times.items()}


def exec_project(dir: Path, n: int):
    dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "version = 1",
        "[defaults]",
        "concurrency = 2",
        "[[pipelines.default.batches]]",
        'id = "all"',
        'type = "parallel"',
    ]
    for i in range(n):
        lines += [
            "[[pipelines.default.batches.tasks]]",
            f'id = "t{i}"',
            'type = "exec"',
            'config = { command = "true" }',
        ]
    (dir / "runner.toml").write_text("\n".join(lines) + "\n")
    targets = " ".join(f"t{i}" for i in range(n))
    make = [f".PHONY: all {targets}", f"all: {targets}"]
    make += [f"t{i}:\n\ttrue" for i in range(n)]
    (dir / "Makefile").write_text("\n".join(make) + "\n")


def script_project(dir: Path, n: int, probe: Path):
    dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "version = 1",
        "[defaults]",
        "concurrency = 2",
        "[plugins.probe]",
        f'path = "{probe}"',
        "[[pipelines.default.batches]]",
        'id = "all"',
        'type = "parallel"',
    ]
    for i in range(n):
        lines += [
            "[[pipelines.default.batches.tasks]]",
            f'id = "s{i}"',
            'type = "script"',
            'config = { component = "probe", args = ["exit", "0"] }',
        ]
    (dir / "runner.toml").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", default=str(ROOT / "target/release/runner"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 3 runs")
    args = parser.parse_args()
    runner = Path(args.runner).resolve()
    if not runner.exists():
        sys.exit(f"no runner at {runner}: run `cargo build --release` first or pass --runner")
    runs = 3 if args.quick else args.runs
    plugin_dir = runner.parent.parent / "plugins/wasm32-wasip2/release"
    probe = plugin_dir / "probe.wasm"
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "runner": str(runner),
        "runs": runs,
        "figures": {},
    }
    figures = summary["figures"]
    print(f"# {summary['machine']}; medians of {runs} alternating runs\n")
    work = Path(tempfile.mkdtemp(prefix="runner-compare-"))
    try:
        # exec tasks against make -j2
        for n in [200] if args.quick else [200, 2000]:
            d = work / f"exec{n}"
            exec_project(d, n)
            env = dict(os.environ, NO_COLOR="1")
            med = alternate(
                [
                    ("make", lambda: run_timed(["make", "-s", "-j2"], d)[0]),
                    ("runner", lambda: run_timed([runner, "run"], d, env)[0]),
                ],
                runs,
            )
            ratio = med["runner"] / med["make"]
            print(f"exec x{n:<5}  runner {med['runner']*1000:8.1f} ms   make -j2 {med['make']*1000:8.1f} ms   ratio {ratio:.2f}x make")
            figures[f"exec_{n}"] = {"runner_s": med["runner"], "make_s": med["make"], "ratio": ratio}

        # script tasks against the wasmtime CLI
        wasmtime = shutil.which("wasmtime")
        if not probe.exists():
            print(f"script: skipped, no {probe} (cargo build --release builds it)")
        else:
            n = 200
            d = work / f"script{n}"
            script_project(d, n, probe)
            run_timed([runner, "run"], d)  # warm the compile cache
            if wasmtime is None:
                print("script: wasmtime CLI not on PATH; the pair is skipped (cargo install wasmtime-cli --version 48.0.0 --locked)")
                t, _ = run_timed([runner, "run"], d)
                print(f"script x{n}  runner {t*1000:8.1f} ms ({n/t:,.0f} tasks/s)")
                figures[f"script_{n}"] = {"runner_s": t}
            else:
                version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout.strip()
                loop = " ; ".join([f"{wasmtime} run {probe} exit 0"] * n)
                subprocess.run(["sh", "-c", f"{wasmtime} run {probe} exit 0"], check=True)  # its cache
                med = alternate(
                    [
                        ("wasmtime", lambda: run_timed(["sh", "-c", loop], d)[0]),
                        ("runner", lambda: run_timed([runner, "run"], d)[0]),
                    ],
                    runs,
                )
                ratio = med["wasmtime"] / med["runner"]
                print(f"script x{n}  runner {med['runner']*1000:8.1f} ms   {n}× `{version} run` {med['wasmtime']*1000:8.1f} ms   runner {ratio:.0f}x faster")
                figures[f"script_{n}"] = {"runner_s": med["runner"], "wasmtime_s": med["wasmtime"], "speedup": ratio, "wasmtime": version}
            if not args.quick:
                n = 2000
                d = work / f"script{n}"
                script_project(d, n, probe)
                run_timed([runner, "run"], d)
                t = statistics.median(run_timed([runner, "run"], d)[0] for _ in range(runs))
                print(f"script x{n} runner {t*1000:8.1f} ms   {n/t:,.0f} tasks/s")
                figures[f"script_{n}"] = {"runner_s": t, "tasks_per_s": n / t}

        # runner check: linear?
        for n in [2000, 4000] if args.quick else [2000, 4000, 8000, 10000]:
            d = work / f"check{n}"
            exec_project(d, n)
            t = statistics.median(run_timed([runner, "check"], d)[0] for _ in range(runs))
            print(f"check x{n:<6} {t*1000:8.1f} ms   {t/n*1e6:6.1f} µs/task")
            figures[f"check_{n}"] = {"runner_s": t, "us_per_task": t / n * 1e6}

        # peak memory of a big run
        n = 2000 if args.quick else 10000
        d = work / f"exec{n}"
        if not (d / "runner.toml").exists():
            exec_project(d, n)
        run_timed([runner, "run"], d)  # the first run compiles the batch plugin
        t, rss = run_timed([runner, "run"], d)
        print(f"memory: a {n}-task run peaks at {rss/1024:.0f} MiB RSS ({t:.2f} s; plugins cached)")
        figures[f"peak_rss_{n}_tasks"] = {"mib": rss / 1024, "wall_s": t}

        # startup
        git = shutil.which("git")
        pairs = [
            ("runner --version", lambda: run_timed([runner, "--version"], ROOT)[0]),
            ("runner check", lambda: run_timed([runner, "check"], ROOT)[0]),
        ]
        if git:
            pairs.append(("git --version", lambda: run_timed([git, "--version"], ROOT)[0]))
        med = alternate(pairs, max(runs, 10))
        for name, t in med.items():
            print(f"startup: {name:<18} {t*1000:6.1f} ms")
        figures["startup_ms"] = {name: t * 1000 for name, t in med.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Merged: the cargo benches (store, ws_load) add their own keys.
    out = ROOT / "target/bench/summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        merged = json.loads(out.read_text())
    except (OSError, ValueError):
        merged = {}
    if not isinstance(merged.get("figures"), dict):
        merged["figures"] = {}
    merged["figures"].update(summary.pop("figures"))
    merged.update(summary)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    merged["commit"] = commit.stdout.strip() or None
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"\nmerged into {out}")


if __name__ == "__main__":
    main()
