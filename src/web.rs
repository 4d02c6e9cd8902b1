//! The browser edge: a wasm-bindgen API over the library for the page in
//! `web/`. Everything here is glue — configuration from JSON, promises for
//! async calls, JSON out — the training itself is `train::Ensemble`, the same
//! code the native CLI runs.
//!
//! One `Trainer` holds one or two ensembles ("mfr", and "baseline" at λ = 0 in
//! compare mode) trained on the same batches from the same initial weights.
//! Its async methods must not overlap: a second call while one is running is
//! rejected with "busy" instead of corrupting state.

// Every async method takes the busy flag before it borrows `State::inner`, and
// the synchronous methods never borrow it, so a borrow held across an await
// cannot meet another borrow.
#![allow(clippy::await_holding_refcell_ref)]

use crate::data::synthetic::{Synthetic, SyntheticConfig};
use crate::data::Source;
use crate::error::Error;
use crate::gpu::Gpu;
use crate::kernels::{Kernels, MmcsForm};
use crate::metrics;
use crate::mfr::MfrConfig;
use crate::model::{Activation, Architecture, SaeConfig};
use crate::train::{Ensemble, EnsembleConfig, LogRecord};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

fn js(e: Error) -> JsValue {
    js_error(e)
}

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("mfr-sae panicked: {info}").into())
    }));
}

/// The device and kernels, created once per page and shared by every trainer.
struct Device {
    gpu: Gpu,
    kernels: Kernels,
}

thread_local! {
    static DEVICE: RefCell<Option<Rc<Device>>> = const { RefCell::new(None) };
}

/// Whether the browser exposes `navigator.gpu` at all.
fn has_webgpu() -> bool {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    !navigator.is_undefined() && js_sys::Reflect::get(&navigator, &"gpu".into()).is_ok_and(|g| !g.is_undefined())
}

async fn device() -> Result<Rc<Device>, JsValue> {
    if let Some(d) = DEVICE.with(|c| c.borrow().clone()) {
        return Ok(d);
    }
    if !has_webgpu() {
        return Err(js_error(
            "WebGPU is not available in this browser: use a recent Chrome or Edge, or start Chromium with \
             --enable-unsafe-webgpu (Firefox Nightly and Safari Technology Preview: enable WebGPU in their settings)",
        ));
    }
    let gpu = Gpu::new().await.map_err(|_| {
        js_error(
            "this browser supports WebGPU but offered no adapter: check that hardware acceleration is on, \
             or start Chromium with --enable-unsafe-webgpu",
        )
    })?;
    let kernels = Kernels::new(&gpu).map_err(js)?;
    let d = Rc::new(Device { gpu, kernels });
    DEVICE.with(|c| *c.borrow_mut() = Some(d.clone()));
    Ok(d)
}

/// The page's data sources, their descriptions and the settings per kind of data
/// (`experiment::page_defaults`), as JSON: the page reads them once at start-up.
#[wasm_bindgen(js_name = pageDefaults)]
pub fn page_defaults() -> String {
    crate::experiment::page_defaults().to_string()
}

/// The adapter as JSON (`AdapterReport`); rejects with a sentence saying what to do when there is none.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Result<String, JsValue> {
    let d = device().await?;
    Ok(serde_json::to_string(&d.gpu.report).expect("the report serialises"))
}

/// What the page sends to `Trainer.create` (a misspelt key is refused, not defaulted).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfig {
    data: SyntheticConfig,
    arch: Architecture,
    n_saes: usize,
    m: usize,
    k: usize,
    /// TopK (per row) or BatchTopK (batch·k over the batch); TopK when absent.
    #[serde(default)]
    activation: WebActivation,
    lambda: f32,
    warmup_steps: u64,
    form: MmcsForm,
    lr: f32,
    batch: usize,
    seed: u64,
    compare: bool,
    /// The width of a loaded file's rows, which replaces the synthetic data's d.
    #[serde(skip)]
    d_override: Option<usize>,
}

/// The page's activation select: both keep k latents per row, BatchTopK on average.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WebActivation {
    #[default]
    Topk,
    BatchTopk,
}

