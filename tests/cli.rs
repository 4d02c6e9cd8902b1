//! The native binary as a user meets it: `info`, and failures that are one
//! clear sentence with a non-zero exit code and no panic.

use std::process::Command;

fn mfr_sae() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mfr-sae"))
}

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
    ] {
        let out = mfr_sae().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
