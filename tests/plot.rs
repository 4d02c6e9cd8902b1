//! `mfr-sae plot`'s figures from a small hand-made summary: the λ figures have one
//! line and one error bar per point for each summary, the λ = 0 mark, and the
//! legend; the curves come from the run folders beside the summary.

use mfr_sae::experiment::{Preset, RunResult, Summary, METRICS};
use mfr_sae::plot::{plot, Series};
use std::path::Path;

/// A synthetic summary with three λ × two seeds, and one run folder's metrics.
fn write_summary(dir: &Path, truth: [f64; 3]) {
    let exp = Preset::Quick.synthetic();
    let mut runs = Vec::new();
    for (i, lambda) in [0.0f32, 0.1, 1.0].into_iter().enumerate() {
        for seed in 0..2 {
            let values = METRICS
                .iter()
                .map(|(k, _)| {
                    let v = if *k == "truth_mmcs_match" {
                        truth[i] + 0.01 * seed as f64
                    } else {
                        0.5
                    };
                    (k.to_string(), v)
                })
                .collect();
            runs.push(RunResult {
                lambda,
                seed,
                values,
                reinits: 0,
                steps: 20,
            });
            let run = dir.join(format!("seed-{seed}")).join(format!("lambda-{lambda}"));
            std::fs::create_dir_all(&run).unwrap();
            let lines: String = (1..=2)
                .map(|s| format!("{{\"step\":{},\"sae\":0,\"mse\":{}}}\n", 10 * s, 1.0 / s as f64))
                .collect();
            std::fs::write(run.join("metrics.jsonl"), lines).unwrap();
        }
    }
    let summary = Summary::of(&exp, runs);
    std::fs::write(dir.join("summary.json"), serde_json::to_string(&summary).unwrap()).unwrap();
}

#[test]
fn the_lambda_figures_draw_each_summary_with_error_bars_and_the_curves_each_arm() {
    let root = std::env::temp_dir().join(format!("mfr-sae-plot-{}", std::process::id()));
    let (a, b, out) = (root.join("match"), root.join("max"), root.join("figures"));
    write_summary(&a, [0.60, 0.65, 0.70]);
    write_summary(&b, [0.60, 0.55, 0.50]);
    let series = vec![
        Series::read(&a.join("summary.json"), None).unwrap(),
        Series::read(&b.join("summary.json"), Some("max form".into())).unwrap(),
    ];
    assert_eq!(series[0].label, "match");
    let files = plot(&series, &out).unwrap();
    let truth = std::fs::read_to_string(out.join("lambda_truth.svg")).unwrap();
    assert!(truth.starts_with("<svg"));
    assert!(
        truth.contains(">\nmatch\n<") && truth.contains(">\nmax form\n<"),
        "legend labels"
    );
    assert!(truth.contains("λ = 0"), "the λ = 0 mark is labelled");
    // Two series lines plus the two legend swatches.
    assert!(truth.matches("<polyline").count() >= 4, "{truth}");
    // A vertical error bar is three lines per point: 3 λ × 2 series × 3.
    let bars = truth.matches("<line ").count();
    assert!(bars >= 18, "{bars} lines");
    let curves = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    for arm in ["match λ=0", "match λ=0.1", "max form λ=1"] {
        assert!(curves.contains(&format!(">\n{arm}\n<")), "curve {arm}");
    }
    assert!(files.iter().all(|f| f.exists()));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A real-data summary whose data description counts its "rows" (every activations
/// summary does) is read as the real-data summary it is, not refused as a synthetic one.
#[test]
fn a_real_data_summary_with_a_row_count_plots_its_held_out_loss() {
    use mfr_sae::experiment::{RealRun, RealSummary};
    let root = std::env::temp_dir().join(format!("mfr-sae-plot-real-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let runs = [(0.0f32, 0u64, 0.5), (0.0, 1, 0.52), (0.005, 0, 0.4), (0.005, 1, 0.41)]
        .into_iter()
        .map(|(lambda, seed, mse)| {
            let run = root.join(format!("seed-{seed}")).join(format!("lambda-{lambda}"));
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("metrics.jsonl"), "{\"step\":10,\"sae\":0,\"mse\":0.6}\n").unwrap();
            RealRun {
                lambda,
                seed,
                held_out_mse: vec![mse, mse + 0.01],
                held_out_fvu: vec![mse, mse + 0.01],
                values: [("dead_fraction".to_string(), 0.5)].into_iter().collect(),
                steps: 20,
                validation_mse: vec![],
            }
        })
        .collect();
    let summary = RealSummary {
        experiment: mfr_sae::experiment::Preset::Quick.activations("acts.npy"),
        data: serde_json::json!({"rows": 100, "d": 4, "train_rows": 80}),
        runs,
        headline: vec![],
    };
    let path = root.join("summary.json");
    std::fs::write(&path, serde_json::to_string(&summary).unwrap()).unwrap();
    let series = vec![Series::read(&path, Some("lm".into())).unwrap()];
    let files = plot(&series, &root.join("figures")).unwrap();
    let held_out = std::fs::read_to_string(root.join("figures/lambda_held_out.svg")).unwrap();
    assert!(
        held_out.starts_with("<svg") && held_out.contains(">\nlm\n<"),
        "{held_out}"
    );
    assert!(files.iter().all(|f| f.exists()));
    std::fs::remove_dir_all(&root).unwrap();
}