impl WebConfig {
    fn ensemble(&self, lambda: f32) -> EnsembleConfig {
        let d = self.d_override.unwrap_or(self.data.d());
        let sae = SaeConfig::new(
            self.arch,
            match self.activation {
                WebActivation::Topk => Activation::TopK { k: self.k },
                WebActivation::BatchTopk => Activation::BatchTopK { k: self.k },
            },
            d,
            self.m,
            self.batch,
            self.lr,
        );
        let mfr = MfrConfig {
            lambda,
            warmup_steps: self.warmup_steps,
            form: self.form,
            ..MfrConfig::default()
        };
        EnsembleConfig::new(sae, self.n_saes, mfr, u64::MAX, u64::MAX, self.seed)
    }
}

struct Run {
    name: &'static str,
    ensemble: Ensemble,
}

/// Where the batches come from: a synthetic generator (with its true features)
/// or rows from a file the page loaded (EEG segments or activations), with
/// the held-out rows the training never sees.
enum Data {
    Synthetic(Synthetic),
    File(FileData),
}

struct FileData {
    rows: crate::data::Rows,
    held_out: Vec<f32>,
    info: serde_json::Value,
}

impl Data {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Data::Synthetic(s) => s,
            Data::File(f) => &mut f.rows,
        }
    }

    fn truth(&self) -> Option<&[f32]> {
        match self {
            Data::Synthetic(s) => Some(s.truth()),
            Data::File(_) => None,
        }
    }

    /// The factor the rows were multiplied by (activations normalised to √d).
    fn scale(&self) -> f32 {
        match self {
            Data::File(f) => f.info["scale"].as_f64().unwrap_or(1.0) as f32,
            Data::Synthetic(_) => 1.0,
        }
    }
}

struct Inner {
    data: Data,
    runs: Vec<Run>,
    /// The last metrics read, per run (firing counts order the atoms).
    last: Vec<LogRecord>,
}

struct State {
    device: Rc<Device>,
    /// What the page created the trainer with (a loaded file's width in `d_override`).
    config: WebConfig,
    busy: Cell<bool>,
    steps: Cell<u64>,
    inner: RefCell<Inner>,
    csv: RefCell<String>,
}

/// One page's training session: the MFR ensemble and, in compare mode, its baseline.
#[wasm_bindgen]
pub struct Trainer {
    state: Rc<State>,
}

fn run_of(inner: &Inner, run: usize) -> Result<&Ensemble, JsValue> {
    inner
        .runs
        .get(run)
        .map(|r| &r.ensemble)
        .ok_or_else(|| js_error(format!("no run {run}: the trainer has {}", inner.runs.len())))
}

fn sae_of(ens: &Ensemble, run: usize, sae: usize) -> Result<&crate::sae::GpuSae, JsValue> {
    ens.saes()
        .get(sae)
        .ok_or_else(|| js_error(format!("no SAE {sae} in run {run}: it has {}", ens.saes().len())))
}

/// Marks the trainer busy for the life of one async call.
struct Busy(Rc<State>);

