#!/usr/bin/env python3
"""Same-run comparison of lossgraph with the peer frameworks.

Runs `lossgraph bench W --json` and every runnable peer script of
shared/bench (jax.jit, Keras 3 train_on_batch/fit, torch eager/compile) on the
same workloads, alternating them (ROUNDS rounds, order reversed every other
round), and prints one table per workload with the ratio lossgraph/peer of the
steps/s medians measured in this run. A peer whose Python packages are missing
is skipped, with a note saying so.

Standard library only. Environment:
  LOSSGRAPH    the lossgraph binary (default: target/release/lossgraph; compare.sh builds it)
  PEER_PYTHON  the Python with jax/keras/torch installed (default: python3)
  PEER_DIR     folder of the peer scripts (default: ../shared/bench next to the repository)
  WORKLOADS    space-separated workloads (default: "tiny mnist wide")
  ROUNDS       alternation rounds (default: 2)
  STEPS, REPS  override every script's steps per repetition / repetitions
  THREADS      "1" pins everything to CPU 0 with one thread (WORKLOADS.md); default: each library's default
  PEERS        space-separated subset of: jax keras torch (default: all runnable)
  JSON_OUT     also append every raw JSON line to this file
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env(name, default):
    v = os.environ.get(name)
    return v if v else default


LOSSGRAPH = env("LOSSGRAPH", os.path.join(REPO, "target", "release", "lossgraph"))
PY = env("PEER_PYTHON", "python3")
PEER_DIR = env("PEER_DIR", os.path.join(os.path.dirname(REPO), "shared", "bench"))
if not os.path.isdir(PEER_DIR) and os.path.isdir("/work/shared/bench"):
    PEER_DIR = "/work/shared/bench"
WORKLOADS = env("WORKLOADS", "tiny mnist wide").split()
ROUNDS = int(env("ROUNDS", "2"))
STEPS = os.environ.get("STEPS")
REPS = os.environ.get("REPS")
THREADS = os.environ.get("THREADS")
WANTED = env("PEERS", "jax keras torch").split()
JSON_OUT = os.environ.get("JSON_OUT")


def note(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def child_env():
    e = dict(os.environ)
    e.setdefault("JAX_PLATFORMS", "cpu")
    e.setdefault("KERAS_BACKEND", "jax")
    if THREADS == "1":
        e.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                 RAYON_NUM_THREADS="1", BENCH_THREADS="1",
                 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return e


def pinned(cmd):
    if THREADS == "1" and shutil.which("taskset"):
        return ["taskset", "-c", "0"] + cmd
    return cmd


def can_import(*modules):
    code = "import " + ", ".join(modules)
    try:
        r = subprocess.run([PY, "-c", code], env=child_env(), capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def runners():
    """(label, function(workload) -> command) for lossgraph and each runnable peer."""
    out = []
    if not os.access(LOSSGRAPH, os.X_OK):
        sys.exit(f"lossgraph binary not found at {LOSSGRAPH} (build it: cargo build --release)")

    def lg(w):
        cmd = [LOSSGRAPH, "bench", w, "--json"]
        if STEPS:
            cmd += ["--steps", STEPS]
        if REPS:
            cmd += ["--reps", REPS]
        if THREADS:
            cmd += ["--threads", THREADS]
        return cmd

    out.append(("lossgraph", lg))

    def script(name, *extra):
        def f(w):
            cmd = [PY, os.path.join(PEER_DIR, name), w, *extra]
            if STEPS or REPS:
                cmd.append(STEPS or {"tiny": "500", "mnist": "300", "wide": "20"}[w])
            if REPS:
                cmd.append(REPS)
            return cmd
        return f

    if not os.path.isdir(PEER_DIR):
        note(f"peer scripts not found ({PEER_DIR}); set PEER_DIR. Only lossgraph runs.")
        return out
    if "jax" in WANTED:
        if can_import("jax", "numpy"):
            out.append(("jax", script("bench_jax.py")))
        else:
            note(f"skipping jax.jit: {PY} cannot import jax/numpy (pip install 'jax[cpu]' numpy)")
    if "keras" in WANTED:
        if can_import("keras", "jax", "numpy"):
            out.append(("keras", script("bench_keras.py")))
        else:
            note(f"skipping Keras 3: {PY} cannot import keras/jax (pip install keras 'jax[cpu]')")
    if "torch" in WANTED:
        if can_import("torch", "numpy"):
            out.append(("torch-eager", script("bench_torch.py", "eager")))
            out.append(("torch-compile", script("bench_torch.py", "compile")))
        else:
            note(f"skipping PyTorch: {PY} cannot import torch (pip install torch)")
    return out


def run_one(label, cmd):
    note("running: " + " ".join(cmd))
    try:
        r = subprocess.run(pinned(cmd), env=child_env(), capture_output=True, text=True,
                           cwd=PEER_DIR if label != "lossgraph" else REPO, timeout=1800)
    except subprocess.TimeoutExpired:
        note(f"{label}: timed out")
        return []
    rows = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if r.returncode != 0 or not rows:
        tail = (r.stderr or "").strip().splitlines()[-3:]
        note(f"{label} failed (exit {r.returncode}): " + " | ".join(tail))
    if JSON_OUT:
        with open(JSON_OUT, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return rows


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def main():
    rs = runners()
    results = {}  # (workload, peer) -> list of rows
    for w in WORKLOADS:
        for rnd in range(ROUNDS):
            order = rs if rnd % 2 == 0 else list(reversed(rs))
            for label, make in order:
                for row in run_one(label, make(w)):
                    if row.get("peer", "").startswith("lossgraph.") :
                        continue
                    results.setdefault((w, row["peer"]), []).append(row)
    print(f"Same-run comparison, {ROUNDS} alternating round(s); threads: "
          f"{'1 (pinned)' if THREADS == '1' else (THREADS or 'library defaults')}")
    for w in WORKLOADS:
        peers = [p for (ww, p) in results if ww == w]
        lg_rows = results.get((w, "lossgraph"), [])
        if not lg_rows:
            print(f"\n{w}: no lossgraph result")
            continue
        lg = statistics.median(r["steps_per_s_median"] for r in lg_rows)
        print(f"\n### {w}\n")
        print("| peer | steps/s median [min–max] | GFLOP/s | compile s | peak RSS MiB | lossgraph / peer |")
        print("| --- | --- | --- | --- | --- | --- |")
        for p in ["lossgraph"] + sorted(x for x in peers if x != "lossgraph"):
            rows = results[(w, p)]
            med = statistics.median(r["steps_per_s_median"] for r in rows)
            lo = min(r["steps_per_s_min"] for r in rows)
            hi = max(r["steps_per_s_max"] for r in rows)
            gf = statistics.median(r["gflops"] for r in rows)
            cs = statistics.median(r["compile_s"] for r in rows)
            rss = max(r["peak_rss_mib"] for r in rows)
            ratio = "1" if p == "lossgraph" else f"**{lg / med:.2f}×**"
            print(f"| {p} | {fmt_rate(med)} [{fmt_rate(lo)}–{fmt_rate(hi)}] | {gf:.2f} | "
                  f"{cs:.3f} | {rss:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
