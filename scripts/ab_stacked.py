#!/usr/bin/env python3
"""What ensemble stacking saves: `mfr-sae bench` of the same binary with and without
`--unstacked`, alternated ROUNDS times per shape (a noisy machine drifts between runs;
alternating spreads the drift over both), each run's median ms per step kept; prints
the median and the best of the rounds per side and their ratio.

    python3 scripts/ab_stacked.py [--bin target/release/mfr-sae] [--rounds 6] [--reps 20] quick synthetic
"""
import argparse, json, statistics, subprocess

p = argparse.ArgumentParser()
p.add_argument("shapes", nargs="*", default=["quick", "synthetic"])
p.add_argument("--bin", default="target/release/mfr-sae")
p.add_argument("--rounds", type=int, default=6)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--forms", default="none,match,max")
a = p.parse_args()

def run(shape, unstacked):
    cmd = [a.bin, "bench", "--shape", shape, "--forms", a.forms, "--parts", "steps",
           "--reps", str(a.reps), "--json"] + (["--unstacked"] if unstacked else [])
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {r["name"]: (r["ms"], r["variant"]) for r in out["results"]}

print(f"{'shape':<10} {'step':<11} {'stacked ms (median, best)':>27} {'one by one ms':>20} {'stacked / one by one':>22}")
for shape in a.shapes:
    times = {False: {}, True: {}}
    variants = {}
    for _ in range(a.rounds):
        for unstacked in (False, True):
            for name, (ms, variant) in run(shape, unstacked).items():
                times[unstacked].setdefault(name, []).append(ms)
                variants[(unstacked, name)] = variant
    for name in times[False]:
        s, u = times[False][name], times[True][name]
        ms, mu = statistics.median(s), statistics.median(u)
        print(f"{shape:<10} {name:<11} {ms:>15.2f}, {min(s):>9.2f} {mu:>11.2f}, {min(u):>7.2f} "
              f"{ms / mu:>11.2f} (best {min(s) / min(u):.2f})  [{variants[(False, name)]} | {variants[(True, name)]}]")
