//! The native binary as a user meets it: `info`, and failures that are one
//! clear sentence with a non-zero exit code and no panic.

mod common;

use common::{mfr_sae, npy, scratch};

#[test]
fn info_json_names_the_adapter_and_backend() {
    let out = mfr_sae().args(["info", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json prints JSON");
    assert!(!v["name"].as_str().unwrap().is_empty(), "adapter name missing: {v}");
    assert!(
        ["Vulkan", "Metal", "Dx12", "Gl", "BrowserWebGpu"].contains(&v["backend"].as_str().unwrap()),
        "{v}"
    );
    assert!(
        v["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap() >= 128 << 20,
        "{v}"
    );
}

#[test]
fn info_reports_the_matmul_variant_and_why() {
    let cache = std::env::temp_dir().join(format!("mfr-sae-cli-cache-{}", std::process::id()));
    let info = |args: &[&str], env: Option<&str>| {
        let mut cmd = mfr_sae();
        cmd.args(args)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("MFR_SAE_MATMUL");
        if let Some(v) = env {
            cmd.env("MFR_SAE_MATMUL", v);
        }
        cmd.output().unwrap()
    };
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = json(info(&["info", "--json"], None));
    assert_eq!(v["matmul"]["reason"], "default", "{v}");
    let v = json(info(&["info", "--json"], Some("tiled")));
    assert_eq!(v["matmul"]["reason"], "override", "{v}");
    assert_eq!(v["matmul"]["variants"][1], "tiled", "{v}");
    // The flag wins over the environment.
    let v = json(info(&["--matmul", "register", "info", "--json"], Some("tiled")));
    assert_eq!(v["matmul"]["variants"][1], "register", "{v}");
    let text = String::from_utf8(info(&["info"], None).stdout).unwrap();
    assert!(
        text.contains("matmul       ") && text.contains("(default for this device type)"),
        "{text}"
    );
    let out = info(&["info"], Some("fastest"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("MFR_SAE_MATMUL") && stderr.contains("`fastest`"),
        "{stderr}"
    );
}

#[test]
fn without_any_adapter_commands_fail_with_one_sentence_and_no_panic() {
    for args in [&["info"][..], &["info", "--json"], &["train", "--steps", "1"]] {
        let out = mfr_sae()
            .args(args)
            // Vulkan only, with a loader that finds no driver: no adapter at all.
            .env("WGPU_BACKEND", "vulkan")
            .env("VK_ICD_FILENAMES", "/nonexistent.json")
            .env("VK_DRIVER_FILES", "/nonexistent.json")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{args:?}: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr}");
        assert!(
            lines[0].starts_with("error: no GPU adapter found"),
            "{args:?}: {stderr}"
        );
        assert!(
            lines[0].contains("mesa-vulkan-drivers"),
            "the message says what to install: {stderr}"
        );
    }
}

#[test]
fn bad_training_values_are_refused_by_name() {
    for (args, needle) in [
        (&["train", "--k", "300", "--m", "256"][..], "k = 300"),
        (&["train", "--lr", "-1"], "learning rate"),
        (&["train", "--l1", "NaN"], "L1 coefficient"),
        (&["train", "--m", "0"], "d_sae (0)"),
        (&["train", "--n", "0"], "at least 1 SAE"),
        (&["train", "--lambda", "NaN"], "λ (lambda) must be a finite number"),
        (&["train", "--ks", "4,5,6"], "k_per_sae has 3 values for 2 SAEs"),
        (&["train", "--active", "30"], "active (30)"),
        (
            &["train", "--config", "/nonexistent/config.json"],
            "/nonexistent/config.json",
        ),
        (
            &["experiment", "synthetic", "--seeds", "0"],
            "at least one λ and one seed",
        ),
    ] {
        let out = mfr_sae().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn train_writes_a_run_folder_that_its_config_reproduces() {
    let dir = scratch("reproduce");
    let first = dir.join("first");
    let args = [
        "--d",
        "8",
        "--features",
        "16",
        "--groups",
        "2",
        "--group-size",
        "6",
        "--active",
        "3",
        "--m",
        "16",
    ];
    let out = mfr_sae()
        .args("train --steps 6 --log-every 3 --batch 16 --k 3 --out".split(' '))
        .arg(&first)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["config.json", "metrics.jsonl", "events.jsonl", "summary.json"] {
        assert!(first.join(f).is_file(), "{f} missing");
    }
    // By default the penalty is the authors' final form: the one-to-one matching.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["ensemble"]["mfr"]["form"], "match");
    let metrics = std::fs::read_to_string(first.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "one line per logged step (3, 6) and SAE (0, 1)");
    assert!(lines
        .iter()
        .all(|l| l["mse"].as_f64().unwrap().is_finite() && l["truth"]["matched"].is_number()));
    // The recorded config trains the same run again, bit for bit.
    let second = dir.join("second");
    let out = mfr_sae()
        .args(["train", "--config"])
        .arg(first.join("config.json"))
        .arg("--out")
        .arg(&second)
        .output();
    assert!(out.unwrap().status.success());
    assert_eq!(metrics, std::fs::read_to_string(second.join("metrics.jsonl")).unwrap());
    // A file that is not a config names itself and the problem.
    std::fs::write(dir.join("bad.json"), "{\"data\": 3}").unwrap();
    let out = mfr_sae()
        .args(["train", "--config"])
        .arg(dir.join("bad.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("not a training config"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Width of `normal_activations`' rows.
const ACTS_D: usize = 16;

/// A fresh temp folder named for `tag` holding `acts.npy`: `rows` × ACTS_D standard normals.
fn normal_activations(tag: &str, rows: usize, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mfr-sae-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<f32> = mfr_sae::rng::Rng::new(seed)
        .normals(rows * ACTS_D)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let file = dir.join("acts.npy");
    std::fs::write(&file, mfr_sae::data::activations::write_npy(ACTS_D, &data).unwrap()).unwrap();
    (dir, file)
}

#[test]
fn experiment_activations_names_lm_eval_for_a_file_from_lm_activations() {
    let (dir, file) = normal_activations("lm", 200, 3);
    let experiment = |out: &str| {
        let out = mfr_sae()
            .args([
                "experiment",
                "activations",
                "--steps",
                "2",
                "--seeds",
                "1",
                "--lambdas",
                "0",
                "--data",
            ])
            .arg(&file)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = experiment("plain");
    assert!(!plain.contains("lm_eval.py"), "a file of unknown origin: {plain}");
    std::fs::write(dir.join("acts.json"), r#"{"source": "scripts/lm_activations.py"}"#).unwrap();
    let lm = experiment("lm");
    let command = format!("python scripts/lm_eval.py {}", dir.join("lm").display());
    assert!(lm.contains(&command), "{command:?} missing from: {lm}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn experiment_auxk_validation_and_n_flags_reach_every_run_config() {
    let (dir, file) = normal_activations("auxk", 120, 5);
    let d = ACTS_D;
    let out = mfr_sae()
        .args([
            "experiment",
            "activations",
            "--steps",
            "4",
            "--log-every",
            "2",
            "--seeds",
            "1",
        ])
        .args([
            "--lambdas",
            "0,0.5",
            "--auxk",
            "--dead-after",
            "64",
            "--validation",
            "0.2",
            "--n",
            "3",
            "--json",
        ])
        .arg("--data")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 120 rows: 24 held out, 19 of the 96 before them validate.
    assert_eq!(
        (&summary["data"]["train_rows"], &summary["data"]["validation_rows"]),
        (&serde_json::json!(77), &serde_json::json!(19))
    );
    for lambda in ["0", "0.5"] {
        let config = std::fs::read_to_string(dir.join(format!("out/seed-0/lambda-{lambda}/config.json"))).unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        let auxk = &config["sae"]["auxk"];
        assert_eq!(auxk["k_aux"], d / 2, "Gao's d/2 of the file: {auxk}");
        assert_eq!(auxk["dead_after_tokens"], 64.0);
        assert_eq!(config["n_saes"], 3, "--n in the baseline and the MFR arm alike");
    }
    let runs = summary["runs"].as_array().unwrap();
    assert!(runs
        .iter()
        .all(|r| r["validation_mse"].as_array().is_some_and(|v| v.len() == 3)));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_streams_activations_from_a_file_and_folds_the_scale_back_on_export() {
    let dir = scratch("file");
    let (rows, d) = (300, 10);
    let data: Vec<f32> = mfr_sae::rng::Rng::new(8)
        .normals(rows * d)
        .into_iter()
        .map(|v| 5.0 * v as f32)
        .collect();
    let file = npy(&dir, "acts.npy", d, &data);
    // The LM scripts' sidecar: the hook the export records for SAELens.
    std::fs::write(
        dir.join("acts.json"),
        r#"{"saelens": {"model_name": "gpt2", "hook_name": "blocks.0.hook_mlp_out", "context_size": 64, "prepend_bos": false}}"#,
    )
    .unwrap();
    let first = dir.join("run");
    let out = mfr_sae()
        .args("train --steps 4 --log-every 2 --batch 16 --m 20 --k 3 --shuffle-rows 64".split(' '))
        .arg("--data-file")
        .arg(&file)
        .arg("--out")
        .arg(&first)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["ensemble"]["sae"]["d_in"], 10, "d comes from the file");
    assert_eq!(config["data"]["shuffle_rows"], 64);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("saelens/sae-0/cfg.json")).unwrap()).unwrap();
    let scale = cfg["metadata"]["mfr"]["input_scale_folded_back"].as_f64().unwrap();
    assert!(
        (scale - (10f64.sqrt() / (5.0 * 10f64.sqrt()))).abs() < 0.05,
        "scale {scale}: mean norm ≈ 5√d → √d"
    );
    assert_eq!(
        cfg["metadata"]["hook_name"], "blocks.0.hook_mlp_out",
        "from the sidecar"
    );
    for f in ["saelens/sae-1/sparsity.safetensors", "saelens/held_out.npy"] {
        assert!(first.join(f).is_file(), "{f} missing");
    }
    // Re-export from the run's checkpoint in bfloat16, another hook by flag, elsewhere.
    let re = dir.join("re");
    let out = mfr_sae()
        .arg("export")
        .arg(&first)
        .args(["--dtype", "bfloat16", "--hook-name", "blocks.1.hook_mlp_out", "--out"])
        .arg(&re)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg_re: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(re.join("sae-0/cfg.json")).unwrap()).unwrap();
    assert_eq!(
        (
            &cfg_re["dtype"],
            &cfg_re["metadata"]["hook_name"],
            &cfg_re["metadata"]["model_name"]
        ),
        (&"bfloat16".into(), &"blocks.1.hook_mlp_out".into(), &"gpt2".into())
    );
    assert_eq!(cfg_re["metadata"]["mfr"]["trained_steps"], 4);
    let weights = std::fs::read(re.join("sae-0/sae_weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    assert_eq!(st.tensor("W_enc").unwrap().dtype(), safetensors::Dtype::BF16);
    let out = mfr_sae()
        .args(["export", "--dtype", "float8"])
        .arg(&first)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad value is a usage error");
    let again = dir.join("again");
    let out = mfr_sae()
        .args(["train", "--config"])
        .arg(first.join("config.json"))
        .arg("--out")
        .arg(&again)
        .output();
    assert!(out.unwrap().status.success());
    assert_eq!(
        std::fs::read_to_string(first.join("metrics.jsonl")).unwrap(),
        std::fs::read_to_string(again.join("metrics.jsonl")).unwrap()
    );
    let out = mfr_sae()
        .args(["train", "--data-file", "/nonexistent/a.npy"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/a.npy"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_json_has_the_stable_schema_and_times_every_part() {
    let out = mfr_sae()
        .args(["bench", "--shape", "quick", "--reps", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON document");
    assert_eq!(v["tool"], "mfr-sae", "{v}");
    assert!(!v["adapter"]["name"].as_str().unwrap().is_empty(), "{v}");
    assert!(
        v["adapter"]["backend"].is_string() && v["adapter"]["device_type"].is_string(),
        "{v}"
    );
    assert!(v["encoder_matmul_gflops"].as_f64().unwrap() > 0.0, "{v}");
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for name in [
        "step/none",
        "step/match",
        "step/max",
        "encoder_matmul",
        "mfr_similarity_max",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for r in results {
        assert!(r["ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r.get("gflops").is_some() && r["shape"]["d"].is_u64() && r["shape"]["batch"].is_u64(),
            "{r}"
        );
    }
    let quick_step = results.iter().find(|r| r["name"] == "step/none").unwrap();
    assert_eq!(quick_step["shape"]["m"], 128, "{quick_step}");
    assert!(quick_step["steps_per_s"].as_f64().unwrap() > 0.0, "{quick_step}");
}

#[test]
fn bench_refuses_zero_repetitions_by_name() {
    let out = mfr_sae().args(["bench", "--reps", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reps"));
}

/// `mfr-sae experiment synthetic ARGS --steps 2 --json --out DIR` (DIR a fresh temp folder
/// named for `tag`), which must succeed; its folder and the JSON it printed on stdout.
fn synthetic_experiment_json(tag: &str, args: &[&str]) -> (std::path::PathBuf, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("mfr-sae-cli-{tag}-{}", std::process::id()));
    let out = mfr_sae()
        .args(["experiment", "synthetic"])
        .args(args)
        .args(["--steps", "2", "--json", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    (dir, v)
}

#[test]
fn experiment_json_prints_only_the_summary_on_stdout() {
    let (dir, v) = synthetic_experiment_json("exp", &["--seeds", "1", "--lambdas", "0"]);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v, written, "the same summary as summary.json");
    let help = String::from_utf8(mfr_sae().arg("--help").output().unwrap().stdout).unwrap();
    assert!(help.contains("Exit codes") && help.contains("128 + N"), "{help}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn experiment_first_seed_runs_fresh_seeds_and_pairs_them() {
    let (dir, v) = synthetic_experiment_json("first-seed", &["--first-seed", "7", "--seeds", "2", "--lambdas", "0,3"]);
    // Every value under a "seed" key, anywhere in the summary's rows.
    fn seeds(v: &serde_json::Value, found: &mut Vec<u64>) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value.as_u64()) {
                        ("seed", Some(s)) => found.push(s),
                        _ => seeds(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| seeds(i, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    seeds(&v["rows"], &mut found);
    found.sort_unstable();
    found.dedup();
    assert_eq!(found, [7, 8], "the runs are seeds 7 and 8");
    assert_eq!(
        v["experiment"]["first_seed"], 7,
        "the summary records where its seeds start"
    );
    assert!(dir.join("seed-7").is_dir() && dir.join("seed-8").is_dir() && !dir.join("seed-0").exists());
    let text = v.to_string();
    assert!(
        text.contains("\"pairs\":2"),
        "λ 3 is paired with λ 0 on both seeds: {text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
