//! A stable mutation fuzzer (cargo-fuzz needs nightly) for the readers that take a
//! user's bytes: EDF, `.npy`, `.safetensors` and the JSON training config. A seeded corpus
//! (the shipped samples and fixtures, small generated files, config JSONs) is mutated by
//! seeded bit flips, byte inserts and deletes, header field edits, truncation and
//! length-field lies; every input must give Ok with finite data or a clean Err. Counted:
//! panics (caught per input), hangs (an input over `TIME_BOUND`) and inputs accepted with
//! non-finite data. The test command runs `DEFAULT_INPUTS` per reader with a fixed seed;
//! `MFR_SAE_FUZZ_INPUTS=N` (and `MFR_SAE_FUZZ_SEED=S`) runs longer. A failing input is
//! written to `target/fuzz-failures/` to be kept under `tests/fixtures/fuzz/`.

use mfr_sae::data::validate::RowStats;
use mfr_sae::data::{activations, edf};
use mfr_sae::rng::Rng;
use mfr_sae::train::TrainConfig;
use std::io::Cursor;
use std::sync::mpsc;
use std::time::Duration;

const DEFAULT_INPUTS: usize = 2000;
const TIME_BOUND: Duration = Duration::from_secs(5);

/// What one input did.
enum Verdict {
    Ok,
    Err,
    /// Accepted, but holding a non-finite value (or a config that does not survive its own round trip).
    NonFinite,
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    tried: usize,
    ok: usize,
    err: usize,
    panics: usize,
    hangs: usize,
    non_finite: usize,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Tokens that header-field edits write: the edges of what the readers parse.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1",
    "1e300",
    "-1e300",
    "1e39",
    "NaN",
    "inf",
    "-32768",
    "32767",
    "99999999",
    "4294967296",
    "18446744073709551616",
    " ",
    "",
    "(",
    ")",
    ",",
    "'<f2'",
    "'<f8'",
    "True",
    "null",
    "\"x\"",
    "[]",
    "{}",
];

type Mutator = fn(&mut Rng, &mut Vec<u8>, usize);

