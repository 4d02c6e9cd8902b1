#!/usr/bin/env python3
"""Check a BatchTopK run's SAELens export with SAELens itself.

For every SAE under RUN/saelens/sae-<n>/ of a run trained with `mfr-sae train --batch-topk`:
  - loads it with `SAE.load_from_disk` and checks it is a `JumpReLUSAE` whose `threshold`
    holds, for every latent, the threshold the run estimated (RUN/checkpoint's
    `sae.<n>.threshold`);
  - compares SAELens's encode, decode and forward with our inference forward pass, computed
    here in float64 from the checkpoint's weights as trained: a = pre-activation,
    z = a · [a > max(θ, 0)] (JumpReLU at θ, as `reference::RefSae::encode`),
    x̂ = z · decoder (+ b_dec) — on rows built from the decoder so that latents fire;
  - counts the latents whose firing differs (a pre-activation within rounding of θ may flip).
Exits 1 if any check fails.

sae-lens (and torch) are not part of the test command; install them on demand, e.g.
    python3 -m venv target/saelens-venv && target/saelens-venv/bin/pip install sae-lens
    mfr-sae train --batch-topk --arch standard --steps 300 --out target/btk-run
    target/saelens-venv/bin/python scripts/check_saelens_batchtopk.py target/btk-run
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from sae_lens import SAE
from sae_lens.saes.jumprelu_sae import JumpReLUSAE

TOLERANCE = 1e-5  # largest difference / largest value, float32 export
ROWS = 64


def our_forward(tensors, n, arch, x, scale):
    """Our SAE n at inference on raw rows x [rows, d] (trained on s·x): (z, x̂ at x's scale)."""
    p = lambda name: tensors[f"sae.{n}.{name}"].astype(np.float64)
    theta = float(p("threshold")[0])
    xs = x * scale
    if arch == "standard":
        a = (xs - p("b_dec")) @ p("W_enc") + p("b_enc")
        dec, b_dec = p("W_dec"), p("b_dec")
    else:
        w = p("W")
        a = xs @ w.T + p("b")
        dec, b_dec = w / np.linalg.norm(w, axis=1, keepdims=True), 0.0
    z = np.where(a > max(theta, 0.0), a, 0.0)
    return z, (z @ dec + b_dec) / scale, theta


def rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder of `mfr-sae train --batch-topk`")
    args = ap.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    sae_cfg = config["ensemble"]["sae"]
    if sae_cfg["activation"]["kind"] != "batch_topk":
        sys.exit(f"{args.run}: activation {sae_cfg['activation']} is not BatchTopK")
    tensors = load_file(args.run / "checkpoint" / "tensors.safetensors")
    rng = np.random.default_rng(0)
    failed = False
    for folder in sorted((args.run / "saelens").glob("sae-*")):
        meta = json.loads((folder / "cfg.json").read_text())
        n, scale = meta["mfr"]["ensemble_index"], meta["mfr"]["input_scale_folded_back"]
        sae = SAE.load_from_disk(str(folder), device="cpu")
        ok = isinstance(sae, JumpReLUSAE)
        print(f"{folder}: {type(sae).__name__} (architecture {meta['architecture']!r}), "
              f"sae-lens {meta['metadata']['sae_lens_version']} format")
        # Rows that excite the dictionary: 3 random decoder rows per row, weights U[1, 3).
        w_dec = sae.W_dec.detach().double().numpy()
        c = np.zeros((ROWS, w_dec.shape[0]))
        for r in range(ROWS):
            c[r, rng.choice(w_dec.shape[0], 3, replace=False)] = rng.uniform(1.0, 3.0, 3)
        x = c @ w_dec + sae.b_dec.detach().double().numpy()
        our_z, our_xhat, theta = our_forward(tensors, n, sae_cfg["arch"], x, scale)
        th = sae.threshold.detach().double().numpy()
        th_ok = bool(np.all(th == np.float32(theta)))
        xt = torch.tensor(x, dtype=torch.float32)
        with torch.no_grad():
            z = sae.encode(xt).double().numpy()
            xhat = sae.decode(sae.encode(xt)).double().numpy()
            out = sae(xt).double().numpy()
        dz, dx, df = rel(z, our_z), rel(xhat, our_xhat), rel(out, our_xhat)
        flips = int(((z != 0) != (our_z != 0)).sum())
        fired = float((our_z != 0).mean())
        print(f"  threshold θ = {theta:.6g} in all {th.size} latents: {th_ok}; "
              f"rows {ROWS}, fraction of latents firing {fired:.3f}, firing differs at {flips}")
        print(f"  relative Δz {dz:.3e}, Δdecode {dx:.3e}, Δforward {df:.3e} (tolerance {TOLERANCE:g})")
        good = ok and th_ok and fired > 0 and max(dz, dx, df) <= TOLERANCE and flips == 0
        print(f"  {'ok' if good else 'FAILED'}")
        failed |= not good
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
