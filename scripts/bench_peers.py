#!/usr/bin/env python3
"""The peers `mfr-sae bench` is compared with, on the same machine and shapes.

(a) `pytorch`: the ensemble step as the authors' PyTorch code does it
    (github.com/luke-marks0/mutual-feature-regularization, models/sae.py,
    utils/sae_trainer.py, utils/general_utils.py calculate_MMCS): N tied TopK
    SAEs (`a = x Wᵀ + b`, keep the activations ≥ the k-th largest per row, no
    ReLU; decoder = row-normalised W; MSE), dense products, autograd, one
    torch.optim.Adam per SAE, and the MFR penalty λ·mean over pairs (1 − MMCS):
      max:   the cosine matrix U_a U_bᵀ, max over a's latents for each latent of
             b, mean (their calculate_MMCS until 2024-09-24);
      match: scipy linear_sum_assignment on the detached 1 − cos, refreshed
             every 100 steps as ours is (they refreshed every step), gradients
             through the matched entries only (their final calculate_MMCS).
    Every SAE's loss is MSE_n + penalty. `--backward per-sae` (default) runs one
    backward pass per SAE through the whole graph, as their trainer's loop of
    `total_loss.backward(retain_graph=True)` does (its penalty gradient is
    recomputed N times); `--backward summed` differentiates Σ_n MSE_n + penalty
    once, which gives every SAE the same gradient. f32 throughout (their
    trainer's AMP is off here, as our kernels are f32); no reinit rule, no
    logging (ours times neither).
(b) `sgemm`: the encoder product [B, d] · [d, m] alone, torch.mm and numpy,
    as the limit a dense f32 product reaches here.

On CPU torch uses every core (torch.set_num_threads(os.cpu_count()); --threads); on a
CUDA device when one is available (--device). Output: tables, or with --json
one JSON document per line, in the schema of `mfr-sae bench --json`:
{"tool": "pytorch"|"sgemm", "adapter": {…}, "results": [{"name", "shape",
"ms", "gflops", …}], "encoder_matmul_gflops": …}.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

# The shapes of `mfr-sae bench` (src/bench.rs): d, m, k, N, B.
SHAPES = {
    "quick": (64, 128, 8, 2, 512),
    "synthetic": (256, 512, 32, 2, 1024),
    "eeg": (14 * 128, 512, 6, 5, 1024),
    "gpt2": (768, 3072, 6, 10, 500),
}
SYNTHETIC_ENCODER = (1024, 256, 512)  # B, d, m of the top-level encoder_matmul_gflops
FORMS = ("none", "match", "max")
LR = 1e-3
LAMBDA = 1.0  # λ's value does not change the work
MATCH_EVERY = 100
WARMUP_STEPS = 100  # the penalty's cosine ramp-up (the paper's)


def shape_record(name, d, m, k, n, batch):
    return {"name": name, "d": d, "m": m, "k": k, "n_saes": n, "batch": batch}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def adapter(device):
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return {"name": p.name, "backend": "cuda", "device_type": "DiscreteGpu",
                "driver": f"torch {torch.__version__}", "driver_info": f"CUDA {torch.version.cuda}"}
    return {"name": cpu_model(), "backend": "cpu", "device_type": "Cpu",
            "driver": f"torch {torch.__version__}", "driver_info": f"{torch.get_num_threads()} threads"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, reps, device):
    """ms of one warm-up call and of each of `reps` calls (each waited for)."""
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
    return times[0], times[1:]


def record(name, shape, warmup, times, flops=None, timer="wall", **extra):
    ms = statistics.median(times)
    r = {"name": name, "shape": shape, "ms": ms, "ms_min": min(times), "ms_max": max(times),
         "warmup_ms": warmup, "reps": len(times),
         "gflops": flops / ms / 1e6 if flops else None,
         "steps_per_s": 1e3 / ms if name.startswith("step/") else None, "timer": timer}
    r.update(extra)
    return r


def default_reps(flops, cuda):
    """As `mfr-sae bench`: a fixed arithmetic budget per measurement, 3 to 20 calls."""
    budget = 2e12 if cuda else 20e9
    return int(min(20, max(3, budget / max(flops, 1.0))))


def dense_step_flops(d, m, n, batch, form):
    """As src/bench.rs step_flops: five dense products per SAE, plus every pair's similarity."""
    saes = 5 * n * 2.0 * batch * d * m
    return saes if form == "none" else saes + n * (n - 1) / 2 * 2.0 * m * m * d


