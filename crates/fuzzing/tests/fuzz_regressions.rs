//! Every fuzz body over every kept input: the crash inputs in `fuzz/regressions/<target>/` (each a bug
//! that was fixed) and the seed corpus in `fuzz/corpus/<target>/seed-*` (docs/fuzzing.md). No EAL.
use std::fs;
use std::path::{Path, PathBuf};

use switchyard_fuzzing::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn run_all(kind: &str, keep: impl Fn(&Path) -> bool) -> usize {
    let mut ran = 0;
    for (name, body) in TARGETS {
        for file in files(&fuzz_dir().join(kind).join(name)).into_iter().filter(|f| keep(f)) {
            let data = fs::read(&file).expect("a readable input");
            println!("{name}: {}", file.display());
            body(&data);
            ran += 1;
        }
    }
    ran
}

#[test]
fn every_kept_crash_input_runs_clean() {
    run_all("regressions", |_| true);
}

#[test]
fn every_seed_runs_clean() {
    let seeds = run_all("corpus", |f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")));
    assert!(seeds >= TARGETS.len(), "every target has a seed ({seeds} seeds)");
}

#[test]
fn every_target_has_a_libfuzzer_binary_and_a_body() {
    let binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|f| Some(f.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    let mut bodies: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    bodies.sort();
    assert_eq!(binaries, bodies);
    assert!(target("wire_parsers").is_some() && target("no_such_target").is_none());
}

#[test]
fn empty_and_tiny_inputs_run_clean() {
    for (_, body) in TARGETS {
        for data in [&[][..], &[0], &[0xff], &[0x80; 3], &[0; 64]] {
            body(data);
        }
    }
}
