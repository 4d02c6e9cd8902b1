#!/usr/bin/env python3
"""Check a run folder's SAELens export with SAELens itself.

For every SAE under RUN/saelens/sae-<n>/ (written by `mfr-sae train` or `mfr-sae export`):
  - loads it with `SAE.load_from_disk` and `TrainingSAE.load_from_disk`, counting warnings;
  - compares SAELens's encode and decode with our own forward pass, computed here in float64
    from the run's checkpoint (RUN/checkpoint/tensors.safetensors, the weights as trained, on
    data multiplied by the run's scale) and RUN/config.json, on the held-out rows the export
    wrote (RUN/saelens/held_out.npy), and prints the largest differences;
  - checks that SAE and TrainingSAE give the same outputs, that `fold_W_dec_norm()` works and
    changes no output, that `sparsity.safetensors` holds the log10 densities SAELens's latents
    have on those rows, and that a SAELens re-save keeps the MFR metadata;
  - attaches it with `HookedSAETransformer.add_sae` to a tiny randomly initialised transformer
    built offline from a `HookedTransformerConfig` (d_model = d_in, enough layers for the hook)
    and checks that the SAE sees exactly the activation at its `metadata.hook_name`.
Exits 1 if any check fails.

sae-lens (and torch) are not part of the test command; install them on demand, e.g.
    python3 -m venv target/saelens-venv && target/saelens-venv/bin/pip install sae-lens
    target/saelens-venv/bin/python scripts/check_saelens.py runs/train
"""

import argparse
import json
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from sae_lens import SAE, HookedSAETransformer, TrainingSAE
from transformer_lens import HookedTransformerConfig

# Relative tolerance per exported dtype: float32 on the largest difference over the largest value;
# float16/bfloat16 on ‖difference‖/‖value‖ over all rows, since rounded weights move a TopK choice
# near a tie now and then, a difference of the latent's size in that one row.
TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
# Feature densities (measured by mfr-sae in float64 on the float32 weights) against SAELens's
# latents: rounded weights move TopK choices near ties, so reduced dtypes differ in a few rows.
DENSITY_TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}


def activation(a, kind, k, relu, theta=None):
    """Our inference activation on pre-activations a [rows, m] (float64): TopK (ties: lowest
    index), ReLU, or BatchTopK's JumpReLU at its trained threshold θ (z = relu(a) where a > relu(θ))."""
    if kind == "relu_l1":
        return np.maximum(a, 0.0)
    if kind == "batch_topk":
        return np.where(a > max(theta, 0.0), np.maximum(a, 0.0), 0.0)
    idx = np.argsort(-a, axis=1, kind="stable")[:, :k]
    z = np.zeros_like(a)
    kept = np.take_along_axis(a, idx, axis=1)
    np.put_along_axis(z, idx, np.maximum(kept, 0.0) if relu else kept, axis=1)
    return z


def our_forward(config, tensors, n, x, scale):
    """Our SAE n as trained (on s·x), at x's scale: (latents z/s, reconstruction x̂/s)."""
    sae = config["ensemble"]["sae"]
    act = sae["activation"]
    ks = config["ensemble"].get("k_per_sae") or []
    k = ks[n] if ks else act.get("k")
    p = {name[len(f"sae.{n}."):]: v.astype(np.float64) for name, v in tensors.items()
         if name.startswith(f"sae.{n}.") and not name.endswith((".adam_m", ".adam_v", ".since_fired"))}
    xs = x * scale
    if sae["arch"] == "tied":
        a = xs @ p["W"].T + p["b"]
        dec, b_dec = p["W"] / np.linalg.norm(p["W"], axis=1, keepdims=True), 0.0
    else:
        a = (xs - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
        dec, b_dec = p["W_dec"], p["b_dec"]
    theta = float(p["threshold"][0]) if "threshold" in p else None
    z = activation(a, act["kind"], k, not sae.get("paper_exact", False), theta)
    return z / scale, (z @ dec + b_dec) / scale


def rel(a, b):
    """(largest |a − b|, that over the largest |b|, ‖a − b‖ / ‖b‖)."""
    a, b = (t.double().numpy() if torch.is_tensor(t) else np.asarray(t, np.float64) for t in (a, b))
    worst = float(np.abs(a - b).max()) if a.size else 0.0
    return (worst, worst / max(float(np.abs(b).max()), 1e-30),
            float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-30))


