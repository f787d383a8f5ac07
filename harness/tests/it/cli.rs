//! The harness's commands as a user runs them: exit codes, refusals, the gate and `recommend`.

use super::*;

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs the harness binary; returns exit code and everything it printed.
pub(crate) fn harness_cmd(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_gate_fails_a_hungrier_configuration_against_the_same_build_and_passes_it_against_itself() {
    let dir = temp_dir("gate");
    let scenario = dir.join("gate.yaml");
    std::fs::write(
        &scenario,
        "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [3]\n  IMPORT_BATCH_SIZE: [50]\n\
         workload:\n  users:\n    - platform: lichess\n      games: 2000\n      limit: 2000\n",
    )
    .expect("scenario");
    let importer = importer_bin();
    let (scenario, importer, out) = (
        scenario.to_string_lossy().into_owned(),
        importer.to_string_lossy().into_owned(),
        dir.join("reports").to_string_lossy().into_owned(),
    );
    let baseline = dir.join("baseline.json").to_string_lossy().into_owned();
    let common = ["--importer", &importer, "--out", &out, "--no-progress"];
    let gate = |extra: &[&str]| {
        let mut args = vec!["gate", scenario.as_str()];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        harness_cmd(&args)
    };

    let (code, text) = gate(&["--baseline", &baseline]);
    assert_eq!(code, Some(2), "no baseline yet is a set-up error: {text}");
    assert!(text.contains("--update-baseline"), "{text}");
    let (code, text) = gate(&["--candidate-set", "IMPORT_BATCH_SIZE=200"]);
    assert_eq!(
        code,
        Some(2),
        "a candidate-only setting needs an A/B gate: {text}"
    );
    assert!(text.contains("--against"), "{text}");

    let (code, text) = gate(&["--baseline", &baseline, "--update-baseline"]);
    assert_eq!(code, Some(0), "{text}");
    let b: harness::analysis::gate::Baseline =
        serde_json::from_slice(&std::fs::read(&baseline).expect("baseline")).expect("json");
    assert!(b.machine.cores >= 1 && b.cells.contains_key("c3-b50-p2000"));

    // A/B in one run: a batch of 10,000 holds every game of an import at once (2,000 games,
    // about 6 MiB) on the candidate side only.
    let (code, text) = gate(&[
        "--against",
        &importer,
        "--candidate-set",
        "IMPORT_BATCH_SIZE=10000",
    ]);
    assert_eq!(code, Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("✗ c3-b50-p2000 peak_anon:"))
        .unwrap_or_default();
    assert!(
        line.contains("against ")
            && line.contains("this build ")
            && line.contains(", p ")
            && line.contains("tolerance ")
            && line.contains("REGRESSION"),
        "the failure names metric, both builds, p-value and tolerance:\n{text}"
    );
    assert!(
        text.contains("would fail this run 4 times in 5"),
        "the gate states its power:\n{text}"
    );
    let decision = std::fs::read_dir(dir.join("reports/gate"))
        .expect("reports")
        .filter_map(Result::ok)
        .map(|e| e.path().join("decision.json"))
        .filter(|p| p.is_file())
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"regression\"")));
    assert!(decision, "decision.json records the regression");

    let (code, text) = gate(&["--against", &importer]);
    assert_eq!(code, Some(0), "the same build against itself passes:\n{text}");
    // A build to compare against that finishes nothing cannot decide: exit 2, not a regression.
    let (code, text) = gate(&["--against", "/bin/true"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("too few to judge"), "{text}");
}

