//! The Kubernetes manifests in `deploy/kubernetes/`: every resource validates
//! against the Kubernetes API schemas (strict: an unknown or misspelt field
//! fails), through `kubernetes-validate` from PyPI, which `scripts/setup.sh
//! --test` installs in `.venv`; the policy the replicas run passes `watershed
//! policy check`; and the probes and termination match what the gateway does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::process::Command;

use watershed_tests::harness::{binary, python, workspace_root};

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// The resources kustomize applies, plus the example secret.
fn resources() -> Vec<PathBuf> {
    let kustomization = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let mut files: Vec<PathBuf> = kustomization
        .lines()
        .skip_while(|l| l.trim() != "resources:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| deploy_dir().join(l.trim_start().trim_start_matches("- ").trim()))
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    files.push(deploy_dir().join("secret.example.yaml"));
    files
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let validator = python().with_file_name("kubernetes-validate");
    let out = Command::new(&validator)
        .arg("--strict")
        .args(resources())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        resources().len(),
        "{text}"
    );
}

#[test]
fn the_replicas_policy_passes_policy_check() {
    let out = Command::new(binary().unwrap())
        .args(["policy", "check"])
        .arg(deploy_dir().join("watershed.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn probes_and_termination_match_the_gateway() {
    let d = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    for needle in [
        "path: /readyz",
        "path: /healthz",
        "--listen\", \"0.0.0.0:8080\"",
        "terminationGracePeriodSeconds:",
        "name: watershed-secrets",
        "name: watershed-policy",
    ] {
        assert!(d.contains(needle), "deployment.yaml lacks {needle:?}");
    }
    let policy = std::fs::read_to_string(deploy_dir().join("watershed.yaml")).unwrap();
    // The database password comes from the secret, never from the policy file.
    assert!(policy.contains("url_env: WATERSHED_LEDGER_URL"));
    // The journal lives on a writable volume of the pod, and the gateway's
    // own stop bound fits in the pod's grace period after the preStop pause.
    assert!(policy.contains("journal: { dir: /var/lib/watershed/journal }"));
    assert!(
        d.contains("mountPath: /var/lib/watershed\n"),
        "journal volume"
    );
    let number_after = |text: &str, key: &str| -> u64 {
        let at = text.find(key).unwrap_or_else(|| panic!("no {key}")) + key.len();
        text[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let grace_ms = number_after(&policy, "shutdown_grace_ms:");
    let pod_s = number_after(&d, "terminationGracePeriodSeconds:");
    let pre_stop_s = number_after(&d, "seconds:");
    assert!(
        grace_ms / 1000 + pre_stop_s < pod_s,
        "shutdown_grace_ms {grace_ms} + preStop {pre_stop_s} s must fit in {pod_s} s"
    );
    let secret = std::fs::read_to_string(deploy_dir().join("secret.example.yaml")).unwrap();
    assert!(secret.contains("WATERSHED_LEDGER_URL:"));
}
