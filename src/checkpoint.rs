//! Checkpoints: everything a training run carries from step to step, so that a
//! run stopped anywhere (Ctrl-C, SIGTERM, kill -9, a power cut) continues to the
//! same metrics and weights, bit for bit on the same adapter.
//!
//! What a checkpoint holds: every SAE's weights, Adam moments and step count and
//! AuxK firing clock; the ensemble's step t and reinit counter (the learning-rate
//! and MFR schedules are functions of t, the reinit seeds of the counter); the
//! `Match` form's matchings (the `Max` form recomputes its own every step); the
//! data stream's position (`data::SourceState`); and the run's last log record.
//! Checkpoints are taken at log steps only, where the metrics windows have just
//! been read and restarted, so no window accumulator needs saving.
//!
//! Format: a folder `checkpoint/` in the run folder with `state.json` (the
//! `RunState`: scalars, generator states, the config hash) and
//! `tensors.safetensors` (every array, and the same state in its metadata, so
//! the two files are checked against each other). The tensors file alone is the
//! one-file form the page downloads (`to_bytes` / `from_bytes`). Folders are
//! written atomically: `checkpoint.tmp-<pid>/`, fsync, the old `checkpoint/`
//! renamed to `checkpoint.prev/`, the new one renamed into place, then the old
//! one removed; a reader falls back to `checkpoint.prev/` if a crash came
//! between the two renames.
//!
//! Does not own when checkpoints are taken (`train::run_with`), the run folder's
//! other files (`train::RunDir`) or signals (`main.rs`).

use crate::data::{Source, SourceState};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Kernels, MmcsForm};
use crate::model::{Activation, Param, SaeWeights};
use crate::sae::SaeTrainingState;
use crate::train::{Ensemble, EnsembleConfig, LogRecord};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The version of the layout below; a checkpoint of another version is refused.
pub const FORMAT: u32 = 1;
/// The key of the tensors file's metadata that holds the state JSON.
const STATE_KEY: &str = "mfr_sae_checkpoint";
pub const DIR: &str = "checkpoint";
const PREV_DIR: &str = "checkpoint.prev";
const TMP_PREFIX: &str = "checkpoint.tmp-";
pub const STATE_FILE: &str = "state.json";
pub const TENSORS_FILE: &str = "tensors.safetensors";

/// A short fingerprint of a configuration (FNV-1a 64 of its compact JSON), stored in
/// every checkpoint: a run folder whose `config.json` changed does not resume.
pub fn config_hash(config: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(config).expect("configurations serialise");
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Named arrays of a checkpoint (f32, u32, u64, little-endian), by name.
pub struct Tensors {
    /// The file they came from (or go to), for error messages.
    file: String,
    items: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

impl Tensors {
    pub fn new(file: &str) -> Tensors {
        Tensors {
            file: file.to_string(),
            items: BTreeMap::new(),
        }
    }

    pub fn put_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.items.insert(name.to_string(), (Dtype::F32, shape.to_vec(), bytes));
    }

    pub fn put_u32(&mut self, name: &str, values: &[u32]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.items
            .insert(name.to_string(), (Dtype::U32, vec![values.len()], bytes));
    }

    pub fn put_u64(&mut self, name: &str, values: &[u64]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.items
            .insert(name.to_string(), (Dtype::U64, vec![values.len()], bytes));
    }

    /// The bytes of tensor `name`, which must have `dtype` and, if given, `len` values.
    fn bytes(&self, name: &str, dtype: Dtype, len: Option<usize>) -> Result<&[u8]> {
        let fail = |message: String| Error::Io {
            path: self.file.clone(),
            message,
        };
        let (have, shape, bytes) = self
            .items
            .get(name)
            .ok_or_else(|| fail(format!("the checkpoint has no tensor {name}")))?;
        let count: usize = shape.iter().product();
        if *have != dtype || len.is_some_and(|l| l != count) {
            return Err(fail(format!(
                "checkpoint tensor {name} is {have:?} {shape:?}, expected {dtype:?} with {} values",
                len.map_or("any number of".into(), |l| l.to_string())
            )));
        }
        Ok(bytes)
    }

    pub fn f32(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let b = self.bytes(name, Dtype::F32, Some(len))?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn u32(&self, name: &str, len: usize) -> Result<Vec<u32>> {
        let b = self.bytes(name, Dtype::U32, Some(len))?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Tensor `name` as u64, of whatever length it has.
    pub fn u64(&self, name: &str) -> Result<Vec<u64>> {
        let b = self.bytes(name, Dtype::U64, None)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect())
    }

    /// The safetensors bytes, with `state` (JSON text) in the metadata.
    pub fn to_bytes(&self, state: &str) -> Result<Vec<u8>> {
        let views = self
            .items
            .iter()
            .map(|(name, (dtype, shape, bytes))| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::Shape(format!("checkpoint tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([(STATE_KEY.to_string(), state.to_string())]);
        safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| Error::Io {
            path: self.file.clone(),
            message: format!("could not encode the checkpoint: {e}"),
        })
    }

    /// Reads a tensors file (named `file` in errors) and the state JSON in its metadata.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<(Tensors, String)> {
        let fail = |message: String| Error::Io {
            path: file.to_string(),
            message,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            fail(format!(
                "not a complete checkpoint ({e}); it may have been cut short: resume from an earlier \
                 checkpoint or start the run again"
            ))
        })?;
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| fail(e.to_string()))?;
        let state = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .cloned()
            .ok_or_else(|| {
                fail(format!(
                    "a safetensors file, but not an mfr-sae checkpoint (no {STATE_KEY} metadata)"
                ))
            })?;
        let mut t = Tensors::new(file);
        for (name, view) in st.tensors() {
            t.items
                .insert(name, (view.dtype(), view.shape().to_vec(), view.data().to_vec()));
        }
        Ok((t, state))
    }
}

/// The ensemble's part of a checkpoint, beside its tensors `sae.<n>.<param>`,
/// `sae.<n>.<param>.adam_m` / `.adam_v`, `sae.<n>.since_fired`, BatchTopK's
/// `sae.<n>.threshold` [1] and
/// `mfr.pair.<p>.assign`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleState {
    /// Steps completed (the ensemble's t).
    pub steps: u64,
    /// Re-initialisations so far (they seed the next ones).
    pub reinits: u64,
    /// Per SAE: Adam's step count (restarts at a re-initialisation).
    pub adam_steps: Vec<u64>,
    /// Whether the `Match` form's matchings are saved.
    pub matchings: bool,
}

