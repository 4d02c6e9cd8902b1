//! Inputs that must never fool the trainer, each once a known failure: degenerate data
//! files (one row, one huge value, all zeros, an EDF range beyond f32), sizes refused before
//! any work, a diverging learning rate, two runs in one folder, stale outputs, misspelt
//! config keys. Each ends in a clear error naming the file, value, step or SAE — never a
//! panic, never exit 0 with NaN or zeros.

mod common;

use common::{mfr_sae, npy, scratch};
use mfr_sae::train::{self, RunDir, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Exit code 1, one `error:` sentence containing every one of `want`, no panic.
fn refused(out: &Output, want: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for w in want {
        assert!(stderr.contains(w), "missing {w:?} in: {stderr}");
    }
    stderr
}

fn ramp(rows: usize, d: usize) -> Vec<f32> {
    (0..rows * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.5).collect()
}

/// `experiment activations` and `train --data-file` on the same file.
fn both_commands(file: &Path, out: &Path) -> [Output; 2] {
    let experiment = mfr_sae()
        .args(["experiment", "activations", "--steps", "2", "--seeds", "1", "--data"])
        .arg(file)
        .arg("--out")
        .arg(out.join("experiment"))
        .output()
        .unwrap();
    let train = mfr_sae()
        .args("train --steps 2 --batch 4 --m 8 --k 2 --data-file".split(' '))
        .arg(file)
        .arg("--out")
        .arg(out.join("train"))
        .output()
        .unwrap();
    [experiment, train]
}

#[test]
fn a_one_row_file_is_refused_by_name_not_a_panic() {
    let dir = scratch("one-row");
    let file = npy(&dir, "one.npy", 4, &[1.0, 2.0, 3.0, 4.0]);
    let [experiment, train] = both_commands(&file, &dir);
    refused(&experiment, &["one.npy", "1 rows: a split needs at least 4"]);
    refused(&train, &["one.npy", "1 rows: at least 2 are needed"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn one_huge_value_and_an_all_zero_file_are_refused_by_both_paths() {
    let dir = scratch("degenerate");
    let mut data = ramp(40, 4);
    data[4 * 9 + 1] = 1e30;
    let huge = npy(&dir, "huge.npy", 4, &data);
    for out in both_commands(&huge, &dir) {
        refused(&out, &["huge.npy", "row 9", "outlier"]);
    }
    let zeros = npy(&dir, "zeros.npy", 4, &[0.0; 40]);
    for out in both_commands(&zeros, &dir) {
        refused(&out, &["zeros.npy", "rows is zero: there is nothing to reconstruct"]);
    }
    let same = npy(&dir, "same.npy", 2, &[1.0, -1.0].repeat(10));
    for out in both_commands(&same, &dir) {
        refused(&out, &["same.npy", "are the same: their variance is 0"]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_edf_whose_physical_range_overflows_f32_is_refused() {
    let dir = scratch("edf");
    let mut bytes = std::fs::read("web/samples/eeg/eyes_open_shut.edf").unwrap();
    let ns: usize = String::from_utf8_lossy(&bytes[252..256]).trim().parse().unwrap();
    // Header: 256 bytes, then per-signal label 16, transducer 80, dimension 8, physical min 8, max 8.
    let at = 256 + ns * (16 + 80 + 8 + 8);
    bytes[at..at + 8].copy_from_slice(b"1e300   ");
    let file = dir.join("wide.edf");
    std::fs::write(&file, &bytes).unwrap();
    let out = mfr_sae()
        .args(["experiment", "eeg", "--steps", "2", "--seeds", "1", "--data"])
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    refused(&out, &["wide.edf", "signal 0", "exceeds f32"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn absurd_sizes_are_refused_before_any_work_naming_the_sizes() {
    let dir = scratch("sizes");
    let start = Instant::now();
    let out = mfr_sae()
        .args(["train", "--m", "10000000", "--out"])
        .arg(dir.join("m"))
        .output()
        .unwrap();
    let took = start.elapsed();
    refused(&out, &["m = 10000000", "bytes", "binds at most", "use a smaller"]);
    assert!(!dir.join("m").exists(), "refused before the run folder");
    // A [4, 20000] file: m = d = 20 000 in the activations preset.
    let file = npy(&dir, "wide.npy", 20_000, &ramp(4, 20_000));
    let start = Instant::now();
    let out = mfr_sae()
        .args(["experiment", "activations", "--seeds", "1", "--data"])
        .arg(&file)
        .arg("--out")
        .arg(dir.join("wide"))
        .output()
        .unwrap();
    let took_wide = start.elapsed();
    refused(&out, &["m = 20000, d = 20000", "use a smaller m"]);
    // Fits the binding limit but not the (unfolded) matmul grid: once a wgpu validation panic.
    let out = mfr_sae()
        .args("train --n 1 --d 1 --m 20000000 --batch 1 --k 1 --lambda 0".split(' '))
        .args("--features 2 --groups 1 --group-size 2 --active 1 --out".split(' '))
        .arg(dir.join("grid"))
        .output()
        .unwrap();
    refused(
        &out,
        &["m = 20000000 needs 625000 matmul workgroups", "use a smaller m"],
    );
    // A 1 TiB (sparse) file is sized before an experiment reads it.
    let huge = dir.join("huge.npy");
    std::fs::File::create(&huge).unwrap().set_len(1 << 40).unwrap();
    let out = mfr_sae()
        .args(["experiment", "activations", "--seeds", "1", "--data"])
        .arg(&huge)
        .arg("--out")
        .arg(dir.join("huge"))
        .output()
        .unwrap();
    refused(&out, &["huge.npy: 1048576 MiB", "train --data-file` streams it"]);
    // Process start and the adapter take most of this; the checks themselves take microseconds.
    for t in [took, took_wide] {
        assert!(t < Duration::from_secs(3), "refused after {t:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_learning_rate_stops_the_run_naming_step_and_sae() {
    let dir = scratch("diverge");
    let out = mfr_sae()
        .args("train --lr 1e30 --steps 20 --log-every 10 --out".split(' '))
        .arg(dir.join("run"))
        .output()
        .unwrap();
    refused(
        &out,
        &["training diverged by step 10", "SAE 0", "lower the learning rate"],
    );
    assert!(!dir.join("run/saelens").exists(), "nothing exported");
    assert!(
        !dir.join("run/.mfr-sae.lock").exists(),
        "the lock goes with the failed run"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn export_refuses_non_finite_weights() {
    let cfg = mfr_sae::experiment::Preset::Quick.synthetic().ensemble;
    let mut w = cfg.initial_weights().remove(0);
    w.params[0].data[5] = f32::NAN;
    let export = mfr_sae::export::Export {
        mfr: &cfg.mfr,
        n_saes: 2,
        index: 0,
        scale: 1.0,
        model: &mfr_sae::export::ModelInfo::default(),
        dtype: mfr_sae::export::ExportDtype::Float32,
        densities: None,
        steps: None,
    };
    let e = mfr_sae::export::saelens(&cfg.sae_config(0), &w, &export)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("SAE 0's W_enc") && e.contains("NaN"), "{e}");
    let e = train::check_weights(
        7,
        &[cfg.initial_weights().remove(1), {
            let mut big = cfg.initial_weights().remove(1);
            big.params[1].data[2] = 6e30;
            big
        }],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("by step 7: SAE 1's b[2] is 6e30"), "{e}");
}

#[test]
fn two_runs_cannot_share_a_folder_and_stale_outputs_are_refused_or_cleared() {
    let dir = scratch("rundir");
    let run = dir.join("run");
    let first = RunDir::create(&run, &"one").unwrap();
    let e = RunDir::create(&run, &"two").err().unwrap().to_string();
    assert!(
        e.contains("in use by another run") && e.contains(&std::process::id().to_string()),
        "{e}"
    );
    let e = train::clear_run_outputs(&run).unwrap_err().to_string();
    assert!(e.contains("in use by another run"), "{e}");
    drop(first);
    std::fs::create_dir_all(run.join("saelens/sae-7")).unwrap();
    let e = RunDir::create(&run, &"three").err().unwrap().to_string();
    assert!(
        e.contains("another run's files (config.json, events.jsonl, metrics.jsonl, saelens)"),
        "{e}"
    );
    assert!(e.contains("--overwrite"), "{e}");
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    train::clear_run_outputs(&run).unwrap();
    assert!(!run.join("saelens").exists() && run.join("notes.txt").exists());
    // A lock left by a process that has exited is stale and taken over.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(run.join(".mfr-sae.lock"), dead.to_string()).unwrap();
    let again = RunDir::create(&run, &"four").unwrap();
    let lock = std::fs::read_to_string(run.join(".mfr-sae.lock")).unwrap();
    assert_eq!(lock, std::process::id().to_string());
    drop(again);
    assert!(!run.join(".mfr-sae.lock").exists());
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "no temporary files left: {names:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_cli_refuses_an_old_run_folder_unless_overwrite_and_stores_the_data_file_absolute() {
    let dir = scratch("overwrite");
    npy(&dir, "acts.npy", 4, &ramp(40, 4));
    let train = |extra: &[&str]| {
        mfr_sae()
            .current_dir(&dir)
            .args("train --steps 4 --log-every 2 --batch 4 --m 8 --k 2".split(' '))
            .args(["--data-file", "acts.npy", "--out", "run"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = train(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    refused(
        &train(&[]),
        &["run: the folder holds another run's files", "--overwrite"],
    );
    let out = train(&["--overwrite"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        4,
        "appended per window: steps 2 and 4 × 2 SAEs, once"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap()).unwrap();
    let stored = PathBuf::from(config["data"]["file"].as_str().unwrap());
    assert!(stored.is_absolute() && stored.ends_with("acts.npy"), "{stored:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_relative_data_file_in_a_config_is_read_from_the_config_files_folder() {
    let dir = scratch("relative-config");
    npy(&dir, "acts.npy", 4, &ramp(40, 4));
    let mut config = config_json(true);
    config["data"]["file"] = "acts.npy".into();
    config["ensemble"]["sae"]["d_in"] = 4.into();
    config["ensemble"]["sae"]["d_sae"] = 8.into();
    config["ensemble"]["sae"]["batch"] = 4.into();
    config["ensemble"]["sae"]["activation"] = serde_json::json!({"kind": "top_k", "k": 2});
    config["ensemble"]["sae"]["auxk"] = serde_json::Value::Null;
    config["ensemble"]["reinit"] = serde_json::Value::Null;
    config["ensemble"]["steps"] = 2.into();
    config["ensemble"]["log_every"] = 2.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    // Run from elsewhere: the file is found beside the config, and the run records it absolute.
    let out = mfr_sae()
        .current_dir(std::env::temp_dir())
        .args(["train", "--config"])
        .arg(dir.join("config.json"))
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(
        PathBuf::from(stored["data"]["file"].as_str().unwrap()),
        std::path::absolute(dir.join("acts.npy")).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A valid training config as JSON, synthetic or from a file.
fn config_json(file: bool) -> serde_json::Value {
    let mut ensemble = mfr_sae::experiment::Preset::Quick.synthetic().ensemble;
    ensemble.sae.auxk = Some(mfr_sae::model::AuxK::gao(64));
    ensemble.reinit = Some(Default::default());
    let data = if file {
        mfr_sae::train::DataConfig::File(mfr_sae::train::FileConfig {
            file: "/x.npy".into(),
            tensor: None,
            normalise: true,
            shuffle_rows: 8,
        })
    } else {
        mfr_sae::train::DataConfig::Synthetic(mfr_sae::experiment::Preset::Quick.synthetic().data)
    };
    serde_json::to_value(TrainConfig { data, ensemble }).unwrap()
}

#[test]
fn a_misspelt_config_key_is_refused_at_every_nesting_level() {
    for file in [false, true] {
        let good = config_json(file);
        let parsed: TrainConfig = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), good, "round trip");
        let levels: &[&[&str]] = &[
            &[],
            &["data"],
            &["ensemble"],
            &["ensemble", "sae"],
            &["ensemble", "sae", "activation"],
            &["ensemble", "sae", "adam"],
            &["ensemble", "sae", "auxk"],
            &["ensemble", "mfr"],
            &["ensemble", "reinit"],
        ];
        for path in levels {
            let mut bad = good.clone();
            let mut at = &mut bad;
            for key in *path {
                at = &mut at[*key];
            }
            at.as_object_mut().unwrap().insert("lamda".into(), 1.into());
            let e = serde_json::from_value::<TrainConfig>(bad).unwrap_err().to_string();
            assert!(e.contains("unknown field `lamda`"), "{path:?} (file {file}): {e}");
        }
    }
    let e = serde_json::from_str::<TrainConfig>(r#"{"data": {"fille": "a.npy"}, "ensemble": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither `file`") && e.contains("fille"), "{e}");
}

#[test]
fn the_divergence_guard_reads_the_loss_not_a_zero_variance_fvu() {
    let window = |mse: f64, fvu: f64| mfr_sae::sae::SaeMetrics {
        steps: 10,
        mse,
        fvu,
        l0: 8.0,
        l1: 1.0,
        dead_fraction: 0.0,
        reinit_stat_max: 0.0,
        reinit_over: 0,
        aux_mse: 0.0,
        firing_counts: vec![],
    };
    // Batch 1: the targets have no variance, so FVU is astronomical or infinite; not divergence.
    train::check_divergence(10, &[window(0.5, f64::INFINITY), window(0.5, 1e300)]).unwrap();
    let e = train::check_divergence(20, &[window(0.5, 1.0), window(f64::NAN, 1.0)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("by step 20: SAE 1's mse over the last 10 steps is NaN"),
        "{e}"
    );
    let e = train::check_divergence(30, &[window(2e30, 1.0)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("SAE 0's mse") && e.contains("2e30"), "{e}");
}

#[test]
fn concurrent_atomic_writes_to_one_file_never_collide_or_leave_temporaries() {
    let dir = scratch("atomic");
    let path = dir.join("summary.json");
    let contents: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'a' + i; 50_000]).collect();
    std::thread::scope(|s| {
        for c in &contents {
            let path = &path;
            s.spawn(move || {
                for _ in 0..40 {
                    train::write_atomic(path, c).unwrap();
                }
            });
        }
    });
    let last = std::fs::read(&path).unwrap();
    assert!(contents.contains(&last), "the file is one writer's whole content");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["summary.json"]);
    std::fs::remove_dir_all(&dir).ok();
}