def load(cls, path):
    """cls.load_from_disk(path) and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae = cls.load_from_disk(str(path))
    return sae, [str(w.message).strip() for w in caught]


def check_hook(sae, x):
    """add_sae on a tiny offline transformer: (hook attached, SAE input == the clean hook activation)."""
    hook = sae.cfg.metadata.hook_name
    if hook is None:
        return None, "metadata.hook_name is not set: add_sae cannot attach"
    layer = re.match(r"blocks\.(\d+)\.", hook)
    d = sae.cfg.d_in
    cfg = HookedTransformerConfig(n_layers=(int(layer.group(1)) + 1) if layer else 1, d_model=d, n_ctx=8,
                                  d_head=d, n_heads=1, d_mlp=2 * d, d_vocab=37, act_fn="relu",
                                  normalization_type="LN", seed=0, device="cpu")
    model = HookedSAETransformer(cfg)
    tokens = torch.arange(8)[None] % 37
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens, names_filter=hook)
        model.add_sae(sae)
        attached = list(model.acts_to_saes)
        _, cache = model.run_with_cache(tokens)
        model.reset_saes()
    key = f"{hook}.hook_sae_input"
    if hook not in attached or key not in cache:
        return False, f"add_sae attached at {attached}, expected {hook}"
    same = torch.equal(cache[key], clean[hook].to(cache[key].dtype))
    return same, f"attached at {attached}; SAE input {'=' if same else '!='} the clean activation at {hook}"


def check_sae(path, config, tensors, x_all, rows):
    print(f"== {path}")
    x = x_all[:rows]
    cfg = json.loads((path / "cfg.json").read_text())
    meta, dtype = cfg["metadata"], cfg["dtype"]
    n, scale = meta["mfr"]["ensemble_index"], meta["mfr"]["input_scale_folded_back"]
    tol = TOLERANCE[dtype]
    ok = True

    def report(name, passed, detail):
        nonlocal ok
        ok &= bool(passed)
        print(f"  {'ok  ' if passed else 'FAIL'} {name}: {detail}")

    sae, sae_warnings = load(SAE, path)
    training, training_warnings = load(TrainingSAE, path)
    report("SAE.load_from_disk", not sae_warnings, f"{type(sae).__name__}, {len(sae_warnings)} warnings {sae_warnings}")
    report("TrainingSAE.load_from_disk", not training_warnings,
           f"{type(training).__name__}, {len(training_warnings)} warnings {training_warnings}")
    print(f"       architecture {cfg['architecture']}, dtype {dtype}, d_in {cfg['d_in']}, d_sae {cfg['d_sae']}, "
          f"scale {scale:g}, get_name() = {sae.get_name()}")
    for w in meta["mfr"].get("warnings", []):
        print(f"  warning (from the export): {w}")
    xt = torch.from_numpy(x).to(sae.dtype)
    with torch.no_grad():
        z, xhat = sae.encode(xt), sae.decode(sae.encode(xt))
        z_train, xhat_train = training.encode(xt), training.decode(training.encode(xt))
        row_norms = sae.W_dec.norm(dim=-1).double()
    our_z, our_xhat = our_forward(config, tensors, n, x, scale)
    if meta["mfr"]["paper_exact_topk_without_relu"]:
        print("  (paper-exact: SAELens's TopK adds a ReLU, so differences are expected where kept latents are negative)")
    exact = not meta["mfr"]["paper_exact_topk_without_relu"]
    judged = 1 if dtype == "float32" else 2
    for name, (worst, largest, norm) in [("encode", rel(z.double().numpy(), our_z)),
                                         ("decode", rel(xhat.double().numpy(), our_xhat))]:
        report(f"{name} vs ours", (largest, norm)[judged - 1] <= tol or not exact,
               f"max |Δ| {worst:.3e}, relative to the largest value {largest:.3e}, ‖Δ‖/‖ours‖ {norm:.3e} "
               f"(tolerance {tol:g} on the {('first', 'second')[judged - 1]})")
    report("W_dec rows unit", float((row_norms - 1).abs().max()) <= tol,
           f"max |‖W_dec_j‖ − 1| {float((row_norms - 1).abs().max()):.3e}")
    sz, sx = rel(z_train, z)[1], rel(xhat_train, xhat)[1]
    report("TrainingSAE vs SAE", sz <= tol and sx <= tol,
           f"relative Δz {sz:.3e}, Δx̂ {sx:.3e} (rescale_acts_by_decoder_norm = "
           f"{getattr(sae.cfg, 'rescale_acts_by_decoder_norm', 'n/a')} / "
           f"{getattr(training.cfg, 'rescale_acts_by_decoder_norm', 'n/a')})")
    try:
        folded, _ = load(SAE, path)
        folded.fold_W_dec_norm()
        with torch.no_grad():
            fz = folded.encode(xt)
            fx = folded.decode(fz)
        report("fold_W_dec_norm()", rel(fz, z)[1] <= tol and rel(fx, xhat)[1] <= tol,
               f"relative Δz {rel(fz, z)[1]:.3e}, Δx̂ {rel(fx, xhat)[1]:.3e} after folding")
    except Exception as e:  # noqa: BLE001 - the failure is the report
        report("fold_W_dec_norm()", False, f"raised {type(e).__name__}: {e}")
    sparsity_file = path / "sparsity.safetensors"
    if sparsity_file.exists():
        stored = load_file(str(sparsity_file))["sparsity"].astype(np.float64)
        with torch.no_grad():
            density = (sae.encode(torch.from_numpy(x_all).to(sae.dtype)).double().numpy() != 0).mean(axis=0)
        worst = float(np.abs(10.0 ** stored - 1e-10 - density).max())
        report("sparsity.safetensors", stored.shape == (cfg["d_sae"],) and (worst <= DENSITY_TOLERANCE[dtype] or not exact),
               f"[{stored.shape[0]}] log10 densities; largest density difference from SAELens's latents on "
               f"{meta['mfr']['sparsity_rows']['rows']} rows {worst:.2e} (tolerance {DENSITY_TOLERANCE[dtype]:g}); "
               f"median density {np.median(density):.4f}")
    else:
        report("sparsity.safetensors", False, "missing")
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_model(tmp)
        resaved = json.loads((Path(tmp) / "cfg.json").read_text())["metadata"]
    report("re-save keeps metadata.mfr", resaved.get("mfr") == meta["mfr"],
           f"lambda {resaved.get('mfr', {}).get('lambda')}, ensemble {resaved.get('mfr', {}).get('ensemble_index')}"
           f"/{resaved.get('mfr', {}).get('ensemble_size')}")
    attached, detail = check_hook(sae, x)
    report("HookedSAETransformer.add_sae", attached, detail)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder (config.json, checkpoint/, saelens/)")
    parser.add_argument("--rows", type=int, default=512, help="held-out rows to compare encode/decode on")
    args = parser.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    ckpt = args.run / "checkpoint" / "tensors.safetensors"
    if not ckpt.exists():
        sys.exit(f"{ckpt} is missing: our forward pass needs the run's checkpoint (run without --checkpoint-every 0)")
    tensors = load_file(str(ckpt))
    x_all = np.load(args.run / "saelens" / "held_out.npy").astype(np.float64)
    print(f"run {args.run}: {config['ensemble']['sae']['arch']} / {config['ensemble']['sae']['activation']}, "
          f"{min(args.rows, x_all.shape[0])} of {x_all.shape[0]} held-out rows of width {x_all.shape[1]} compared "
          f"(densities on all of them)")
    saes = sorted((args.run / "saelens").glob("sae-*"), key=lambda p: int(p.name.split("-")[1]))
    results = [check_sae(p, config, tensors, x_all, args.rows) for p in saes]
    print(f"{sum(results)}/{len(results)} SAEs pass every check")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
