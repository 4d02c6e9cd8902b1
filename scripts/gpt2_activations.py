"""GPT-2 Small activations for the SAEs, the paper's way, on a machine that reaches the model hub.

The paper (arXiv:2411.01220) trains its GPT-2 SAEs on the output of GPT-2 Small's layer-0 MLP
(768-d). This script loads "gpt2" with `transformers` (GPT2LMHeadModel: the GPT2Model plus its
tied LM head, needed for the loss check), runs it in eval mode on windows of text, and records a
forward hook's output:
  --hook mlp_out --layer L     output of transformer.h[L].mlp (default: L = 0, the paper's hook);
  --hook resid_post --layer L  residual stream after block transformer.h[L].
Corpus: the text file(s) given with --text, or by default the same 16 Python 3.11 tutorial
pages (Debian `python3.11-doc`) as scripts/lm_activations.py, extracted the same way. Each
file/page is tokenised on its own (no BOS token), cut into non-overlapping --ctx-token windows,
and --windows of them, evenly spaced, are run (0 = all).

Output, the same format as scripts/lm_activations.py: `--out FILE.npy` (npy 1.0, C order,
[N, 768], float16 by default or float32 with --dtype f32) with every window position except the
first (no context; GPT-2's first-position residual stream is a known high-norm outlier),
and `FILE.json` with the model, hook, layer, corpus, measured loss, row-norm statistics and the
`saelens` hook metadata (model_name, hook_name, context_size, prepend_bos) `mfr-sae` exports.

Check: the mean next-token cross-entropy over the windows is printed; GPT-2 Small gives about
3-4 nats/token on such text, a broken model about 10.8 (ln 50257). Above LOSS_THRESHOLD (5.0
nats) the script exits with status 1 and writes nothing.

`--random-tiny` is a self-test that needs no download: a randomly initialised (seed 0)
GPT2Config(n_layer=2, n_embd=64, n_head=2) model with UTF-8 bytes as token ids. Its loss is
reported but not checked (it is ~ln 50257 by construction), and the JSON says random_tiny: true.

Run, from the repository root:
    pip install torch transformers numpy
    python3 scripts/gpt2_activations.py --out gpt2_l0_mlp.npy --windows 0        # paper hook
    python3 scripts/gpt2_activations.py --out gpt2_l6_resid.npy --hook resid_post --layer 6
    python3 scripts/gpt2_activations.py --out /tmp/tiny.npy --random-tiny         # self-test
(install python3.11-doc for the default corpus, or pass --text FILE ...).
"""

import argparse
import os
import time

import numpy as np

import lm_activations as lm

try:
    import torch
    import transformers
except ImportError:
    raise SystemExit("this script needs torch and transformers: `pip install torch transformers`.")

# Mean next-token loss (nats) above which the model is taken to be wrong and nothing is written.
LOSS_THRESHOLD = 5.0
TINY_CONFIG = {"n_layer": 2, "n_embd": 64, "n_head": 2}


def load_model(name, random_tiny):
    """(model in eval mode, encode: text -> int64 token ids, model description)."""
    if random_tiny:
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY_CONFIG))

        def encode(text):
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

        return model.eval(), encode, f"random GPT2Config({TINY_CONFIG}), seed 0, UTF-8 bytes as tokens"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        model = transformers.GPT2LMHeadModel.from_pretrained(name)
    except OSError as err:
        raise SystemExit(f"could not load {name!r} from the model hub or its cache ({err}).")

    def encode(text):
        return np.array(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=np.int64)

    return model.eval(), encode, f"{name} (transformers GPT2LMHeadModel)"


def hooked_module(model, hook, layer):
    """(module whose forward output is the hook, its dotted name)."""
    blocks = model.transformer.h
    if not 0 <= layer < len(blocks):
        raise SystemExit(f"--layer must be in 0..{len(blocks) - 1} for this model.")
    if hook == "mlp_out":
        return blocks[layer].mlp, f"transformer.h.{layer}.mlp"
    return blocks[layer], f"transformer.h.{layer}"