impl Busy {
    fn take(state: &Rc<State>) -> Result<Busy, JsValue> {
        if state.busy.replace(true) {
            return Err(js_error("busy: await the previous call of this trainer first"));
        }
        Ok(Busy(state.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

/// The metrics of one run at one read, as the page gets them.
#[derive(Serialize)]
struct RunMetrics<'a> {
    name: &'a str,
    lambda: f32,
    #[serde(flatten)]
    record: &'a LogRecord,
}

/// A trainer's checkpoint (`Trainer.saveCheckpoint`): this JSON in the metadata of a
/// safetensors file whose tensors are every run's `checkpoint::save_ensemble` under
/// `run.<r>.`, the data position under `data.`, and for a loaded file its rows
/// (`data.train`, `data.held_out`). Metrics windows restart at a reload.
#[derive(Serialize, Deserialize)]
struct WebCheckpoint {
    format: u32,
    config: WebConfig,
    steps: u64,
    data: crate::data::SourceState,
    /// A loaded file's description and row counts; None for synthetic data.
    file: Option<FileCheckpoint>,
    runs: Vec<crate::checkpoint::EnsembleState>,
    csv: String,
}

#[derive(Serialize, Deserialize)]
struct FileCheckpoint {
    info: serde_json::Value,
    d: usize,
    train_rows: usize,
    held_out_rows: usize,
}

/// At most this many held-out rows are reconstructed by `Trainer.heldOut` (a CPU
/// forward pass in f64: about a second for 256 EEG segments of 14 × 128 values).
const HELD_OUT_ROWS: usize = 256;

const CSV_HEADER: &str =
    "run,lambda,step,sae,mse,fvu,l0,dead_fraction,mfr_loss,mmcs_max_to_others,mmcs_match_to_others,truth_matched,truth_max,truth_recovered\n";

#[wasm_bindgen]
impl Trainer {
    /// A trainer for `config` (JSON); rejects with a message naming a bad value.
    pub async fn create(config: String) -> Result<Trainer, JsValue> {
        let cfg: WebConfig = serde_json::from_str(&config).map_err(|e| js_error(format!("bad trainer config: {e}")))?;
        cfg.data.validate().map_err(js)?;
        let data = Data::Synthetic(Synthetic::new(cfg.data, cfg.seed).map_err(js)?);
        Self::with_data(cfg, data).await
    }

    /// A trainer on a file's rows: `.edf` (EEG, the paper's preprocessing, the
    /// last 20 % of the recording held out) or `.npy` / `.safetensors`
    /// (activations [N, d], scaled to mean row norm √d, the last 20 % of rows
    /// held out). `config` is as for `create`; its `data` is ignored.
    #[wasm_bindgen(js_name = createFromFile)]
    pub async fn create_from_file(config: String, name: String, bytes: Vec<u8>) -> Result<Trainer, JsValue> {
        let cfg: WebConfig = serde_json::from_str(&config).map_err(|e| js_error(format!("bad trainer config: {e}")))?;
        let exp = if name.to_ascii_lowercase().ends_with(".edf") {
            crate::experiment::Preset::Quick.eeg(&name)
        } else {
            crate::experiment::Preset::Quick.activations(&name)
        };
        let split = crate::experiment::split_bytes(&exp, &bytes).map_err(js)?;
        let mut info = split.description.clone();
        info["kind"] = serde_json::json!(exp.read.kind());
        info["name"] = name.into();
        info["d"] = split.d.into();
        let rows = crate::data::Rows::new(split.train, split.d, cfg.seed).map_err(js)?;
        let data = Data::File(FileData {
            rows,
            held_out: split.held_out,
            info,
        });
        Self::with_data(cfg, data).await
    }

    /// The whole trainer (every run's weights, Adam state and matchings, the data and
    /// where its stream stands) as one file's bytes, for `fromCheckpoint`.
    #[wasm_bindgen(js_name = saveCheckpoint)]
    pub fn save_checkpoint(&self) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let mut tensors = crate::checkpoint::Tensors::new("checkpoint");
            let mut runs = Vec::new();
            for (r, run) in inner.runs.iter().enumerate() {
                let prefix = format!("run.{r}.");
                runs.push(
                    crate::checkpoint::save_ensemble(gpu, &run.ensemble, &prefix, &mut tensors)
                        .await
                        .map_err(js)?,
                );
            }
            let (data, file) = match &inner.data {
                Data::Synthetic(s) => (s.stream_state(), None),
                Data::File(f) => {
                    let d = f.rows.d();
                    tensors.put_f32("data.train", &[f.rows.values().len() / d, d], f.rows.values());
                    tensors.put_f32("data.held_out", &[f.held_out.len() / d, d], &f.held_out);
                    let file = FileCheckpoint {
                        info: f.info.clone(),
                        d,
                        train_rows: f.rows.values().len() / d,
                        held_out_rows: f.held_out.len() / d,
                    };
                    (f.rows.state().expect("rows have a state"), Some(file))
                }
            };
            tensors.put_u64("data.rows", &data.rows);
            let checkpoint = WebCheckpoint {
                format: crate::checkpoint::FORMAT,
                config: state.config.clone(),
                steps: state.steps.get(),
                data,
                file,
                runs,
                csv: state.csv.borrow().clone(),
            };
            let json = serde_json::to_string(&checkpoint).expect("the checkpoint serialises");
            let bytes = tensors.to_bytes(&json).map_err(js)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }

    /// A trainer continuing exactly where `saveCheckpoint`'s bytes left it; rejects
    /// a damaged or foreign file with a message saying so.
    #[wasm_bindgen(js_name = fromCheckpoint)]
    pub async fn from_checkpoint(bytes: Vec<u8>) -> Result<Trainer, JsValue> {
        use crate::checkpoint::{load_ensemble, load_source, Tensors};
        let (tensors, json) = Tensors::from_bytes("checkpoint", &bytes).map_err(js)?;
        let ck: WebCheckpoint =
            serde_json::from_str(&json).map_err(|e| js_error(format!("not a trainer checkpoint: {e}")))?;
        if ck.format != crate::checkpoint::FORMAT {
            return Err(js_error(format!(
                "checkpoint format {} (this page reads format {})",
                ck.format,
                crate::checkpoint::FORMAT
            )));
        }
        let mut cfg = ck.config;
        let mut data = match &ck.file {
            None => {
                cfg.data.validate().map_err(js)?;
                Data::Synthetic(Synthetic::new(cfg.data, cfg.seed).map_err(js)?)
            }
            Some(f) => {
                cfg.d_override = Some(f.d);
                let train = tensors.f32("data.train", f.train_rows * f.d).map_err(js)?;
                let held_out = tensors.f32("data.held_out", f.held_out_rows * f.d).map_err(js)?;
                Data::File(FileData {
                    rows: crate::data::Rows::new(train, f.d, cfg.seed).map_err(js)?,
                    held_out,
                    info: f.info.clone(),
                })
            }
        };
        load_source(data.source(), &ck.data, &tensors, "").map_err(js)?;
        let device = device().await?;
        let lambdas = run_lambdas(&cfg);
        if lambdas.len() != ck.runs.len() {
            return Err(js_error(format!(
                "the checkpoint holds {} runs, its configuration {}",
                ck.runs.len(),
                lambdas.len()
            )));
        }
        let mut runs = Vec::new();
        for (r, (&(name, lambda), run_state)) in lambdas.iter().zip(&ck.runs).enumerate() {
            let prefix = format!("run.{r}.");
            let ensemble = load_ensemble(
                &device.gpu,
                &device.kernels,
                &cfg.ensemble(lambda),
                run_state,
                &tensors,
                &prefix,
            )
            .map_err(js)?;
            runs.push(Run { name, ensemble });
        }
        Ok(Trainer::assemble(device, cfg, data, runs, ck.steps, ck.csv))
    }

    async fn with_data(cfg: WebConfig, data: Data) -> Result<Trainer, JsValue> {
        let device = device().await?;
        let mut cfg = cfg;
        if let Data::File(f) = &data {
            cfg.d_override = Some(f.rows.d());
        }
        let mut runs = Vec::new();
        for (name, lambda) in run_lambdas(&cfg) {
            let ens_cfg = cfg.ensemble(lambda);
            let truth = match &data {
                Data::Synthetic(_) => Some(cfg.data.n_features()),
                Data::File(_) => None,
            };
            crate::limits::check(&ens_cfg, truth, &device.gpu.report, crate::limits::host_budget()).map_err(js)?;
            let weights = ens_cfg.initial_weights();
            let ensemble = Ensemble::new(&device.gpu, &device.kernels, ens_cfg, &weights).map_err(js)?;
            runs.push(Run { name, ensemble });
        }
        Ok(Trainer::assemble(device, cfg, data, runs, 0, CSV_HEADER.to_string()))
    }

    /// Trains `n` steps of every run on shared batches; resolves when the GPU is done.
    pub fn step(&self, n: u32) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let mut inner = state.inner.borrow_mut();
            let Inner { data, runs, .. } = &mut *inner;
            for _ in 0..n {
                let batch = data.source().next_batch(runs[0].ensemble.cfg.sae.batch).map_err(js)?;
                for run in runs.iter_mut() {
                    run.ensemble.step(gpu, &batch).await.map_err(js)?;
                }
                state.steps.set(state.steps.get() + 1);
            }
            gpu.finish().await.map_err(js)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Steps done.
    pub fn steps(&self) -> f64 {
        self.state.steps.get() as f64
    }

    /// The configuration the trainer was created with (JSON, as `create` takes it), so that
    /// the page can show the settings of a trainer loaded from a checkpoint.
    pub fn config(&self) -> String {
        serde_json::to_string(&self.state.config).expect("the config serialises")
    }

    /// Reads every run's metrics since the previous call (JSON: `{step, runs: [{name, lambda, saes, pairs}]}`).
    pub fn metrics(&self) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let mut inner = state.inner.borrow_mut();
            let Inner { data, runs, last } = &mut *inner;
            let mut records = Vec::new();
            for run in runs.iter_mut() {
                records.push(run.ensemble.log(gpu, data.truth()).await.map_err(js)?);
            }
            let mut csv = state.csv.borrow_mut();
            for (run, rec) in runs.iter().zip(&records) {
                for s in &rec.saes {
                    let t = s.truth.unwrap_or(metrics::Recovery {
                        matched: f64::NAN,
                        max: f64::NAN,
                        recovered: f64::NAN,
                    });
                    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
                    csv.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                        run.name,
                        run.ensemble.cfg.mfr.lambda,
                        s.step,
                        s.sae,
                        s.window.mse,
                        s.window.fvu,
                        s.window.l0,
                        s.window.dead_fraction,
                        s.mfr_loss,
                        opt(s.mmcs_max_to_others),
                        opt(s.mmcs_match_to_others),
                        t.matched,
                        t.max,
                        t.recovered
                    ));
                }
            }
            let out: Vec<RunMetrics> = runs
                .iter()
                .zip(&records)
                .map(|(run, record)| RunMetrics {
                    name: run.name,
                    lambda: run.ensemble.cfg.mfr.lambda,
                    record,
                })
                .collect();
            let json = serde_json::json!({ "step": state.steps.get(), "runs": out });
            *last = records;
            Ok(JsValue::from_str(&json.to_string()))
        })
    }

    /// Cosine similarities between SAE a's and SAE b's dictionaries in run `run`,
    /// rows and columns ordered by the optimal matching, best matches first:
    /// `{m, rows: Uint32Array, cols: Uint32Array, values: Float32Array [m·m] row-major}`
    /// (typed arrays, not JSON text: m = 576 is a third of a million values).
    pub fn heatmap(&self, run: usize, a: usize, b: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let ens = run_of(&inner, run)?;
            let n = ens.cfg.n_saes;
            if a >= n || b >= n {
                return Err(js_error(format!("SAEs {a} and {b}: the run has {n}")));
            }
            let (d, m) = (ens.cfg.sae.d_in, ens.cfg.sae.d_sae);
            let dicts = ens.dictionaries(gpu).await.map_err(js)?;
            let sim = metrics::cosine_matrix(&dicts[a], &dicts[b], d);
            let (_, mut pairs) = metrics::mmcs_match(&dicts[a], &dicts[b], d);
            pairs.sort_by(|p, q| sim[q.0 * m + q.1].total_cmp(&sim[p.0 * m + p.1]));
            let rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let cols: Vec<usize> = pairs.iter().map(|p| p.1).collect();
            let values: Vec<f32> = rows
                .iter()
                .flat_map(|&i| cols.iter().map(move |&j| (i, j)))
                .map(|(i, j)| sim[i * m + j] as f32)
                .collect();
            let as_u32 = |v: &[usize]| v.iter().map(|&i| i as u32).collect::<Vec<u32>>();
            let out = js_sys::Object::new();
            js_sys::Reflect::set(&out, &"m".into(), &(m as f64).into())?;
            js_sys::Reflect::set(&out, &"rows".into(), &js_sys::Uint32Array::from(&as_u32(&rows)[..]))?;
            js_sys::Reflect::set(&out, &"cols".into(), &js_sys::Uint32Array::from(&as_u32(&cols)[..]))?;
            js_sys::Reflect::set(&out, &"values".into(), &js_sys::Float32Array::from(&values[..]))?;
            Ok(out.into())
        })
    }

    /// The paper's motivating plot: per latent of each SAE, its best cosine to a
    /// true feature and to any latent of the other SAEs.
    pub fn motivation(&self, run: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let ens = run_of(&inner, run)?;
            let d = ens.cfg.sae.d_in;
            let dicts = ens.dictionaries(gpu).await.map_err(js)?;
            let truth = inner
                .data
                .truth()
                .ok_or_else(|| js_error("this data has no true features to compare with"))?;
            let row_max = |s: &[f64], cols: usize| {
                s.chunks(cols)
                    .map(|r| r.iter().copied().fold(-1.0, f64::max))
                    .collect::<Vec<_>>()
            };
            let mut points = Vec::new();
            for (n, dict) in dicts.iter().enumerate() {
                let to_truth = row_max(&metrics::cosine_matrix(dict, truth, d), truth.len() / d);
                let mut to_others = vec![-1.0f64; to_truth.len()];
                for other in dicts
                    .iter()
                    .enumerate()
                    .filter(|(o, _)| *o != n)
                    .map(|(_, other)| other)
                {
                    for (best, v) in to_others
                        .iter_mut()
                        .zip(row_max(&metrics::cosine_matrix(dict, other, d), other.len() / d))
                    {
                        *best = best.max(v);
                    }
                }
                for (latent, (t, o)) in to_truth.iter().zip(&to_others).enumerate() {
                    points.push(serde_json::json!({ "sae": n, "latent": latent, "truth_cos": t, "other_cos": o }));
                }
            }
            Ok(JsValue::from_str(&serde_json::json!({ "points": points }).to_string()))
        })
    }

    /// SAE `sae` of run `run` in SAELens format: `{cfg: string, weights: Uint8Array,
    /// warnings: string[]}` (the warnings must be shown: `export::SaelensFiles::warnings`).
    #[wasm_bindgen(js_name = exportSaelens)]
    pub fn export_saelens(&self, run: usize, sae: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let ens = run_of(&inner, run)?;
            let s = sae_of(ens, run, sae)?;
            let weights = s.weights(gpu).await.map_err(js)?;
            let export = crate::export::Export {
                mfr: &ens.cfg.mfr,
                n_saes: ens.cfg.n_saes,
                index: sae,
                scale: inner.data.scale(),
                model: &crate::export::ModelInfo::default(),
                dtype: crate::export::ExportDtype::Float32,
                densities: None,
                steps: Some(ens.steps_done()),
            };
            let files = crate::export::saelens(&s.cfg, &weights, &export).map_err(js)?;
            let out = js_sys::Object::new();
            js_sys::Reflect::set(&out, &"cfg".into(), &files.cfg.into())?;
            js_sys::Reflect::set(&out, &"weights".into(), &js_sys::Uint8Array::from(&files.weights[..]))?;
            let warnings: js_sys::Array = files.warnings.iter().map(|w| JsValue::from_str(w)).collect();
            js_sys::Reflect::set(&out, &"warnings".into(), &warnings)?;
            Ok(out.into())
        })
    }

    /// What the loaded data is (JSON): kind, d, rows, and for EEG the channels,
    /// their labels, the sample rate and the samples per segment.
    #[wasm_bindgen(js_name = dataInfo)]
    pub fn data_info(&self) -> Result<String, JsValue> {
        let inner = self
            .state
            .inner
            .try_borrow()
            .map_err(|_| js_error("busy: await the previous call first"))?;
        let info = match &inner.data {
            Data::Synthetic(s) => serde_json::json!({ "kind": "synthetic", "d": s.d(), "true_features": s.n_true() }),
            Data::File(f) => f.info.clone(),
        };
        Ok(info.to_string())
    }

    /// The `count` most-used decoder atoms of SAE `sae` in run `run` (by firing in
    /// the last metrics window): JSON `{latents, firing, atoms: [[d values]…]}`;
    /// for EEG each atom is channels × samples, channel-major.
    pub fn atoms(&self, run: usize, sae: usize, count: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let ens = run_of(&inner, run)?;
            let s = sae_of(ens, run, sae)?;
            let dict = s.weights(gpu).await.map_err(js)?.dictionary();
            let d = s.cfg.d_in;
            let firing = inner
                .last
                .get(run)
                .and_then(|r| r.saes.get(sae))
                .map_or_else(|| vec![0.0; s.cfg.d_sae], |r| r.window.firing_counts.clone());
            let mut order: Vec<usize> = (0..s.cfg.d_sae).collect();
            order.sort_by(|&a, &b| firing[b].total_cmp(&firing[a]).then(a.cmp(&b)));
            order.truncate(count);
            let atoms: Vec<&[f32]> = order.iter().map(|&j| &dict[j * d..(j + 1) * d]).collect();
            let used: Vec<f32> = order.iter().map(|&j| firing[j]).collect();
            Ok(JsValue::from_str(
                &serde_json::json!({ "latents": order, "firing": used, "atoms": atoms }).to_string(),
            ))
        })
    }

    /// Held-out row `index` (a segment, for EEG) and its reconstruction by SAE
    /// `sae` of run `run`: JSON `{index, rows, input, reconstruction, mse}`.
    pub fn segment(&self, run: usize, sae: usize, index: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let Data::File(f) = &inner.data else {
                return Err(js_error("segments are shown for loaded files (EEG, activations)"));
            };
            let ens = run_of(&inner, run)?;
            let s = sae_of(ens, run, sae)?;
            let d = s.cfg.d_in;
            let rows = f.held_out.len() / d;
            if index >= rows {
                return Err(js_error(format!("held-out row {index}: there are {rows}")));
            }
            let input: Vec<f64> = f.held_out[index * d..(index + 1) * d]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let weights = s.weights(gpu).await.map_err(js)?;
            let xhat = crate::model::eval::reconstruct(&s.cfg, &weights, &input);
            let mse = input.iter().zip(&xhat).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / d as f64;
            let json =
                serde_json::json!({ "index": index, "rows": rows, "input": input, "reconstruction": xhat, "mse": mse });
            Ok(JsValue::from_str(&json.to_string()))
        })
    }

    /// The reconstruction error of every SAE of run `run` on the held-out rows the
    /// training never sees (loaded files only): JSON `{rows, used, mse: [per SAE]}`,
    /// the mean squared error per value, in the same units as the training MSE. Up to
    /// `HELD_OUT_ROWS` rows, evenly spaced over the held-out part, are used (`used`).
    #[wasm_bindgen(js_name = heldOut)]
    pub fn held_out(&self, run: usize) -> js_sys::Promise {
        self.spawn(move |state| async move {
            let gpu = &state.device.gpu;
            let inner = state.inner.borrow();
            let Data::File(f) = &inner.data else {
                return Err(js_error("held-out rows exist for loaded files (EEG, activations)"));
            };
            let ens = run_of(&inner, run)?;
            let d = ens.cfg.sae.d_in;
            let rows = f.held_out.len() / d;
            let used = rows.min(HELD_OUT_ROWS);
            // x: [used, d] row-major, rows i·rows/used of the held-out part.
            let x: Vec<f64> = (0..used)
                .flat_map(|i| f.held_out[(i * rows / used) * d..(i * rows / used + 1) * d].iter())
                .map(|&v| v as f64)
                .collect();
            let mut mse = Vec::new();
            for s in ens.saes() {
                let weights = s.weights(gpu).await.map_err(js)?;
                let xhat = crate::model::eval::reconstruct(&s.cfg, &weights, &x);
                let sum: f64 = x.iter().zip(&xhat).map(|(a, b)| (a - b) * (a - b)).sum();
                mse.push(sum / x.len().max(1) as f64);
            }
            let json = serde_json::json!({ "rows": rows, "used": used, "mse": mse });
            Ok(JsValue::from_str(&json.to_string()))
        })
    }

    /// Every metrics read so far as CSV.
    #[wasm_bindgen(js_name = metricsCsv)]
    pub fn metrics_csv(&self) -> String {
        self.state.csv.borrow().clone()
    }
}

/// The runs a configuration makes: "mfr" at its λ and, in compare mode, "baseline" at 0.
fn run_lambdas(cfg: &WebConfig) -> Vec<(&'static str, f32)> {
    let mut runs = vec![("mfr", cfg.lambda)];
    if cfg.compare {
        runs.push(("baseline", 0.0));
    }
    runs
}

impl Trainer {
    fn assemble(device: Rc<Device>, config: WebConfig, data: Data, runs: Vec<Run>, steps: u64, csv: String) -> Trainer {
        let state = State {
            device,
            config,
            busy: Cell::new(false),
            steps: Cell::new(steps),
            inner: RefCell::new(Inner {
                data,
                runs,
                last: Vec::new(),
            }),
            csv: RefCell::new(csv),
        };
        Trainer { state: Rc::new(state) }
    }

    /// Runs `work` as a promise while holding the busy flag; a call while busy
    /// returns a rejected promise.
    fn spawn<F, Fut>(&self, work: F) -> js_sys::Promise
    where
        F: FnOnce(Rc<State>) -> Fut,
        Fut: Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        let busy = match Busy::take(&self.state) {
            Ok(b) => b,
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let fut = work(self.state.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let out = fut.await;
            drop(busy);
            out
        })
    }
}
