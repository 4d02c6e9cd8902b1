//! The real-data experiments end to end on the shipped samples: EEG through the
//! paper's preprocessing with a held-out split by time, denoising targets, and
//! the headline metric computed against the same seed's baseline.

mod common;

use common::ctx;
use mfr_sae::experiment::{self, Preset};

fn tiny(mut exp: experiment::RealExperiment) -> experiment::RealExperiment {
    exp.ensemble.steps = 4;
    exp.ensemble.log_every = 2;
    exp.ensemble.sae.batch = 8;
    exp.epochs = None;
    exp.seeds = 2;
    exp
}

#[test]
fn the_eeg_experiment_scores_held_out_time_and_reports_the_headline() {
    let c = ctx();
    let out = std::env::temp_dir().join(format!("mfr-sae-eeg-{}", std::process::id()));
    let mut exp = tiny(Preset::Quick.eeg("web/samples/eeg/eyes_open_shut.edf"));
    exp.ensemble.sae.d_sae = 32;
    let summary = pollster::block_on(experiment::run_real(&c.gpu, &c.k, &exp, &out, &mut |_, _, _| {})).unwrap();
    assert_eq!(summary.data["channels"], 14);
    assert_eq!(summary.runs.len(), 4, "two λ × two seeds");
    for r in &summary.runs {
        assert_eq!(r.held_out_mse.len(), exp.ensemble.n_saes);
        assert!(r.held_out_mse.iter().all(|v| v.is_finite() && *v > 0.0));
    }
    let h = &summary.headline[0];
    assert_eq!(h.lambda, 0.5);
    // The headline is (MFR − baseline) / baseline of the same seed, averaged over seeds.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rel: Vec<f64> = (0..2)
        .map(|s| {
            let pick = |l: f32| summary.runs.iter().find(|r| r.lambda == l && r.seed == s).unwrap();
            (mean(&pick(0.5).held_out_mse) - mean(&pick(0.0).held_out_mse)) / mean(&pick(0.0).held_out_mse)
        })
        .collect();
    assert!((h.relative_change_mean.mean - mean(&rel)).abs() < 1e-12);
    assert!(out.join("summary.json").is_file() && out.join("seed-1/lambda-0.5/metrics.jsonl").is_file());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn denoising_trains_on_noisy_input_against_the_clean_segment() {
    let c = ctx();
    let out = std::env::temp_dir().join(format!("mfr-sae-denoise-{}", std::process::id()));
    let mut exp = tiny(Preset::Quick.eeg("web/samples/eeg/scp1_channel0.edf"));
    exp.ensemble.sae.d_sae = 32;
    let experiment::RealData::Eeg { noise, .. } = &mut exp.read else {
        unreachable!("the EEG preset reads EEG")
    };
    *noise = Some(mfr_sae::data::eeg::NoiseConfig::default());
    exp.lambdas = vec![0.0];
    let summary = pollster::block_on(experiment::run_real(&c.gpu, &c.k, &exp, &out, &mut |_, _, _| {})).unwrap();
    assert_eq!(summary.data["channels"], 1);
    assert!(summary
        .runs
        .iter()
        .all(|r| r.held_out_mse.iter().all(|v| v.is_finite())));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_bad_data_file_is_refused_with_its_name() {
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("mfr-sae-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("truncated.edf");
    let bytes = std::fs::read("web/samples/eeg/eyes_open_shut.edf").unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let exp = tiny(Preset::Quick.eeg(&bad.display().to_string()));
    let err = pollster::block_on(experiment::run_real(&c.gpu, &c.k, &exp, &dir, &mut |_, _, _| {}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("truncated.edf"), "{err}");
    let exp = tiny(Preset::Quick.activations("/nonexistent/acts.npy"));
    let err = pollster::block_on(experiment::run_real(&c.gpu, &c.k, &exp, &dir, &mut |_, _, _| {}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/acts.npy"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_activations_experiment_reads_npy_and_holds_out_the_last_rows() {
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("mfr-sae-acts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rows, d) = (50, 12);
    let data: Vec<f32> = mfr_sae::rng::Rng::new(3)
        .normals(rows * d)
        .into_iter()
        .map(|v| 3.0 * v as f32)
        .collect();
    let file = dir.join("acts.npy");
    std::fs::write(&file, mfr_sae::data::activations::write_npy(d, &data).unwrap()).unwrap();
    let exp = tiny(Preset::Quick.activations(&file.display().to_string()));
    let split = experiment::load_split(&exp).unwrap();
    assert_eq!((split.d, split.train.len() / d, split.held_out.len() / d), (12, 40, 10));
    let scale = split.description["scale"].as_f64().unwrap() as f32;
    assert!(
        (split.held_out[0] - scale * data[40 * d]).abs() < 1e-5,
        "the held-out rows are the file's last rows"
    );
    let mean_norm: f64 = split
        .train
        .chunks(d)
        .map(|r| r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt())
        .sum::<f64>()
        / 40.0;
    assert!(
        (mean_norm - (d as f64).sqrt()).abs() < 1e-3,
        "mean training row norm {mean_norm} → √d"
    );
    let summary = pollster::block_on(experiment::run_real(
        &c.gpu,
        &c.k,
        &exp,
        &dir.join("out"),
        &mut |_, _, _| {},
    ))
    .unwrap();
    assert_eq!(summary.runs.len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validation_rows_come_before_the_held_out_rows_and_are_scored_at_every_log_step() {
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("mfr-sae-validation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rows, d) = (50, 12);
    let mut data: Vec<f32> = mfr_sae::rng::Rng::new(4)
        .normals(rows * d)
        .into_iter()
        .map(|v| 2.0 * v as f32)
        .collect();
    // Rows 30..40 (the validation part of 40 training rows at 0.25) repeat rows 40..50
    // (the held-out part), so at the last step both parts must score alike.
    data.copy_within(40 * d.., 30 * d);
    let file = dir.join("acts.npy");
    std::fs::write(&file, mfr_sae::data::activations::write_npy(d, &data).unwrap()).unwrap();
    let mut exp = tiny(Preset::Quick.activations(&file.display().to_string()));
    *validation_fraction_of(&mut exp) = 0.25;
    let split = experiment::load_split(&exp).unwrap();
    assert_eq!(
        (
            split.train.len() / d,
            split.validation.len() / d,
            split.held_out.len() / d
        ),
        (30, 10, 10)
    );
    assert_eq!(split.description["validation_rows"], 10);
    assert_eq!(
        split.validation, split.held_out,
        "the validation rows are the file's rows 30..40"
    );
    let out = dir.join("out");
    let summary = pollster::block_on(experiment::run_real(&c.gpu, &c.k, &exp, &out, &mut |_, _, _| {})).unwrap();
    for r in &summary.runs {
        assert_eq!(r.validation_mse.len(), exp.ensemble.n_saes);
        for (v, h) in r.validation_mse.iter().zip(&r.held_out_mse) {
            assert!(
                (v - h).abs() <= 1e-12 * h,
                "validation {v} against held-out {h} on the same rows"
            );
        }
    }
    // Every log step of every run records each SAE's validation MSE.
    let metrics = std::fs::read_to_string(out.join("seed-0/lambda-0/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2 * exp.ensemble.n_saes, "4 steps logged every 2, per SAE");
    assert!(lines
        .iter()
        .all(|l| l["validation_mse"].as_f64().is_some_and(|v| v > 0.0)));
    assert!(experiment::real_table(&summary).contains("validation MSE"));
    // A fraction that leaves no rows to train on is refused.
    *validation_fraction_of(&mut exp) = 1.0;
    assert!(experiment::load_split(&exp).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

fn validation_fraction_of(exp: &mut experiment::RealExperiment) -> &mut f64 {
    match &mut exp.read {
        experiment::RealData::Activations {
            validation_fraction, ..
        } => validation_fraction,
        experiment::RealData::Eeg { eeg, .. } => &mut eeg.validation_fraction,
    }
}

/// A run that converged is finished: `--resume` gives back its result without another
/// step. A run stopped before it converged resumes with the losses it had logged, and so
/// converges at the step an uninterrupted run does (before, a resumed run's rule started
/// with no history: converged runs trained on to the cap, interrupted ones stopped late).
#[test]
fn a_resumed_experiment_converges_where_an_uninterrupted_one_does() {
    use experiment::Control;
    use std::sync::atomic::{AtomicBool, Ordering};
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("mfr-sae-converged-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rows, d) = (60, 8);
    let data: Vec<f32> = mfr_sae::rng::Rng::new(9)
        .normals(rows * d)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let file = dir.join("acts.npy");
    std::fs::write(&file, mfr_sae::data::activations::write_npy(d, &data).unwrap()).unwrap();
    let mut exp = tiny(Preset::Quick.activations(&file.display().to_string()));
    *validation_fraction_of(&mut exp) = 0.25;
    exp.ensemble.steps = 60;
    exp.seeds = 1;
    exp.convergence = Some(experiment::Convergence {
        window: 0.5,
        min_improvement: 0.2,
        min_steps: 8,
    });
    let run = |out: &std::path::Path, resume: bool, stop_at: Option<u64>| {
        let stop = AtomicBool::new(false);
        let control = Control {
            checkpoint_every: 2,
            resume,
            stop: Some(&stop),
        };
        let mut progress = |_: &str, step: u64, _: Option<&mfr_sae::train::LogRecord>| {
            if stop_at == Some(step) {
                stop.store(true, Ordering::SeqCst);
            }
        };
        pollster::block_on(experiment::run_real_with(
            &c.gpu,
            &c.k,
            &exp,
            out,
            &mut progress,
            &control,
        ))
    };
    let read = |out: &std::path::Path, f: &str| std::fs::read(out.join(f)).unwrap();
    let runs = ["seed-0/lambda-0/metrics.jsonl", "seed-0/lambda-0.005/metrics.jsonl"];

    let whole = dir.join("whole");
    let summary = run(&whole, false, None).unwrap();
    let steps: Vec<u64> = summary.runs.iter().map(|r| r.steps).collect();
    assert!(
        steps.iter().all(|&s| s > 8 && s < 16),
        "the rule must end each run after its min_steps and before step 16 for this test to mean anything: {steps:?}"
    );
    let before: Vec<Vec<u8>> = runs.iter().map(|f| read(&whole, f)).collect();
    run(&whole, true, None).unwrap();
    for (f, b) in runs.iter().zip(&before) {
        assert!(&read(&whole, f) == b, "resuming a converged run trained it on: {f}");
    }

    // Stopped at step 6 of its first run, before the rule could hold; with no history
    // the resumed rule could not look back half the steps before step 16.
    let stopped = dir.join("stopped");
    assert!(matches!(run(&stopped, false, Some(6)), Err(mfr_sae::Error::Stopped(_))));
    run(&stopped, true, None).unwrap();
    for f in runs.iter().chain(&["summary.json"]) {
        assert!(read(&whole, f) == read(&stopped, f), "{f} differs after the resume");
    }
    std::fs::remove_dir_all(&dir).ok();
}