/// Reads ensemble `ens`'s state into `out` (tensor names prefixed by `prefix`).
pub async fn save_ensemble(gpu: &Gpu, ens: &Ensemble, prefix: &str, out: &mut Tensors) -> Result<EnsembleState> {
    let mut adam_steps = Vec::new();
    for (n, sae) in ens.saes().iter().enumerate() {
        let weights = sae.weights(gpu).await?;
        let state = sae.training_state(gpu).await?;
        for (i, p) in weights.params.iter().enumerate() {
            let name = format!("{prefix}sae.{n}.{}", p.name);
            out.put_f32(&name, &p.shape, &p.data);
            out.put_f32(&format!("{name}.adam_m"), &p.shape, &state.adam_m[i]);
            out.put_f32(&format!("{name}.adam_v"), &p.shape, &state.adam_v[i]);
        }
        if let Some(t) = weights.threshold {
            out.put_f32(&format!("{prefix}sae.{n}.threshold"), &[1], &[t]);
        }
        out.put_f32(
            &format!("{prefix}sae.{n}.since_fired"),
            &[sae.cfg.d_sae],
            &state.since_fired,
        );
        adam_steps.push(state.adam_steps);
    }
    let mut matchings = false;
    if let Some(mfr) = ens.mfr().filter(|m| m.cfg.form == MmcsForm::Match) {
        for (p, assign) in mfr.assignments(gpu).await?.iter().enumerate() {
            out.put_u32(&format!("{prefix}mfr.pair.{p}.assign"), assign);
        }
        matchings = true;
    }
    Ok(EnsembleState {
        steps: ens.steps_done(),
        reinits: ens.reinits(),
        adam_steps,
        matchings,
    })
}