#[test]
fn bad_usage_exits_2_with_a_message_and_starts_nothing() {
    let dir = temp_dir("usage");
    let good = dir.join("ok.yaml");
    std::fs::write(
        &good,
        "budget: 512MB\nworkload:\n  users:\n    - platform: lichess\n      games: 5\n",
    )
    .expect("write");
    let good = good.to_string_lossy().into_owned();
    let missing = dir.join("missing.yaml").to_string_lossy().into_owned();
    let empty = dir.to_string_lossy().into_owned();
    let bad_env = dir.join("deploy.env");
    std::fs::write(&bad_env, "MAX_CONCURRENT_IMPORTS=4\nno equals sign here\n").expect("write");
    let bad_env = bad_env.to_string_lossy().into_owned();
    let capture = |extra: &[&'static str]| -> Vec<String> {
        [
            "capture",
            "--database-url",
            "sqlite:///nonexistent/importer.db",
            "--out",
            "/nonexistent/c.yaml",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let (no_window, long_busiest, long_range) = (
        capture(&[]),
        capture(&["--busiest", "25h"]),
        capture(&["--from", "2026-12-01T00:00:00Z", "--to", "2026-12-02T00:00:01Z"]),
    );
    let mut with_env = capture(&["--busiest", "1h", "--env-file"]);
    with_env.push(bad_env.clone());
    let (no_window, long_busiest, long_range, with_env) = (
        as_strs(&no_window),
        as_strs(&long_busiest),
        as_strs(&long_range),
        as_strs(&with_env),
    );
    let cases: [(&[&str], &str); 16] = [
        (&no_window, "give a window"),
        (&long_busiest, "longer than a day"),
        (&long_range, "longer than a day"),
        (&with_env, "line 2: expected KEY=VALUE"),
        (&["run", &missing], "cannot read"),
        (&["recommend", &good, "--max-wait", "soon"], "a wait such as 60s"),
        (
            &["recommend", &good, "--max-wait", "60s"],
            "set `workload.imports`",
        ),
        (&["run", &good, "--set", "IMPORT_BATCH_SIZE"], "VAR=VALUE"),
        (&["run", &good, "--set", "lower=1"], "environment variable name"),
        (
            &["run", &good, "--set", "IMPORT_BATCH_SIZE=0"],
            "IMPORT_BATCH_SIZE=\"0\": expected an integer in 1..=10000",
        ),
        (
            &["run", &good, "--set", "IMPORT_BATCH_SIZ=50"],
            "did you mean IMPORT_BATCH_SIZE?",
        ),
        (&["run", &good, "--repeats", "-1"], "-1 is not in 1..=50"),
        (&["recommend", &good, "--budget", "lots"], "512MB"),
        (&["recommend", &good, "--budget", "-5MB"], "512MB"),
        (&["compare", &empty, &empty], "results.json"),
        (&["check", &missing], "cannot read"),
    ];
    for (args, expect) in cases {
        let (code, text) = harness_cmd(args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(text.contains(expect), "{args:?} should say {expect:?}: {text}");
    }
    assert!(
        !dir.join("reports").exists() && !std::path::Path::new("reports/ok").exists(),
        "nothing ran"
    );
}

/// The gate holds a scenario's API latency limit: a POST p99 over it fails the gate and says so.
#[test]
fn the_gate_fails_a_cell_whose_post_p99_exceeds_its_limit() {
    let dir = temp_dir("gate-latency");
    let scenario = dir.join("latency.yaml");
    std::fs::write(
        &scenario,
        "budget: 512MB\nrepeats: 1\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [1]\n\
         workload:\n  users:\n    - platform: lichess\n      games: 50\n      limit: 50\n\
         gate:\n  max_post_p99_ms: 0.001\n  max_get_p99_ms: 60000\n",
    )
    .expect("scenario");
    let (scenario, importer, out, baseline) = (
        scenario.to_string_lossy().into_owned(),
        importer_bin().to_string_lossy().into_owned(),
        dir.join("reports").to_string_lossy().into_owned(),
        dir.join("baseline.json").to_string_lossy().into_owned(),
    );
    let (code, text) = harness_cmd(&[
        "gate",
        &scenario,
        "--importer",
        &importer,
        "--out",
        &out,
        "--no-progress",
        "--baseline",
        &baseline,
        "--update-baseline",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("✗ c1-b50-p2000 post_p99") && l.contains("> the scenario's limit 0.0 ms")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("get_p99") && l.contains("Pass")),
        "the GET limit holds: {text}"
    );
    assert!(!Path::new(&baseline).exists(), "a failed run writes no baseline");
}

/// `recommend --max-wait` measures each lane setting at the provider's pace and names the one whose
/// users wait within the limit (exit 0); when none does it says so, with what would help (exit 1).
#[test]
fn recommend_max_wait_names_the_lanes_that_serve_users_in_time() {
    let dir = temp_dir("wait");
    let scenario = dir.join("wait.yaml");
    // Three lichess users of 100 games at 20 games/s: 5 s each. One stream: waits 0, 5, 10 s;
    // two: 0, 0, 5 s. Run 5 times faster: the debug importer's own work, multiplied by the scale,
    // stays well inside the 3 s between 5 s and the 8 s limit.
    std::fs::write(
        &scenario,
        "budget: 512MB\nmatrix:\n  MAX_CONCURRENT_IMPORTS: [2]\n  LICHESS_MAX_STREAMS: [1, 2]\n\
         workload:\n  imports: 3\n  users:\n    - platform: lichess\n      games: 100\n      limit: 100\n\
         upstream:\n  pace_games_per_sec: 20\n  time_scale: 5\n",
    )
    .expect("scenario");
    let (scenario, importer, out) = (
        scenario.to_string_lossy().into_owned(),
        importer_bin().to_string_lossy().into_owned(),
        dir.join("reports").to_string_lossy().into_owned(),
    );
    let args = |wait: &'static str| {
        [
            "recommend",
            &scenario,
            "--importer",
            &importer,
            "--out",
            &out,
            "--no-progress",
            "--no-validate",
            "--max-wait",
            wait,
        ]
        .map(str::to_string)
    };
    let run = |wait| {
        let a = args(wait);
        harness_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, text) = run("8s");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "MAX_CONCURRENT_IMPORTS=2 LICHESS_MAX_STREAMS=2 CHESSCOM_MAX_REQUESTS=1"),
        "{text}"
    );
    assert!(text.contains("p95 wait: predicted 5.0 s, measured"), "{text}");
    let latest = dir.join("reports/wait/latest");
    for f in [
        "recommend-wait.json",
        "queue.svg",
        "wait-vs-config.svg",
        "queue.png",
    ] {
        assert!(latest.join(f).is_file(), "{f} written");
    }
    let summary = std::fs::read_to_string(latest.join("summary.md")).expect("summary");
    assert!(
        summary.contains("## Time") && summary.contains("### Each user"),
        "{summary}"
    );
    let (code, text) = run("1s");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("No configuration meets"), "{text}");
    assert!(text.contains("a lichess token"), "the model's advice: {text}");
}
