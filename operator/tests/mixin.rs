//! The mixin: the committed dashboards are what `operator/src/mixin.rs`
//! generates, the chart ships the same files, and every alert passes
//! `promtool check rules` and has a promtool test case that fires and one
//! that stays quiet (`promtool test rules`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_dashboards_and_the_charts_copies_are_generated_ones() {
    let generated = phlox_operator::mixin::dashboard_files();
    assert_eq!(generated.len(), 4);
    for dir in ["config/mixin", "charts/phlox-operator/mixin"] {
        for (name, text) in &generated {
            let path = repo().join(dir).join("dashboards").join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(committed == *text, "{} differs from the generated dashboard: run `make mixin`", path.display());
            let d: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(!d["panels"].as_array().unwrap().is_empty());
            for p in d["panels"].as_array().unwrap() {
                assert!(!p["description"].as_str().unwrap().is_empty(), "{name}: a panel without its question");
            }
        }
        let alerts = std::fs::read_to_string(repo().join(dir).join("alerts.yaml")).unwrap();
        assert_eq!(alerts, phlox_operator::mixin::ALERTS, "{dir}/alerts.yaml: run `make mixin`");
    }
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("config/mixin"))
        .output()
        .unwrap_or_else(|e| panic!("promtool (Debian package prometheus; `make test` installs it): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn every_alert_passes_promtool_and_has_a_firing_and_a_quiet_test() {
    let checked = promtool(&["check", "rules", "alerts.yaml"]);
    let alerts: serde_yaml::Value = serde_yaml::from_str(phlox_operator::mixin::ALERTS).unwrap();
    let names: Vec<String> = alerts["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    assert!(checked.contains(&format!("SUCCESS: {} rules found", names.len())), "{checked}");

    promtool(&["test", "rules", "alerts.test.yaml"]);
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("config/mixin/alerts.test.yaml")).unwrap()).unwrap();
    for name in &names {
        let cases: Vec<bool> = tests["tests"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
            .filter(|c| c["alertname"].as_str() == Some(name))
            .map(|c| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()))
            .collect();
        assert!(cases.contains(&true), "{name}: no promtool case where it fires");
        assert!(cases.contains(&false), "{name}: no promtool case where it stays quiet");
    }
}