class Ensemble:
    """N tied TopK SAEs as the authors' SparseAutoencoder, one Adam each."""

    def __init__(self, d, m, k, n, device, form, backward):
        g = torch.Generator().manual_seed(0)
        self.k, self.form, self.backward, self.t = k, form, backward, 0
        self.params = []
        for _ in range(n):
            w = torch.empty(m, d)
            torch.nn.init.orthogonal_(w, generator=g)
            self.params.append([w.to(device).requires_grad_(), torch.zeros(m, device=device, requires_grad=True)])
        self.opts = [torch.optim.Adam(p, lr=LR) for p in self.params]
        self.pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        self.matchings = {}

    def mse(self, x, w, b):
        a = F.linear(x, w, b)
        kth = torch.topk(a, self.k, dim=1).values[:, -1:]
        z = a * (a >= kth)
        return F.mse_loss(F.linear(z, F.normalize(w, p=2, dim=1).t()), x)

    def penalty(self):
        if self.form == "none":
            return None
        u = [F.normalize(w, p=2, dim=1) for w, _ in self.params]
        if self.form == "match" and self.t % MATCH_EVERY == 0:
            for a, b in self.pairs:
                cos = (u[a] @ u[b].t()).detach().cpu().numpy()
                rows, cols = linear_sum_assignment(1.0 - cos)
                dev = u[a].device
                self.matchings[a, b] = (torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev))
        mmcs = []
        for a, b in self.pairs:
            if self.form == "max":
                mmcs.append((u[a] @ u[b].t()).max(dim=0).values.mean())
            else:
                rows, cols = self.matchings[a, b]
                mmcs.append((u[a][rows] * u[b][cols]).sum(dim=1).mean())
        ramp = 1.0 if self.t >= WARMUP_STEPS else 0.5 * (1 + np.cos(np.pi * (WARMUP_STEPS - self.t) / WARMUP_STEPS))
        return LAMBDA * ramp * torch.mean(1 - torch.stack(mmcs))

    def step(self, x):
        rec = [self.mse(x, w, b) for w, b in self.params]
        pen = self.penalty()
        if self.backward == "summed" or pen is None:
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            (sum(rec) + (pen if pen is not None else 0)).backward()
        else:
            every = [p for ps in self.params for p in ps]
            for n, ps in enumerate(self.params):
                grads = torch.autograd.grad(rec[n] + pen, every, retain_graph=n < len(self.params) - 1,
                                            allow_unused=True)
                for p, g in zip(ps, grads[2 * n:2 * n + 2]):
                    p.grad = g
        for opt in self.opts:
            opt.step()
        self.t += 1


def pytorch_results(shapes, forms, reps, device, backward, progress):
    results = []
    for name, (d, m, k, n, batch) in shapes:
        x = torch.randn(batch, d, generator=torch.Generator().manual_seed(1)).to(device)
        for form in forms:
            if form != "none" and n < 2:
                continue
            r = reps or default_reps(dense_step_flops(d, m, n, batch, form), device.type == "cuda")
            progress(f"[{name}] pytorch step/{form}: d {d} m {m} k {k} N {n} B {batch}, warm-up + {r} reps")
            ens = Ensemble(d, m, k, n, device, form, backward)
            warm, times = timed(lambda: ens.step(x), r, device)
            results.append(record(f"step/{form}", shape_record(name, d, m, k, n, batch), warm, times,
                                  backward=backward))
    return results