/// The ensemble `save_ensemble` saved, rebuilt for `cfg` on `gpu`.
pub fn load_ensemble(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &EnsembleConfig,
    state: &EnsembleState,
    tensors: &Tensors,
    prefix: &str,
) -> Result<Ensemble> {
    if state.adam_steps.len() != cfg.n_saes {
        return Err(Error::Config(format!(
            "the checkpoint holds {} SAEs, the configuration {}",
            state.adam_steps.len(),
            cfg.n_saes
        )));
    }
    let weights = ensemble_weights(cfg, tensors, prefix)?;
    let mut states = Vec::new();
    for (n, &adam_steps) in state.adam_steps.iter().enumerate() {
        let sae_cfg = cfg.sae_config(n);
        let (mut adam_m, mut adam_v) = (Vec::new(), Vec::new());
        for (name, shape) in SaeWeights::init_shapes(&sae_cfg) {
            let key = format!("{prefix}sae.{n}.{name}");
            let len = shape.iter().product();
            adam_m.push(tensors.f32(&format!("{key}.adam_m"), len)?);
            adam_v.push(tensors.f32(&format!("{key}.adam_v"), len)?);
        }
        states.push(SaeTrainingState {
            adam_steps,
            adam_m,
            adam_v,
            since_fired: tensors.f32(&format!("{prefix}sae.{n}.since_fired"), sae_cfg.d_sae)?,
        });
    }
    let mut ens = Ensemble::new(gpu, kernels, cfg.clone(), &weights)?;
    for (sae, s) in ens.saes_mut().iter_mut().zip(&states) {
        sae.set_training_state(gpu, s)?;
    }
    if let Some(mfr) = ens.mfr().filter(|m| m.cfg.form == MmcsForm::Match) {
        if !state.matchings {
            return Err(Error::Config(
                "the checkpoint has no MFR matchings but the configuration uses the Match form".into(),
            ));
        }
        for p in 0..mfr.pairs().len() {
            let assign = tensors.u32(&format!("{prefix}mfr.pair.{p}.assign"), cfg.sae.d_sae)?;
            mfr.set_matching(gpu, p, &assign)?;
        }
    }
    ens.set_counters(state.steps, state.reinits);
    Ok(ens)
}