/// One seeded mutation of `input`; `header` is where its format keeps its header fields.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, header: usize) {
    let len = input.len();
    let at = |rng: &mut Rng, n: usize| rng.below(n.max(1));
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(8) {
                if len > 0 {
                    let i = at(rng, len);
                    input[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let i = at(rng, len + 1).min(len);
            let byte = rng.below(256) as u8;
            for _ in 0..=rng.below(16) {
                input.insert(i, byte);
            }
        }
        2 => {
            if len > 0 {
                let i = at(rng, len);
                let n = (rng.below(64) + 1).min(len - i);
                input.drain(i..i + n);
            }
        }
        3 | 4 => {
            // A header field edit: a token written over header bytes.
            let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
            let i = at(rng, header.min(len));
            for (k, &b) in token.iter().enumerate() {
                if let Some(slot) = input.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        5 => input.truncate(at(rng, len)),
        _ => {
            // A length-field lie: the .npy header length, the safetensors header length or an
            // EDF header count, replaced by an edge value.
            let lies: [u64; 7] = [
                0,
                1,
                len as u64,
                len as u64 + 1,
                u32::MAX as u64,
                u64::MAX,
                rng.below(1 << 20) as u64,
            ];
            let lie = lies[rng.below(lies.len())];
            let (offset, width) = [(0, 8), (8, 2), (8, 4), (236, 8), (252, 4), (184, 8)][rng.below(6)];
            let bytes = lie.to_le_bytes();
            for (k, &b) in bytes.iter().take(width).enumerate() {
                if let Some(slot) = input.get_mut(offset + k) {
                    *slot = b;
                }
            }
        }
    }
}

/// Values a JSON-aware edit puts in place of a config value.
fn json_tokens() -> Vec<serde_json::Value> {
    serde_json::from_str(
        r#"[0, -1, 1, 0.5, 1e30, 1e39, -1e39, 1e300, 18446744073709551615, 4294967296, -0.0,
            "", "x", "tied", "top_k", "relu_l1", "match", "max", "paper", "sharkey", null, true, [], {}, [1, 2]]"#,
    )
    .unwrap()
}

/// A structural edit of a JSON input (half the time; else a byte-level `mutate`): a value
/// replaced by an edge value, a key removed or an unknown key added, at a random place.
fn mutate_json(rng: &mut Rng, input: &mut Vec<u8>, header: usize) {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(input) else {
        return mutate(rng, input, header);
    };
    if rng.below(2) == 0 {
        return mutate(rng, input, header);
    }
    // A random path down the document, as a JSON pointer, stopping at random.
    let mut pointer = String::new();
    let mut here = &value;
    loop {
        match here {
            serde_json::Value::Object(o) if !o.is_empty() && rng.below(3) != 0 => {
                let key = o.keys().nth(rng.below(o.len())).unwrap();
                pointer.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")));
                here = &o[key];
            }
            serde_json::Value::Array(a) if !a.is_empty() && rng.below(3) != 0 => {
                let i = rng.below(a.len());
                pointer.push_str(&format!("/{i}"));
                here = &a[i];
            }
            _ => break,
        }
    }
    let at = value.pointer_mut(&pointer).expect("the path was just walked");
    let tokens = json_tokens();
    match (rng.below(3), &mut *at) {
        (0, serde_json::Value::Object(o)) if !o.is_empty() => {
            let key = o.keys().nth(rng.below(o.len())).unwrap().clone();
            o.remove(&key);
        }
        (1, serde_json::Value::Object(o)) => {
            o.insert("unknown_key".into(), 1.into());
        }
        _ => *at = tokens[rng.below(tokens.len())].clone(),
    }
    *input = serde_json::to_vec(&value).unwrap();
}

/// Runs `reader` on `inputs` mutated versions of the corpus, one thread per input (a panic
/// is caught by the join, a hang by the time bound).
fn fuzz(name: &str, corpus: &[Vec<u8>], header: usize, mutator: Mutator, reader: fn(Vec<u8>) -> Verdict) -> Tally {
    let inputs = env_number("MFR_SAE_FUZZ_INPUTS", DEFAULT_INPUTS as u64) as usize;
    let mut rng = Rng::new(env_number("MFR_SAE_FUZZ_SEED", 0x5eed) ^ name.len() as u64);
    let mut tally = Tally::default();
    let failures = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    for n in 0..inputs {
        let mut input = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(3) {
            mutator(&mut rng, &mut input, header);
        }
        let failed = tally.count(run_one(reader, input.clone()));
        if let Some(kind) = failed {
            std::fs::create_dir_all(&failures).ok();
            std::fs::write(failures.join(format!("{name}-{kind}-{n}.bin")), &input).ok();
        }
    }
    eprintln!("fuzz {name}: {tally:?}");
    tally
}

/// Runs `reader` on one input in its own thread: a panic is caught by the join, a hang
/// by the time bound (the thread is then left behind).
fn run_one(reader: fn(Vec<u8>) -> Verdict, input: Vec<u8>) -> std::result::Result<Verdict, &'static str> {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let verdict = reader(input);
        tx.send(()).ok();
        verdict
    });
    match rx.recv_timeout(TIME_BOUND) {
        Err(mpsc::RecvTimeoutError::Timeout) => Err("hang"),
        _ => worker.join().map_err(|_| "panic"),
    }
}

