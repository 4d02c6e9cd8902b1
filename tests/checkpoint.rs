//! Checkpoints as a user meets them: `mfr-sae train` killed (SIGKILL) or
//! interrupted (SIGINT) at seeded random moments and resumed with `--resume`
//! ends with the same metrics, summary and exported weights, byte for byte, as a
//! run never interrupted; damaged checkpoints are refused naming the file.

mod common;

use common::{mfr_sae, npy, scratch};
use mfr_sae::data::activations::{write_npy, ChunkReader, Shuffler};
use mfr_sae::data::{Rows, Source};
use mfr_sae::rng::Rng;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// A tiny synthetic run that exercises every piece of state: 2 SAEs with the Match
/// form refreshed off the log grid, AuxK's firing clock, reinits, lr warm-up and decay.
const TINY: &str = "--d 8 --features 16 --groups 2 --group-size 8 --active 3 --m 16 --k 3 --n 2 \
    --batch 16 --steps 200 --log-every 4 --checkpoint-every 4 --match-every 7 --warmup 10 --reinit \
    --reinit-threshold 0.8 --auxk --dead-after 200 --lr-warmup 10 --lr-decay 30";

/// `TINY`'s flags.
fn tiny() -> Vec<&'static str> {
    TINY.split_whitespace().collect()
}

/// The files a finished run leaves that must not depend on interruptions.
const COMPARED: &[&str] = &[
    "config.json",
    "metrics.jsonl",
    "events.jsonl",
    "summary.json",
    "saelens/sae-0/cfg.json",
    "saelens/sae-0/sae_weights.safetensors",
    "saelens/sae-1/cfg.json",
    "saelens/sae-1/sae_weights.safetensors",
];

fn assert_same_run(a: &Path, b: &Path) {
    for f in COMPARED {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{f} differs between {} and {}", a.display(), b.display());
    }
}

fn run_to_end(args: &[&str], out: &Path) {
    let status = mfr_sae()
        .arg("train")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
}

/// Starts the run (or resumes it once its folder has a config.json), stdout piped.
fn start(args: &[&str], out: &Path) -> Child {
    let mut cmd = mfr_sae();
    cmd.arg("train");
    if out.join("config.json").exists() {
        cmd.arg("--resume").arg(out);
    } else {
        cmd.args(args).arg("--out").arg(out);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Forwards the child's stdout lines that report a logged step (`[λ=… seed …] step …`
/// in experiments).
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, recv) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let logged = line.starts_with("step") || line.starts_with("[λ=");
            if logged && send.send(line).is_err() {
                break;
            }
        }
    });
    recv
}

/// The most an interruption waits after a log line: enough to land mid-step or
/// mid-checkpoint, little enough that each attempt leaves work for the next.
const MAX_SLEEP_MS: usize = 10;

#[derive(Clone, Copy)]
enum Interrupt {
    /// SIGKILL: no chance to clean up.
    Kill,
    /// SIGINT (Ctrl-C) and SIGTERM: checkpoint at the end of the log window, exit 128 + signal.
    Int,
    Term,
}

/// Interrupts the run `interruptions` times, each after a seeded random number of
/// log lines and a seeded random few milliseconds (so a kill may land mid-step,
/// mid-log or mid-checkpoint), resuming each time, then lets it finish.
/// Interrupts the run with each of `interrupts` in turn, each after a seeded random
/// number (1 to `max_lines`) of log lines and a seeded random few milliseconds (so
/// that one may land mid-step, mid-log or mid-checkpoint), resuming each time with
/// `start`, then lets it finish. After SIGINT, stderr must contain `hint`.
fn interrupted_run(start: &dyn Fn() -> Child, max_lines: usize, hint: &str, interrupts: &[Interrupt], seed: u64) {
    let mut rng = Rng::new(seed);
    for (done, &how) in interrupts.iter().enumerate() {
        let mut child = start();
        let lines = log_lines(&mut child);
        let wait_lines = 1 + rng.below(max_lines);
        let logged = (0..wait_lines).all(|_| lines.recv_timeout(Duration::from_secs(60)).is_ok());
        std::thread::sleep(Duration::from_millis(rng.below(MAX_SLEEP_MS) as u64));
        if !logged || child.try_wait().unwrap().is_some() {
            let end = child.wait_with_output().unwrap();
            panic!(
                "the run ended ({}) before interruption {done}: {}",
                end.status,
                String::from_utf8_lossy(&end.stderr)
            );
        }
        let signal = match how {
            Interrupt::Kill => None,
            Interrupt::Int => Some(("-INT", 130)),
            Interrupt::Term => Some(("-TERM", 143)),
        };
        match signal {
            None => child.kill().unwrap(),
            Some((flag, _)) => {
                let sent = Command::new("kill").arg(flag).arg(child.id().to_string()).status();
                assert!(sent.unwrap().success());
            }
        }
        let result = child.wait_with_output().unwrap();
        if let Some((_, code)) = signal {
            let stderr = String::from_utf8_lossy(&result.stderr);
            assert_eq!(result.status.code(), Some(code), "{stderr}");
            assert!(stderr.contains(hint), "the message says how to resume: {stderr}");
        }
    }
    let last = start().wait_with_output().unwrap();
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
}

