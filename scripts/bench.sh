#!/usr/bin/env bash
# mfr-sae against its peers on this machine, at the same shapes: `mfr-sae bench
# --json` (the whole ensemble step and the encoder product on the wgpu adapter)
# beside scripts/bench_peers.py (the authors' PyTorch step on CPU, or CUDA when
# torch sees a device; sgemm of the encoder shape by torch.mm and numpy), then
# one table with the ratios: our step / PyTorch step, our encoder GFLOP/s /
# sgemm GFLOP/s. A benchmark, not part of the test command.
#
#   scripts/bench.sh [SHAPE ...]      shapes: quick synthetic eeg gpt2 (default: quick synthetic)
#
# Environment: BENCH_ROUNDS (default 2: ours and theirs alternate that many times per
# shape and each side keeps its best round, min time / max GFLOP/s, the same rule for
# both, so that a noisy-neighbour minute on a shared VM does not decide the ratio),
# BENCH_REPS, BENCH_BATCH (for every shape), BENCH_FORMS (default
# none,match,max), BENCH_THREADS (torch's CPU threads; default every core),
# BENCH_BACKWARD (per-sae | summed, see bench_peers.py), BENCH_PYTHON (a python
# that already has torch, numpy and scipy; else they are installed into
# target/bench-venv once), BENCH_BIN (an mfr-sae binary; else a release build).
# Writes target/bench/{ours,peers}-SHAPE.ROUND.json* and target/bench/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(quick synthetic)
forms=${BENCH_FORMS:-none,match,max}
out=target/bench
mkdir -p "$out"
# lavapipe warns on every instance without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# The PyTorch peer's Python. PyPI's Linux torch wheel bundles the CUDA libraries
# (PyPI has no CPU-only build; its torch fails to import without them), so the
# default wheel is what installs here, CPU machine or CUDA machine alike.
venv=target/bench-venv
py=${BENCH_PYTHON:-$venv/bin/python}
if ! "$py" -c 'import torch, numpy, scipy' 2>/dev/null; then
    if [ -n "${BENCH_PYTHON:-}" ]; then
        echo "bench: BENCH_PYTHON=$BENCH_PYTHON lacks torch, numpy or scipy" >&2
        exit 1
    fi
    echo "bench: installing torch, numpy and scipy from PyPI into $venv (once; torch's wheel" \
        "with its CUDA libraries is about 5.5 GB on disk, pip's cache makes a reinstall quick)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch numpy scipy
fi

bin=${BENCH_BIN:-target/release/mfr-sae}
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --locked --quiet
fi

gpu=none
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
export BENCH_MACHINE="${cpu:-$(uname -m)}, $(nproc) cores, GPU: $gpu"
export BENCH_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"

opts=(--forms "$forms")
[ -z "${BENCH_REPS:-}" ] || opts+=(--reps "$BENCH_REPS")
[ -z "${BENCH_BATCH:-}" ] || opts+=(--batch "$BENCH_BATCH")
peer_opts=(--backward "${BENCH_BACKWARD:-per-sae}")
[ -z "${BENCH_THREADS:-}" ] || peer_opts+=(--threads "$BENCH_THREADS")
rounds=${BENCH_ROUNDS:-2}
for s in "${shapes[@]}"; do
    for r in $(seq "$rounds"); do
        echo "bench: $s — mfr-sae (round $r of $rounds)" >&2
        "$bin" bench --shape "$s" "${opts[@]}" --json >"$out/ours-$s.$r.json"
        echo "bench: $s — PyTorch and sgemm (round $r of $rounds)" >&2
        "$py" scripts/bench_peers.py --shape "$s" "${opts[@]}" "${peer_opts[@]}" --json >"$out/peers-$s.$r.jsonl"
    done
done

python3 - "$out" "$rounds" "${shapes[@]}" <<'EOF'
import json, os, sys

out, rounds, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def best_of(docs):
    """The first round's document with every result replaced by its best round (min ms, max GFLOP/s)."""
    best = json.loads(json.dumps(docs[0]))
    for r in best["results"]:
        same = [x for d in docs for x in d["results"] if x["name"] == r["name"] and x["shape"] == r["shape"]
                and x.get("impl") == r.get("impl")]
        if "ms" in r and r["ms"] is not None:
            r["ms"] = min(x["ms"] for x in same if x.get("ms") is not None)
        if r.get("gflops") is not None:
            r["gflops"] = max(x["gflops"] for x in same if x.get("gflops") is not None)
        r["rounds"] = len(same)
    return best