def main():
    parser = argparse.ArgumentParser(
        description="Extract GPT-2 Small activations (default: the paper's layer-0 MLP output) into an "
                    "[N, 768] .npy + .json sidecar, after checking the model by its next-token loss.")
    parser.add_argument("--out", required=True, help="output .npy file (the .json sidecar goes next to it)")
    parser.add_argument("--hook", choices=lm.HOOKS, default="mlp_out",
                        help="mlp_out: output of block LAYER's MLP; resid_post: residual stream after "
                             "block LAYER (default mlp_out)")
    parser.add_argument("--layer", type=int, default=0, help="block index, 0-based (default 0)")
    parser.add_argument("--model", default="gpt2", help="model hub name or local folder (default gpt2)")
    parser.add_argument("--text", nargs="+", default=None, metavar="FILE",
                        help="UTF-8 text file(s) to use as the corpus (default: the python3.11-doc tutorial)")
    parser.add_argument("--doc-root", default=lm.DOC_ROOT,
                        help=f"python3.11-doc HTML root for the default corpus (default {lm.DOC_ROOT})")
    parser.add_argument("--ctx", type=int, default=128, help="tokens per window (default 128, at most 1024)")
    parser.add_argument("--windows", type=int, default=20,
                        help="windows to run, evenly spaced over the corpus; 0 = all (default 20)")
    parser.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="output dtype (default f16)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--max-loss", type=float, default=LOSS_THRESHOLD,
                        help=f"refuse to write above this mean next-token loss in nats (default {LOSS_THRESHOLD})")
    parser.add_argument("--random-tiny", action="store_true",
                        help="self-test without the hub: tiny random GPT-2, byte tokens, loss not checked")
    args = parser.parse_args()
    if args.ctx < 2:
        parser.error("--ctx must be at least 2 (the first position of each window is skipped).")
    if args.windows < 0:
        parser.error("--windows must be 0 (all) or positive.")

    started = time.time()
    model, encode, description = load_model(args.model, args.random_tiny)
    model.to(args.device)
    if args.ctx > model.config.n_positions:
        parser.error(f"--ctx must be at most {model.config.n_positions} for this model.")
    module, module_name = hooked_module(model, args.hook, args.layer)

    if args.text:
        docs = []
        for path in args.text:
            try:
                with open(path, encoding="utf-8") as f:
                    docs.append((path, f.read()))
            except (OSError, UnicodeDecodeError) as err:
                raise SystemExit(f"cannot read --text file {path} as UTF-8 text ({err}).")
        corpus_meta = {"text_files": [{"path": p, "sha256": lm.file_sha256(p)} for p, _ in docs]}
    else:
        docs = lm.corpus(args.doc_root, lm.PAGES)
        corpus_meta = {"debian_package": "python3.11-doc",
                       "debian_version": lm.debian_package_version("python3.11-doc"),
                       "doc_root": args.doc_root, "pages": lm.PAGES}
    token_lists = [encode(text) for _, text in docs]
    windows = lm.select_windows(token_lists, args.ctx, args.windows)
    corpus_meta["window_starts"] = [[docs[p][0], int(s)] for p, s, _ in windows]
    print(f"{description}; corpus: {len(docs)} documents, {sum(map(len, token_lists))} tokens; "
          f"running {len(windows)} windows of {args.ctx} tokens, hook {module_name}")

    captured = []
    handle = module.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output[0] if isinstance(output, tuple) else output))
    nll, rows = 0.0, []
    with torch.no_grad():
        for _, _, tokens in windows:
            captured.clear()
            ids = torch.from_numpy(tokens)[None].to(args.device)
            logits = model(input_ids=ids).logits[0].float().cpu().numpy()
            nll += lm.next_token_nll(logits, tokens)
            rows.append(captured[0][0, 1:].float().cpu().numpy())
    handle.remove()
    loss = nll / (len(windows) * (args.ctx - 1))
    print(f"mean next-token loss {loss:.4f} nats/token over {len(windows) * (args.ctx - 1)} predictions "
          f"({'not checked: --random-tiny self-test' if args.random_tiny else f'threshold {args.max_loss}'}); "
          f"{time.time() - started:.1f} s")
    if not args.random_tiny:
        lm.check_loss(loss, args.max_loss)

    meta = {
        "source": "scripts/gpt2_activations.py",
        "model": description,
        "random_tiny": args.random_tiny,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "hook": args.hook,
        "hook_module": module_name,
        "layer": args.layer,
        "n_layer": model.config.n_layer,
        "ctx": args.ctx,
        "windows": len(windows),
        "tokens": len(windows) * args.ctx,
        "skipped_positions": "the first position of each window (no context; attention sink)",
        "corpus": corpus_meta,
        "next_token_loss_nats": round(loss, 4),
        "loss_threshold_nats": None if args.random_tiny else args.max_loss,
        "saelens": lm.saelens_metadata(None if args.random_tiny else args.model, args.hook, args.layer, args.ctx),
    }
    meta = lm.write_outputs(args.out, np.concatenate(rows), meta, args.dtype)
    norm = meta["row_norm"]
    print(f"wrote {args.out} [{meta['rows']}, {meta['d']}] {args.dtype}; row norm mean {norm['mean']:.2f} "
          f"std {norm['std']:.2f} min {norm['min']:.2f} max {norm['max']:.2f}; total {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