def sgemm_results(shapes, reps, device, progress):
    results = []
    seen = set()
    encoders = [(name, s) for name, s in shapes]
    if not any((s[4], s[0], s[1]) == SYNTHETIC_ENCODER for _, s in encoders):
        encoders.append(("synthetic", SHAPES["synthetic"]))
    for name, (d, m, k, n, batch) in encoders:
        if (batch, d, m) in seen:
            continue
        seen.add((batch, d, m))
        flops = 2.0 * batch * d * m
        r = reps or default_reps(flops, device.type == "cuda")
        shape = shape_record(name, d, m, k, n, batch)
        progress(f"[{name}] sgemm {batch}×{d}×{m}: torch.mm on {device.type} and numpy, warm-up + {r} reps")
        x = torch.randn(batch, d, device=device)
        w = torch.randn(m, d, device=device)
        warm, times = timed(lambda: torch.mm(x, w.t()), r, device)
        results.append(record("encoder_matmul", shape, warm, times, flops, impl=f"torch.mm ({device.type})"))
        xn, wn = x.cpu().numpy(), w.cpu().numpy()
        warm, times = timed(lambda: xn @ wn.T, r, torch.device("cpu"))
        results.append(record("encoder_matmul/numpy", shape, warm, times, flops, impl=f"numpy {np.__version__} (cpu)"))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="quick",
                   help="comma-separated shapes (quick, synthetic, eeg, gpt2) or all")
    p.add_argument("--batch", type=int, help="batch size B for the chosen shapes")
    p.add_argument("--reps", type=int, help="timed calls per measurement (default 3 to 20 by size)")
    p.add_argument("--forms", default=",".join(FORMS), help="steps to time: none, match, max")
    p.add_argument("--backward", choices=("per-sae", "summed"), default="per-sae")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--parts", default="steps,sgemm", help="steps, sgemm")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="CPU threads for torch (default: every core; fewer can be faster on a loaded machine)")
    p.add_argument("--json", action="store_true", help="one JSON document per line (pytorch, sgemm)")
    a = p.parse_args()

    names = list(SHAPES) if a.shape == "all" else a.shape.split(",")
    forms = a.forms.split(",")
    parts = a.parts.split(",")
    bad = [s for s in names if s not in SHAPES] + [f for f in forms if f not in FORMS] + \
          [q for q in parts if q not in ("steps", "sgemm")]
    if bad or a.threads < 1 or (a.batch is not None and a.batch < 1) or (a.reps is not None and a.reps < 1):
        sys.exit(f"error: unknown or bad value(s) {bad or [a.batch, a.reps, a.threads]}; see --help")
    shapes = []
    for s in names:
        d, m, k, n, batch = SHAPES[s]
        shapes.append((s, (d, m, k, n, a.batch or batch)))

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device")
    device = torch.device("cuda" if a.device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(a.threads)
    progress = (lambda line: print(line, file=sys.stderr, flush=True))

    docs = []
    if "steps" in parts:
        docs.append({"tool": "pytorch", "adapter": adapter(device), "backward": a.backward,
                     "results": pytorch_results(shapes, forms, a.reps, device, a.backward, progress)})
    if "sgemm" in parts:
        results = sgemm_results(shapes, a.reps, device, progress)
        at = [r for r in results if (r["shape"]["batch"], r["shape"]["d"], r["shape"]["m"]) == SYNTHETIC_ENCODER]
        best = max(at, key=lambda r: r["gflops"])
        docs.append({"tool": "sgemm", "adapter": adapter(device), "results": results,
                     "encoder_matmul_gflops": best["gflops"], "encoder_matmul_gflops_by": best["impl"]})
    if a.json:
        for doc in docs:
            print(json.dumps(doc))
        return
    for doc in docs:
        ad = doc["adapter"]
        print(f"{doc['tool']}: {ad['name']} ({ad['backend']}, {ad['driver']}, {ad['driver_info']})")
        for r in doc["results"]:
            s = r["shape"]
            rate = f"{r['gflops']:.2f} GFLOP/s" if r["gflops"] else f"{r['steps_per_s']:.2f} steps/s"
            print(f"  {s['name']:<10} d {s['d']:>4} m {s['m']:>4} k {s['k']:>3} N {s['n_saes']:>2} B {s['batch']:>5}"
                  f"  {r['name']:<21} {r['ms']:>10.3f} ms  {rate}")


if __name__ == "__main__":
    main()