rows, enc, docs = [], {}, {"ours": [], "pytorch": [], "sgemm": []}
for s in shapes:
    ours = best_of([json.load(open(f"{out}/ours-{s}.{r}.json")) for r in range(1, rounds + 1)])
    by_tool = {}
    for r in range(1, rounds + 1):
        for d in map(json.loads, open(f"{out}/peers-{s}.{r}.jsonl")):
            by_tool.setdefault(d["tool"], []).append(d)
    peers = {tool: best_of(ds) for tool, ds in by_tool.items()}
    docs["ours"].append(ours)
    docs["pytorch"].append(peers.get("pytorch"))
    docs["sgemm"].append(peers.get("sgemm"))
    theirs = {r["name"]: r for r in peers.get("pytorch", {}).get("results", []) if r["shape"]["name"] == s}
    for r in ours["results"]:
        if r["name"].startswith("step/") and r["shape"]["name"] == s:
            t = theirs.get(r["name"])
            rows.append((r["shape"], r["name"], r["ms"], t["ms"] if t else None, r.get("variant")))
    for skipped in ours["skipped"]:
        rows.append((skipped["shape"], skipped["name"], None, None, None))
    sg = peers.get("sgemm", {}).get("results", [])
    for r in ours["results"]:
        if r["name"] != "encoder_matmul":
            continue
        key = (r["shape"]["batch"], r["shape"]["d"], r["shape"]["m"])
        limit = [x for x in sg if (x["shape"]["batch"], x["shape"]["d"], x["shape"]["m"]) == key]
        best = max(limit, key=lambda x: x["gflops"]) if limit else None
        enc[key] = (r["shape"], r["gflops"], best, r.get("variant"))

first = docs["ours"][0]
ad = first["adapter"]
torch_doc = next((d for d in docs["pytorch"] if d), None)
print(f"machine   {os.environ['BENCH_MACHINE']} (load average {os.environ['BENCH_LOAD']} at the start)")
print(f"rounds    {rounds}: ours and theirs alternated, each side's best round kept")
if float(os.environ["BENCH_LOAD"].split()[0]) > os.cpu_count():
    print("          note: the load exceeds the core count — other work shares the CPU and the timings are noisy;"
          " with fewer torch threads (BENCH_THREADS=1) PyTorch may suffer less from it")
print(f"ours      mfr-sae {first['version']} on {ad['name']} ({ad['backend']}, {ad['device_type']}), "
      f"steps: wall time, kernels: {first['kernel_timer']}")
if first["kernels"]:
    print("          kernels: " + ", ".join(f"{k} {v}" for k, v in first["kernels"].items()))
if torch_doc:
    t = torch_doc["adapter"]
    print(f"pytorch   {t['driver']} on {t['backend']} ({t['name']}, {t['driver_info']}), "
          f"backward {torch_doc['backward']}, f32")
print()
fmt = "{:<10} {:>5} {:>5} {:>4} {:>3} {:>6}  {:<11} {:<7} {:>10} {:>11} {:>13}"
print(fmt.format("shape", "d", "m", "k", "N", "B", "step", "path", "ours ms", "pytorch ms", "ours/pytorch"))
num = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"
for shape, name, ms, theirs, path in rows:
    ratio = f"{ms / theirs:.2f}" if ms and theirs else ("skipped" if ms is None else "-")
    print(fmt.format(shape["name"], shape["d"], shape["m"], shape["k"], shape["n_saes"], shape["batch"],
                     name, path or "-", num(ms), num(theirs), ratio))
print()
fmt = "{:<10} {:>6} {:>5} {:>5}  {:<9} {:>13} {:>14}  {:<22} {:>10}"
print(fmt.format("encoder", "B", "d", "m", "variant", "ours GFLOP/s", "sgemm GFLOP/s", "sgemm by", "ours/sgemm"))
for (b, d, m), (shape, ours, best, variant) in sorted(enc.items()):
    lim = best["gflops"] if best else None
    print(fmt.format(shape["name"], b, d, m, variant or "-", num(ours, 2), num(lim, 2), best["impl"] if best else "-",
                     f"{ours / lim:.3f}" if ours and lim else "-"))
json.dump({"machine": os.environ["BENCH_MACHINE"], "load_average": os.environ["BENCH_LOAD"], "rounds": rounds, **docs},
          open(f"{out}/summary.json", "w"), indent=1)
print(f"\nall numbers: {out}/summary.json")
EOF