/// The weights of the `cfg.n_saes` SAEs `save_ensemble` saved (tensors `<prefix>sae.<n>.<param>`).
pub fn ensemble_weights(cfg: &EnsembleConfig, tensors: &Tensors, prefix: &str) -> Result<Vec<SaeWeights>> {
    (0..cfg.n_saes)
        .map(|n| {
            let sae_cfg = cfg.sae_config(n);
            let params = SaeWeights::init_shapes(&sae_cfg)
                .into_iter()
                .map(|(name, shape)| {
                    let len = shape.iter().product();
                    Ok(Param {
                        name,
                        data: tensors.f32(&format!("{prefix}sae.{n}.{name}"), len)?,
                        shape,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let threshold = match sae_cfg.activation {
                Activation::BatchTopK { .. } => Some(tensors.f32(&format!("{prefix}sae.{n}.threshold"), 1)?[0]),
                _ => None,
            };
            Ok(SaeWeights {
                arch: sae_cfg.arch,
                params,
                threshold,
            })
        })
        .collect()
}

/// Where `source` stands, its row list into `out` as `<prefix>data.rows`.
pub fn save_source(source: &dyn Source, prefix: &str, out: &mut Tensors) -> Result<SourceState> {
    let state = source
        .state()
        .ok_or_else(|| Error::Config("this data source cannot be checkpointed".into()))?;
    out.put_u64(&format!("{prefix}data.rows"), &state.rows);
    Ok(state)
}

/// Puts `source` where `save_source` found it.
pub fn load_source(source: &mut dyn Source, state: &SourceState, tensors: &Tensors, prefix: &str) -> Result<()> {
    let mut state = state.clone();
    state.rows = tensors.u64(&format!("{prefix}data.rows"))?;
    source.restore(&state)
}

/// A training run's `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub format: u32,
    /// `config_hash` of the run's configuration (its `config.json`).
    pub config_hash: String,
    pub ensemble: EnsembleState,
    pub data: SourceState,
    /// The log record of the checkpoint's step, so that a run resumed after its last
    /// step still has its summary.
    pub last_log: LogRecord,
}

/// A whole training run's state: `state.json` and its tensors.
pub struct Checkpoint {
    pub state: RunState,
    pub tensors: Tensors,
}

impl Checkpoint {
    /// Reads the state of `ens` and `source` at a log step whose record is `last_log`.
    pub async fn capture(
        gpu: &Gpu,
        ens: &Ensemble,
        source: &dyn Source,
        config_hash: &str,
        last_log: &LogRecord,
    ) -> Result<Checkpoint> {
        let mut tensors = Tensors::new(TENSORS_FILE);
        let ensemble = save_ensemble(gpu, ens, "", &mut tensors).await?;
        let data = save_source(source, "", &mut tensors)?;
        let state = RunState {
            format: FORMAT,
            config_hash: config_hash.to_string(),
            ensemble,
            data,
            last_log: last_log.clone(),
        };
        Ok(Checkpoint { state, tensors })
    }

    /// Steps completed at the checkpoint.
    pub fn step(&self) -> u64 {
        self.state.ensemble.steps
    }

    /// The ensemble for `cfg`, and `source` put back where it stood.
    pub fn restore(
        &self,
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: &EnsembleConfig,
        source: &mut dyn Source,
    ) -> Result<Ensemble> {
        load_source(source, &self.state.data, &self.tensors, "")?;
        load_ensemble(gpu, kernels, cfg, &self.state.ensemble, &self.tensors, "")
    }

    fn state_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.state).expect("the state serialises");
        text.push('\n');
        text
    }

    /// The one-file form: the tensors file, the state in its metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.tensors.to_bytes(&self.state_json())
    }

    /// Reads the one-file form (`file` names it in errors), refusing another format
    /// version or, when `config_hash` is given, another configuration.
    pub fn from_bytes(file: &str, bytes: &[u8], config_hash: Option<&str>) -> Result<Checkpoint> {
        let (tensors, text) = Tensors::from_bytes(file, bytes)?;
        let state = parse_state(file, &text, config_hash)?;
        Ok(Checkpoint { state, tensors })
    }

    /// Writes the checkpoint into `run_dir/checkpoint/`, atomically (module comment).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let tmp = run_dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        remove_stale_temporaries(run_dir)?;
        std::fs::create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
        write_synced(&tmp.join(TENSORS_FILE), &self.to_bytes()?)?;
        write_synced(&tmp.join(STATE_FILE), self.state_json().as_bytes())?;
        sync_dir(&tmp)?;
        let (current, prev) = (run_dir.join(DIR), run_dir.join(PREV_DIR));
        if current.exists() {
            remove_dir(&prev)?;
            std::fs::rename(&current, &prev).map_err(|e| io_error(&current, e))?;
        }
        std::fs::rename(&tmp, &current).map_err(|e| io_error(&current, e))?;
        sync_dir(run_dir)?;
        remove_dir(&prev)
    }

    /// The latest complete checkpoint of `run_dir`, if it has one, refused (with an
    /// error naming the file) when it is damaged or was written for another
    /// configuration than `config_hash`.
    pub fn read(run_dir: &Path, config_hash: &str) -> Result<Option<Checkpoint>> {
        let Some(dir) = [DIR, PREV_DIR].iter().map(|d| run_dir.join(d)).find(|d| d.exists()) else {
            return Ok(None);
        };
        let read = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            Ok((path, bytes))
        };
        let (state_path, state_bytes) = read(STATE_FILE)?;
        let (tensors_path, tensors_bytes) = read(TENSORS_FILE)?;
        let state_file = state_path.display().to_string();
        let text = String::from_utf8(state_bytes).map_err(|_| Error::Io {
            path: state_file.clone(),
            message: "not UTF-8 text: the checkpoint state is damaged".into(),
        })?;
        let state = parse_state(&state_file, &text, Some(config_hash))?;
        let (tensors, embedded) = Tensors::from_bytes(&tensors_path.display().to_string(), &tensors_bytes)?;
        if parse_state(&tensors_path.display().to_string(), &embedded, None)? != state {
            return Err(Error::Io {
                path: tensors_path.display().to_string(),
                message: format!("belongs to another checkpoint than {state_file}: the checkpoint is damaged"),
            });
        }
        Ok(Some(Checkpoint { state, tensors }))
    }
}

fn parse_state(file: &str, text: &str, config_hash: Option<&str>) -> Result<RunState> {
    let fail = |message: String| Error::Io {
        path: file.to_string(),
        message,
    };
    let state: RunState = serde_json::from_str(text)
        .map_err(|e| fail(format!("not a checkpoint state ({e}): the checkpoint is damaged")))?;
    if state.format != FORMAT {
        return Err(fail(format!(
            "checkpoint format {} (this mfr-sae reads format {FORMAT})",
            state.format
        )));
    }
    if let Some(want) = config_hash.filter(|&h| h != state.config_hash) {
        return Err(fail(format!(
            "the checkpoint was written for another configuration (hash {}) than the run's config.json \
             (hash {want}); restore the config.json it was trained with, or start a new run",
            state.config_hash
        )));
    }
    Ok(state)
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `bytes` to a new file `path` and waits until they are on disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes).map_err(|e| io_error(path, e))?;
    f.sync_all().map_err(|e| io_error(path, e))
}

/// Makes a folder's entries (new files, renames) durable; a no-op where folders cannot be opened.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(dir, e)),
        _ => Ok(()),
    }
}

/// Removes the `checkpoint.tmp-*` folders that interrupted writes left behind.
fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            remove_dir(&entry.path())?;
        }
    }
    Ok(())
}