/// The uninterrupted `TINY` run, made once for the tests that compare with it.
fn tiny_whole() -> &'static Path {
    static WHOLE: OnceLock<PathBuf> = OnceLock::new();
    WHOLE.get_or_init(|| {
        let out = scratch("whole").join("run");
        run_to_end(&tiny(), &out);
        out
    })
}

#[test]
fn a_run_killed_at_random_moments_and_resumed_equals_an_uninterrupted_one() {
    let dir = scratch("kill");
    let out = dir.join("killed");
    interrupted_run(&|| start(&tiny(), &out), 8, "", &[Interrupt::Kill; 5], 11);
    assert_same_run(tiny_whole(), &out);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_batch_topk_run_killed_and_resumed_keeps_its_threshold_and_equals_an_uninterrupted_one() {
    // The exported weights hold the threshold, so they differ unless it was checkpointed.
    let dir = scratch("batch-topk");
    let args: Vec<&str> = tiny().into_iter().chain(["--batch-topk"]).collect();
    let (whole, out) = (dir.join("whole"), dir.join("killed"));
    run_to_end(&args, &whole);
    interrupted_run(&|| start(&args, &out), 8, "", &[Interrupt::Kill], 13);
    assert_same_run(&whole, &out);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_run_stopped_by_sigint_checkpoints_exits_130_and_resumes_to_the_same_bytes() {
    let dir = scratch("sigint");
    let out = dir.join("stopped");
    let hint = format!("mfr-sae train --resume {}", out.display());
    interrupted_run(&|| start(&tiny(), &out), 8, &hint, &[Interrupt::Int; 5], 12);
    assert_same_run(tiny_whole(), &out);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_file_data_run_resumes_exactly_across_buffer_refills_and_epochs() {
    let dir = scratch("file");
    let (rows, d) = (150, 8);
    let data: Vec<f32> = Rng::new(3).normals(rows * d).into_iter().map(|v| v as f32).collect();
    let file = npy(&dir, "acts.npy", d, &data);
    let file = file.display().to_string();
    // 60 steps × 16 rows = 960 rows: over 6 epochs of the file through a 40-row buffer.
    let args = [
        "--data-file",
        &file,
        "--shuffle-rows",
        "40",
        "--m",
        "16",
        "--k",
        "3",
        "--batch",
        "16",
        "--steps",
        "60",
        "--log-every",
        "3",
        "--checkpoint-every",
        "3",
        "--match-every",
        "5",
    ];
    run_to_end(&args, &dir.join("whole"));
    let out = dir.join("killed");
    interrupted_run(&|| start(&args, &out), 8, "", &[Interrupt::Kill], 13);
    assert_same_run(&dir.join("whole"), &dir.join("killed"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_experiment_killed_interrupted_and_terminated_resumes_its_runs_to_the_same_bytes() {
    let dir = scratch("experiment");
    let (rows, d) = (120, 8);
    let data: Vec<f32> = Rng::new(4).normals(rows * d).into_iter().map(|v| v as f32).collect();
    let file = npy(&dir, "acts.npy", d, &data);
    // 2 λ × 4 seeds, 30 steps each logged every 10 (--steps sets log_every = steps / 3).
    let experiment = |out: &Path, resume: bool| {
        let mut cmd = mfr_sae();
        cmd.args("experiment activations --seeds 4 --steps 30 --checkpoint-every 10".split(' '))
            .arg("--data")
            .arg(&file)
            .arg("--out")
            .arg(out);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let whole = dir.join("whole");
    let done = experiment(&whole, false).output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let out = dir.join("interrupted");
    let start = || {
        let mut cmd = experiment(&out, out.exists());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    // One log line to wait for, about 3 logs an attempt: 3 attempts stay within the
    // 24 logs of the 8 runs.
    let hint = "Continue with the same command and --resume";
    let (kill, int, term) = (Interrupt::Kill, Interrupt::Int, Interrupt::Term);
    interrupted_run(&start, 1, hint, &[kill, int, term], 14);
    let summary = |d: &Path| std::fs::read(d.join("summary.json")).unwrap();
    assert!(summary(&whole) == summary(&out), "the experiment summaries differ");
    for run in [
        "seed-0/lambda-0",
        "seed-0/lambda-0.005",
        "seed-1/lambda-0",
        "seed-1/lambda-0.005",
    ] {
        for f in ["config.json", "metrics.jsonl", "events.jsonl", "summary.json"] {
            let (a, b) = (
                std::fs::read(whole.join(run).join(f)),
                std::fs::read(out.join(run).join(f)),
            );
            assert!(a.unwrap() == b.unwrap(), "{run}/{f} differs");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `train --resume` on `out`: its exit code and stderr.
fn resume(out: &Path) -> (Option<i32>, String) {
    let r = mfr_sae().args(["train", "--resume"]).arg(out).output().unwrap();
    (r.status.code(), String::from_utf8_lossy(&r.stderr).into_owned())
}

#[test]
fn a_damaged_or_foreign_checkpoint_is_refused_naming_the_file() {
    let dir = scratch("damaged");
    let out = dir.join("run");
    let short = [
        "--d",
        "8",
        "--m",
        "16",
        "--k",
        "3",
        "--batch",
        "8",
        "--steps",
        "8",
        "--log-every",
        "4",
    ];
    run_to_end(&short, &out);
    let ck = out.join("checkpoint");
    let tensors = ck.join("tensors.safetensors");
    let whole = std::fs::read(&tensors).unwrap();

    std::fs::write(&tensors, &whole[..whole.len() / 2]).unwrap();
    let (code, err) = resume(&out);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&tensors.display().to_string()) && err.contains("complete"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(&tensors, &whole).unwrap();

    let config = out.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, original.replacen("\"lr\": 0.01", "\"lr\": 0.02", 1)).unwrap();
    let (code, err) = resume(&out);
    assert_eq!(code, Some(1), "{err}");
    let state = ck.join("state.json").display().to_string();
    assert!(err.contains(&state) && err.contains("another configuration"), "{err}");
    std::fs::write(&config, &original).unwrap();

    let (code, err) = resume(&out);
    assert_eq!(
        code,
        Some(0),
        "the restored checkpoint resumes (after its last step): {err}"
    );
    let prev = out.join("checkpoint.prev");
    std::fs::rename(&ck, &prev).unwrap();
    let (code, err) = resume(&out);
    assert_eq!(
        code,
        Some(0),
        "a crash between the two renames leaves checkpoint.prev, which resumes: {err}"
    );
    std::fs::rename(&prev, &ck).unwrap();
    std::fs::write(ck.join("state.json"), "{\"format\": 1").unwrap();
    let (code, err) = resume(&out);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&state) && err.contains("damaged"), "{err}");

    let (code, err) = resume(&dir.join("never-started"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("config.json") && err.contains("--out"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_shuffling_buffer_and_in_memory_rows_continue_exactly_from_their_state() {
    let (rows, d) = (37, 3);
    let data: Vec<f32> = (0..rows * d).map(|i| i as f32).collect();
    let npy = write_npy(d, &data).unwrap();
    let open = || {
        let reader = ChunkReader::open("rows.npy", std::io::Cursor::new(npy.clone()), None).unwrap();
        Shuffler::new(reader, 10, 5).unwrap().with_scale(2.0)
    };
    let mut sources: [(Box<dyn Source>, Box<dyn Source>); 2] = [
        (Box::new(open()), Box::new(open())),
        (
            Box::new(Rows::new(data.clone(), d, 5).unwrap()),
            Box::new(Rows::new(data.clone(), d, 5).unwrap()),
        ),
    ];
    for (a, b) in &mut sources {
        for batch in [1, 7, 4, 30] {
            a.next_batch(batch).unwrap();
            let state = a.state().expect("the source has a state");
            b.restore(&state).unwrap();
            assert_eq!(
                a.next_batch(23).unwrap(),
                b.next_batch(23).unwrap(),
                "after a batch of {batch}"
            );
        }
    }
    let mut s = open();
    let mut bad = s.state().unwrap();
    bad.rows = vec![0; 11];
    assert!(s.restore(&bad).is_err(), "more rows than the buffer holds");
    bad.rows = vec![rows as u64];
    assert!(s.restore(&bad).is_err(), "a row past the file");
}
