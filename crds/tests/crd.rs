//! The checked-in CRD equals the generator, the schema accepts the samples
//! and refuses bad specs (OpenAPI structure and CEL rules), and defaults
//! make what is stored equal to what was written plus the documented defaults.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kube::CustomResourceExt;
use phlox_crds::v1alpha1::PyroscopeCluster;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn checked_in_crds_match_the_generator() {
    let generated = phlox_crds::crd_yaml();
    for path in [
        repo().join("crds").join(phlox_crds::CRD_FILE),
        repo().join("charts/phlox-operator/crds").join(phlox_crds::CRD_FILE),
    ] {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == generated, "{} differs from `phlox-operator crd`; run `make crds`", path.display());
    }
}

/// The openAPIV3Schema as plain JSON Schema: `nullable` becomes a null type.
fn json_schema() -> Value {
    fn convert(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.get("nullable") == Some(&Value::Bool(true))
                    && let Some(Value::String(t)) = m.get("type").cloned()
                {
                    m.insert("type".into(), json!([t, "null"]));
                }
                m.remove("nullable");
                for (_, x) in m.iter_mut() {
                    convert(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(convert),
            _ => {}
        }
    }
    let crd = PyroscopeCluster::crd();
    let mut schema =
        serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap())
            .unwrap();
    convert(&mut schema);
    schema
}

/// What the API server would say: structure first, then CEL rules on the
/// defaulted object.
fn admit(doc: &Value) -> Result<PyroscopeCluster, String> {
    let validator = jsonschema::validator_for(&json_schema()).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let cr: PyroscopeCluster = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    kube::core::cel::validate_cel(&cr).map_err(|e| format!("{e:?}"))?;
    Ok(cr)
}

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "phlox.dev/v1alpha1", "kind": "PyroscopeCluster", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
}

fn s3() -> Value {
    json!({"backend": "s3", "bucket": "b"})
}

#[test]
fn samples_are_admitted() {
    let dir = repo().join("config/samples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains("pyroscopecluster") {
            continue;
        }
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cr = admit(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!cr.spec.storage.bucket.is_empty());
        n += 1;
    }
    assert_eq!(n, 3, "every sample checked");
}

#[test]
fn bad_specs_are_refused_with_a_message_naming_the_problem() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"storage": s3(), "metastore": {"voters": 2}}), "odd"),
        (json!({"storage": s3(), "metastore": {"voters": 7}}), "maximum"),
        (
            json!({"storage": s3(), "queryBackend": {"autoscaling": {"enabled": true, "minReplicas": 5, "maxReplicas": 2}}}),
            "minReplicas must not exceed",
        ),
        (
            json!({"storage": s3(), "segmentWriter": {"autoscaling": {"minReplicas": 20}}}),
            "minReplicas must not exceed",
        ),
        (json!({"storage": {"backend": "ftp", "bucket": "b"}}), "ftp"),
        (json!({"storage": {"backend": "s3"}}), "bucket is required"),
        (json!({"storage": {"backend": "azure", "bucket": "c"}}), "azureAccount"),
        (json!({"storage": {"backend": "filesystem"}}), "filesystemClaimName"),
        (json!({"storage": s3(), "distributor": {"replicas": -1}}), "minimum"),
        (json!({"storage": s3(), "metastore": {"storage": {"size": "ten gigs"}}}), "does not match"),
        (json!({"storage": s3(), "retention": {"period": "forever"}}), "does not match"),
        (json!({"storage": s3(), "limits": {"ingestionRateMb": -1}}), "minimum"),
        (json!({"storage": s3(), "imagePullPolicy": "Sometimes"}), "Sometimes"),
        (json!({"storage": s3(), "queryBackend": {"replicas": "two"}}), "integer"),
        (json!({}), "storage"),
    ];
    for (spec, why) in cases {
        let err = admit(&cr(spec.clone())).expect_err(&format!("{spec} should be refused"));
        assert!(err.contains(why), "{spec}: {err} should mention {why:?}");
    }
}

#[test]
fn defaults_fill_what_the_user_did_not_write() {
    let cr = admit(&cr(json!({"storage": s3()}))).unwrap();
    let stored = serde_json::to_value(&cr.spec).unwrap();
    assert_eq!(stored["image"], phlox_crds::v1alpha1::DEFAULT_IMAGE);
    assert_eq!(stored["imagePullPolicy"], "IfNotPresent");
    assert_eq!(stored["metastore"]["voters"], 1);
    assert_eq!(stored["metastore"]["storage"]["size"], "10Gi");
    assert_eq!(stored["queryBackend"]["replicas"], 1);
    assert_eq!(stored["queryBackend"]["autoscaling"]["enabled"], false);
    assert_eq!(stored["queryBackend"]["autoscaling"]["maxReplicas"], 10);
    assert_eq!(stored["queryBackend"]["autoscaling"]["scaleDownStabilizationWindowSeconds"], 300);
    assert_eq!(stored["retention"]["period"], "31d");
    assert_eq!(stored["multitenancyEnabled"], false);
    // The schema carries the same defaults, so the API server stores them.
    let schema = json_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["image"]["default"], phlox_crds::v1alpha1::DEFAULT_IMAGE);
    assert_eq!(spec["metastore"]["properties"]["voters"]["default"], 1);
    assert_eq!(spec["queryBackend"]["properties"]["autoscaling"]["properties"]["maxReplicas"]["default"], 10);
    assert_eq!(spec["retention"]["properties"]["period"]["default"], "31d");
}

#[test]
fn the_crd_has_the_names_columns_and_status_kubectl_shows() {
    let crd = PyroscopeCluster::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("pyroscopeclusters.phlox.dev"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["pyc".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["phlox".to_owned()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<&str> = v.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, vec!["Ready", "Components", "Reason", "Writers", "Backends", "Version", "Age"]);
}