impl Tally {
    /// Counts one input's outcome; the kind of failure, if it failed.
    fn count(&mut self, outcome: std::result::Result<Verdict, &'static str>) -> Option<&'static str> {
        self.tried += 1;
        match outcome {
            Ok(Verdict::Ok) => self.ok += 1,
            Ok(Verdict::Err) => self.err += 1,
            Ok(Verdict::NonFinite) => {
                self.non_finite += 1;
                return Some("non-finite");
            }
            Err(kind) => {
                if kind == "hang" {
                    self.hangs += 1;
                } else {
                    self.panics += 1;
                }
                return Some(kind);
            }
        }
        None
    }
}

/// One input's tally.
fn fuzz_one(reader: fn(Vec<u8>) -> Verdict, input: Vec<u8>) -> Tally {
    let mut tally = Tally::default();
    tally.count(run_one(reader, input));
    tally
}

fn assert_clean(name: &str, tally: Tally) {
    assert!(
        tally.panics == 0 && tally.hangs == 0 && tally.non_finite == 0 && tally.ok + tally.err == tally.tried,
        "fuzz {name}: {tally:?}; failing inputs are in target/tmp/fuzz-failures/"
    );
}

/// A matrix reader's verdict: finite data, and the validation pass neither panics nor
/// accepts a non-finite scale.
fn matrix_verdict(matrix: mfr_sae::Result<activations::Matrix>) -> Verdict {
    let Ok(m) = matrix else { return Verdict::Err };
    if m.data.iter().any(|v| !v.is_finite()) || m.data.len() != m.rows * m.d {
        return Verdict::NonFinite;
    }
    match RowStats::of("fuzz", m.d.max(1), 0, &m.data).and_then(|s| s.scale(true)) {
        Ok(s) if !s.is_finite() => Verdict::NonFinite,
        _ => Verdict::Ok,
    }
}

/// Whole and in chunks of 3 rows (the streaming reader and its checked pass).
fn read_matrix(name: &str, bytes: Vec<u8>) -> Verdict {
    if let Ok(mut reader) = activations::ChunkReader::open(name, Cursor::new(bytes.clone()), None) {
        if let Ok(s) = activations::checked_scale(&mut reader, 3, true) {
            if !s.is_finite() {
                return Verdict::NonFinite;
            }
        }
    }
    matrix_verdict(activations::read(name, &bytes, None))
}

/// An EDF's verdict: parsed with finite samples and, for recordings small enough to
/// preprocess quickly, the paper's preprocessing and the split check (the page's path).
fn read_edf(bytes: Vec<u8>) -> Verdict {
    let edf = match edf::parse("fuzz.edf", &bytes) {
        Ok(e) if e.signals.iter().all(|s| s.samples.iter().all(|v| v.is_finite())) => e,
        Ok(_) => return Verdict::NonFinite,
        Err(_) => return Verdict::Err,
    };
    let samples: usize = edf.signals.iter().map(|s| s.samples.len()).sum();
    if samples <= EDF_PREPROCESS_SAMPLES {
        if let Ok(seg) = mfr_sae::data::eeg::segments(&edf, &Default::default()) {
            if seg.train.iter().chain(&seg.held_out).any(|v| !v.is_finite()) {
                return Verdict::NonFinite;
            }
            let _ = mfr_sae::data::validate::check_split("fuzz.edf", seg.width(), &seg.train, &seg.held_out, false);
        }
    }
    Verdict::Ok
}

/// Recordings up to this many samples also go through the EEG preprocessing.
const EDF_PREPROCESS_SAMPLES: usize = 120_000;

fn ramp(rows: usize, d: usize) -> Vec<f32> {
    (0..rows * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.5).collect()
}

/// An `.npy` of f16 data in format `version` (the writer makes only f32 version 1.0).
fn npy_f16(version: u8, rows: usize, d: usize) -> Vec<u8> {
    let header = format!("{{'descr': '<f2', 'fortran_order': False, 'shape': ({rows}, {d}), }}\n");
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend((0..rows * d).flat_map(|i| (0x3c00u16 + i as u16).to_le_bytes()));
    out
}

#[test]
fn fuzz_the_npy_reader() {
    let sample = activations::read(
        "smollm2.npy",
        &std::fs::read("web/samples/lm/smollm2_135m_resid.npy").unwrap(),
        None,
    )
    .unwrap();
    let corpus = vec![
        activations::write_npy(sample.d, &sample.data[..16 * sample.d]).unwrap(),
        activations::write_npy(5, &ramp(7, 5)).unwrap(),
        activations::write_npy(1, &[2.0]).unwrap(),
        npy_f16(2, 3, 4),
        npy_f16(3, 2, 2),
    ];
    assert_clean("npy", fuzz("npy", &corpus, 128, mutate, |b| read_matrix("fuzz.npy", b)));
}

#[test]
fn fuzz_the_safetensors_reader() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let f32s: Vec<u8> = ramp(6, 5).iter().flat_map(|v| v.to_le_bytes()).collect();
    let halves: Vec<u8> = (0..12u16).flat_map(|i| (0x3c00 + i).to_le_bytes()).collect();
    let one = safetensors::serialize(
        [("acts", TensorView::new(Dtype::F32, vec![6, 5], &f32s).unwrap())],
        None,
    )
    .unwrap();
    let two = safetensors::serialize(
        [
            ("h", TensorView::new(Dtype::F16, vec![3, 4], &halves).unwrap()),
            ("b", TensorView::new(Dtype::BF16, vec![4, 3], &halves).unwrap()),
            ("v", TensorView::new(Dtype::F32, vec![30], &f32s).unwrap()),
        ],
        None,
    )
    .unwrap();
    let corpus = vec![one, two];
    assert_clean(
        "safetensors",
        fuzz("safetensors", &corpus, 160, mutate, |b| {
            // With two 2-D tensors the reader asks for a name; both ways are exercised.
            match read_matrix("fuzz.safetensors", b.clone()) {
                Verdict::Err => matrix_verdict(activations::read("fuzz.safetensors", &b, Some("h"))),
                v => v,
            }
        }),
    );
}

