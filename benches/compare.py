#!/usr/bin/env python3
"""Same-run comparison of lossgraph with the peer frameworks.

Runs `lossgraph bench W --json` and every runnable peer script of
shared/bench (jax.jit, Keras 3 train_on_batch/fit, torch eager/compile) on the
same workloads, alternating them (ROUNDS rounds, order reversed every other
round), and prints one table per workload with, per peer, the median and the
min–max of the per-round ratios lossgraph/peer (each round's lossgraph
steps/s median over the peer's from the same round). The load average at the
start and at the end of the run is printed with the tables. A peer whose
Python packages are missing is skipped, with a note saying so (in the output
too).

Standard library only. Environment:
  LOSSGRAPH    the lossgraph binary (default: target/release/lossgraph; compare.sh builds it)
  PEER_PYTHON  the Python with jax/keras/torch installed (default: python3)
  PEER_DIR     folder of the peer scripts (default: ../shared/bench next to the repository)
  WORKLOADS    space-separated workloads (default: "tiny mnist wide cnn")
  ROUNDS       alternation rounds (default: 5)
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
WORKLOADS = env("WORKLOADS", "tiny mnist wide cnn").split()
ROUNDS = int(env("ROUNDS", "5"))
STEPS = os.environ.get("STEPS")
REPS = os.environ.get("REPS")
THREADS = os.environ.get("THREADS")
WANTED = env("PEERS", "jax keras torch").split()
JSON_OUT = os.environ.get("JSON_OUT")


# Default steps per repetition of each workload (WORKLOADS.md's S), passed to
# the peer scripts when STEPS or REPS is set (their arguments are positional).
DEFAULT_STEPS = {"tiny": "500", "mnist": "300", "wide": "20", "cnn": "20"}

SKIPPED = []  # notes on skipped peers, repeated in the report


def note(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def skip(msg):
    SKIPPED.append(msg)
    note(msg)


def load_average():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


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
                cmd.append(STEPS or DEFAULT_STEPS.get(w, "20"))
            if REPS:
                cmd.append(REPS)
            return cmd
        return f

    if not os.path.isdir(PEER_DIR):
        skip(f"peer scripts not found ({PEER_DIR}); set PEER_DIR. Only lossgraph runs.")
        return out
    if "jax" in WANTED:
        if can_import("jax", "numpy"):
            out.append(("jax", script("bench_jax.py")))
        else:
            skip(f"skipping jax.jit: {PY} cannot import jax/numpy (pip install 'jax[cpu]' numpy)")
    if "keras" in WANTED:
        if can_import("keras", "jax", "numpy"):
            out.append(("keras", script("bench_keras.py")))
        else:
            skip(f"skipping Keras 3: {PY} cannot import keras/jax (pip install keras 'jax[cpu]')")
    if "torch" in WANTED:
        if can_import("torch", "numpy"):
            out.append(("torch-eager", script("bench_torch.py", "eager")))
            out.append(("torch-compile", script("bench_torch.py", "compile")))
        else:
            skip(f"skipping PyTorch (torch eager and torch.compile rows): {PY} cannot import torch "
                 "(pip install torch --index-url https://download.pytorch.org/whl/cpu)")
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


def ratio_cell(ratios):
    """Median and min–max of the per-round ratios."""
    if not ratios:
        return "–"
    med = statistics.median(ratios)
    return f"**{med:.2f}×** [{min(ratios):.2f}–{max(ratios):.2f}] ({len(ratios)} rounds)"


def main():
    rs = runners()
    load_start = load_average()
    results = {}  # (workload, peer) -> {round: row}
    for w in WORKLOADS:
        for rnd in range(ROUNDS):
            order = rs if rnd % 2 == 0 else list(reversed(rs))
            for label, make in order:
                for row in run_one(label, make(w)):
                    if row.get("peer", "").startswith("lossgraph."):
                        continue
                    results.setdefault((w, row["peer"]), {})[rnd] = row
    load_end = load_average()
    print(f"Same-run comparison, {ROUNDS} alternating round(s); threads: "
          f"{'1 (pinned)' if THREADS == '1' else (THREADS or 'library defaults')}")
    print(f"Load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end")
    for msg in SKIPPED:
        print(f"Note: {msg}")
    for w in WORKLOADS:
        peers = [p for (ww, p) in results if ww == w]
        lg_rounds = results.get((w, "lossgraph"), {})
        if not lg_rounds:
            print(f"\n{w}: no lossgraph result")
            continue
        print(f"\n### {w}\n")
        print("| peer | steps/s median [min–max] | GFLOP/s | compile s | peak RSS MiB "
              "| lossgraph / peer: median [min–max] of the round ratios |")
        print("| --- | --- | --- | --- | --- | --- |")
        for p in ["lossgraph"] + sorted(x for x in peers if x != "lossgraph"):
            by_round = results[(w, p)]
            rows = list(by_round.values())
            med = statistics.median(r["steps_per_s_median"] for r in rows)
            lo = min(r["steps_per_s_min"] for r in rows)
            hi = max(r["steps_per_s_max"] for r in rows)
            gf = statistics.median(r["gflops"] for r in rows)
            cs = statistics.median(r["compile_s"] for r in rows)
            rss = max(r["peak_rss_mib"] for r in rows)
            if p == "lossgraph":
                ratio = "1"
            else:
                ratio = ratio_cell([lg_rounds[k]["steps_per_s_median"] / r["steps_per_s_median"]
                                    for k, r in sorted(by_round.items())
                                    if k in lg_rounds and r["steps_per_s_median"] > 0])
            print(f"| {p} | {fmt_rate(med)} [{fmt_rate(lo)}–{fmt_rate(hi)}] | {gf:.2f} | "
                  f"{cs:.3f} | {rss:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