#[test]
fn fuzz_the_edf_reader() {
    let small = edf::write(
        &[
            edf::Signal {
                label: "Fp1".into(),
                sample_rate: 8.0,
                physical_dimension: "uV".into(),
                samples: (0..16).map(|i| (i as f32 * 0.7).sin() * 50.0).collect(),
            },
            edf::Signal {
                label: "O2".into(),
                sample_rate: 4.0,
                physical_dimension: "uV".into(),
                samples: (0..8).map(|i| i as f32 - 2.5).collect(),
            },
        ],
        0.5,
    )
    .unwrap();
    let corpus = vec![
        small,
        std::fs::read("tests/fixtures/pyedflib_test_subsecond.edf").unwrap(),
        std::fs::read("web/samples/eeg/eyes_open_shut.edf").unwrap(),
        std::fs::read("web/samples/eeg/scp1_channel0.edf").unwrap(),
    ];
    // The header: 256 bytes and 256 per signal (two to fourteen here).
    assert_clean("edf", fuzz("edf", &corpus, 256 * 4, mutate, read_edf));
}

/// A config's verdict: parsed, validated, sized; accepted configs must survive their own
/// JSON round trip (a non-finite float would come back as null and fail).
fn config_verdict(bytes: Vec<u8>) -> Verdict {
    let Ok(cfg) = serde_json::from_slice::<TrainConfig>(&bytes) else {
        return Verdict::Err;
    };
    let valid = cfg.ensemble.validate().and_then(|_| match &cfg.data {
        mfr_sae::train::DataConfig::Synthetic(s) => s.validate(),
        mfr_sae::train::DataConfig::File(_) => Ok(()),
    });
    let needs = mfr_sae::limits::needs(&cfg.ensemble, None);
    if valid.is_err() {
        return Verdict::Err;
    }
    let text = serde_json::to_string(&cfg).expect("configs serialise");
    match serde_json::from_str::<TrainConfig>(&text) {
        Ok(back) if back == cfg && needs.host_bytes.is_finite() => Verdict::Ok,
        _ => Verdict::NonFinite,
    }
}

#[test]
fn fuzz_the_config_parser() {
    let ensemble = mfr_sae::experiment::Preset::Quick.synthetic().ensemble;
    let mut rich = ensemble.clone();
    rich.sae.auxk = Some(mfr_sae::model::AuxK::gao(64));
    rich.reinit = Some(Default::default());
    rich.lr_per_sae = vec![1e-3, 2e-3];
    let configs = [
        TrainConfig {
            data: mfr_sae::train::DataConfig::Synthetic(mfr_sae::experiment::Preset::Quick.synthetic().data),
            ensemble,
        },
        TrainConfig {
            data: mfr_sae::train::DataConfig::File(mfr_sae::train::FileConfig {
                file: "/data/acts.npy".into(),
                tensor: Some("acts".into()),
                normalise: true,
                shuffle_rows: 64,
            }),
            ensemble: rich,
        },
    ];
    let corpus: Vec<Vec<u8>> = configs
        .iter()
        .flat_map(|c| [serde_json::to_vec(c).unwrap(), serde_json::to_vec_pretty(c).unwrap()])
        .collect();
    assert_clean("config", fuzz("config", &corpus, 2000, mutate_json, config_verdict));
}

#[test]
fn the_mutations_reach_both_verdicts() {
    // A fuzzer whose every input is refused (or accepted) tests nothing: on the npy corpus
    // some mutated inputs must still read and some must be refused.
    let corpus = vec![activations::write_npy(5, &ramp(7, 5)).unwrap()];
    let tally = fuzz("npy-reach", &corpus, 128, mutate, |b| read_matrix("fuzz.npy", b));
    assert!(tally.ok > 0 && tally.err > 0, "{tally:?}");
}

/// Every input the fuzzer once failed on, kept under tests/fixtures/fuzz/ (the reader from
/// the name's extension), must now give a clean verdict within the time bound.
#[test]
fn past_fuzz_failures_stay_fixed() {
    let mut checked = 0;
    for entry in std::fs::read_dir("tests/fixtures/fuzz").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let reader: fn(Vec<u8>) -> Verdict = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => config_verdict,
            Some("npy") => |b| read_matrix("fuzz.npy", b),
            Some("safetensors") => |b| read_matrix("fuzz.safetensors", b),
            Some("edf") => read_edf,
            _ => continue,
        };
        let tally = fuzz_one(reader, std::fs::read(&path).unwrap());
        assert_clean(&name, tally);
        checked += 1;
    }
    assert!(checked > 0, "tests/fixtures/fuzz holds the past failures");
}
