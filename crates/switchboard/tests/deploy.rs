//! The deployment files under `deploy/`: the container image's Dockerfile, its default
//! config and the Kubernetes manifests (base and `cluster` overlay).
//!
//! Linted with real linters that `scripts/install-interop` installs from PyPI into
//! `$SWITCHBOARD_TOOLS_DIR/lint`: `kubernetes-validate --strict` (the manifests against the
//! Kubernetes OpenAPI schemas it bundles, unknown fields rejected) and `hadolint` (the
//! Dockerfile). No Docker daemon and no cluster are needed: the image is not built here
//! and nothing is applied. Then the wiring the linters cannot see: probes on the paths the
//! gateway serves, the config mounted where the container reads it (and hot-reloadable),
//! Secret keys that exist, the autoscaler aimed at the Deployment, Redis for replicas > 1,
//! and every config the files carry accepted by the real `switchboard check-config` and
//! served by the real gateway.
//!
//! Like the interop tier, a missing linter skips these tests, unless
//! `SWITCHBOARD_INTEROP=1` (CI, which installs them first) makes it a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use switchboard_testkit::spawn_gateway_http_at;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN_TOKEN: &str = "deploy-test-admin-token-0123456789";

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The linters from `scripts/install-interop`.
struct Linters {
    /// The lint venv's Python (with PyYAML, a dependency of kubernetes-validate).
    python: PathBuf,
    kubernetes_validate: PathBuf,
    hadolint: PathBuf,
}

impl Linters {
    /// The linters, or `None` (after saying why) when the test should skip.
    fn locate() -> Option<Linters> {
        let setting = std::env::var("SWITCHBOARD_INTEROP").unwrap_or_default();
        if setting == "0" {
            eprintln!("skipping deploy lint test: SWITCHBOARD_INTEROP=0");
            return None;
        }
        let dir = std::env::var_os("SWITCHBOARD_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_default();
                Path::new(&home).join(".cache/switchboard/tools")
            });
        match Linters::load(&dir) {
            Ok(linters) => Some(linters),
            Err(reason) if setting == "1" => {
                panic!("SWITCHBOARD_INTEROP=1 but {reason}; run scripts/install-interop")
            }
            Err(reason) => {
                eprintln!(
                    "skipping deploy lint test: {reason}; run scripts/install-interop \
                     (SWITCHBOARD_INTEROP=1 turns this into a failure)"
                );
                None
            }
        }
    }

    fn load(dir: &Path) -> Result<Linters, String> {
        let env_file = dir.join("tools.env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|error| format!("cannot read {}: {error}", env_file.display()))?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let path = |key: &str| -> Result<PathBuf, String> {
            let value = vars
                .get(key)
                .ok_or_else(|| format!("{} does not set {key}", env_file.display()))?;
            let path = PathBuf::from(value);
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("{key}={value} does not exist"))
            }
        };
        Ok(Linters {
            python: path("LINT_PYTHON")?,
            kubernetes_validate: path("LINT_KUBERNETES_VALIDATE")?,
            hadolint: path("LINT_HADOLINT")?,
        })
    }

    /// Every document of a YAML file, as JSON (PyYAML's safe loader).
    fn yaml(&self, file: &Path) -> Vec<Value> {
        let output = Command::new(&self.python)
            .args([
                "-c",
                "import json, sys, yaml\n\
                 docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                 print(json.dumps(docs))",
            ])
            .arg(file)
            .output()
            .expect("run python");
        assert!(
            output.status.success(),
            "{} is not YAML: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("json from python")
    }

    /// Runs `kubernetes-validate --strict` on files: (success, combined output).
    fn validate(&self, files: &[PathBuf]) -> (bool, String) {
        let output = Command::new(&self.kubernetes_validate)
            .args(["--strict", "--no-warn"])
            .args(files)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }
}

/// One kustomization's directory, its `resources` (files, with `../` bases followed) and
/// its `patches`.
struct Kustomization {
    resources: Vec<PathBuf>,
    patches: Vec<PathBuf>,
}

fn kustomization(linters: &Linters, dir: &Path) -> Kustomization {
    let docs = linters.yaml(&dir.join("kustomization.yaml"));
    let doc = &docs[0];
    assert_eq!(doc["kind"], "Kustomization", "{}", dir.display());
    let mut resources = Vec::new();
    for entry in doc["resources"].as_array().expect("resources") {
        let path = dir.join(entry.as_str().expect("resource path"));
        if path.is_dir() {
            resources.extend(kustomization(linters, &path).resources);
        } else {
            assert!(
                path.is_file(),
                "{} lists a missing {}",
                dir.display(),
                path.display()
            );
            resources.push(path);
        }
    }
    let patches = doc["patches"]
        .as_array()
        .map(|patches| {
            patches
                .iter()
                .map(|patch| dir.join(patch["path"].as_str().expect("patch path")))
                .collect()
        })
        .unwrap_or_default();
    Kustomization { resources, patches }
}

/// Every Kubernetes object of a list of files.
fn load_objects(linters: &Linters, files: &[PathBuf]) -> Vec<Value> {
    files.iter().flat_map(|file| linters.yaml(file)).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn base_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

fn cluster_dir() -> PathBuf {
    deploy_dir().join("kubernetes/cluster")
}

#[test]
fn deploy_manifests_pass_kubernetes_validate_strict() {
    let Some(linters) = Linters::locate() else {
        return;
    };
    let cluster = kustomization(&linters, &cluster_dir());
    // The cluster overlay includes the base, so this is every manifest.
    assert!(cluster.resources.len() >= 8, "{:?}", cluster.resources);
    let (ok, output) = linters.validate(&cluster.resources);
    assert!(ok, "kubernetes-validate failed:\n{output}");
    for file in &cluster.resources {
        assert!(
            output.contains(&file.display().to_string()),
            "{} not validated:\n{output}",
            file.display()
        );
    }

    // The linter is not a no-op: a misspelt field in a copy of the Deployment fails it.
    let text = std::fs::read_to_string(base_dir().join("deployment.yaml")).unwrap();
    assert!(text.contains("readinessProbe:"));
    let broken = tempfile::tempdir().unwrap();
    let broken_file = broken.path().join("deployment.yaml");
    std::fs::write(
        &broken_file,
        text.replace("readinessProbe:", "readynessProbe:"),
    )
    .unwrap();
    let (ok, output) = linters.validate(&[broken_file]);
    assert!(!ok, "a misspelt field passed:\n{output}");
    assert!(output.contains("readynessProbe"), "{output}");
}

#[test]
fn deploy_dockerfile_passes_hadolint_and_runs_non_root() {
    let Some(linters) = Linters::locate() else {
        return;
    };
    let dockerfile = deploy_dir().join("Dockerfile");
    let output = Command::new(&linters.hadolint)
        .arg(&dockerfile)
        .output()
        .expect("run hadolint");
    assert!(
        output.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the linter does not judge: a multi-stage build whose last stage runs as a
    // numeric non-root user and reads the default config it ships.
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("FROM "))
        .map(|(index, _)| index)
        .collect();
    assert!(stages.len() >= 2, "not a multi-stage build");
    let runtime = &instructions[*stages.last().unwrap()..];
    let user = runtime
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "the runtime runs as root");
    assert!(
        runtime.iter().any(|line| line.starts_with("COPY")
            && line.contains("deploy/switchboard.toml /etc/switchboard/switchboard.toml")),
        "the default config is not copied"
    );
    assert!(text.contains("SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml"));
    assert!(deploy_dir().join("switchboard.toml").is_file());
}

/// `switchboard check-config` on a config text: (success, output).
fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(GATEWAY)
        .arg("check-config")
        .arg(&path)
        .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:6379")
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn configmap_config(linters: &Linters, file: &Path) -> String {
    let docs = linters.yaml(file);
    let configmap = find(&docs, "ConfigMap", "switchboard-config");
    configmap["data"]["switchboard.toml"]
        .as_str()
        .expect("switchboard.toml in the ConfigMap")
        .to_owned()
}

#[test]
fn deploy_configs_pass_check_config() {
    let Some(linters) = Linters::locate() else {
        return;
    };
    let image_default = std::fs::read_to_string(deploy_dir().join("switchboard.toml")).unwrap();
    let (ok, output) = check_config(&image_default);
    assert!(ok, "the image's default config: {output}");

    let base = configmap_config(&linters, &base_dir().join("configmap.yaml"));
    let (ok, output) = check_config(&base);
    assert!(ok, "the base ConfigMap's config: {output}");

    let cluster = configmap_config(&linters, &cluster_dir().join("configmap-patch.yaml"));
    assert!(
        cluster.contains("[cluster]"),
        "the cluster config uses Redis"
    );
    let (ok, output) = check_config(&cluster);
    assert!(ok, "the cluster ConfigMap's config: {output}");
}

#[test]
fn deploy_manifests_wire_probes_config_secrets_and_scaling() {
    let Some(linters) = Linters::locate() else {
        return;
    };
    let base = kustomization(&linters, &base_dir());
    let objects = load_objects(&linters, &base.resources);
    let deployment = find(&objects, "Deployment", "switchboard");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for (key, value) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[key], value, "the selector does not match the pod");
    }
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz");
    // The drain must fit in the grace period: drain_timeout_ms plus the preStop pause.
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let drain_ms: u64 =
        load_objects(&linters, &[base_dir().join("configmap.yaml")])[0]["data"]["switchboard.toml"]
            .as_str()
            .unwrap()
            .lines()
            .find_map(|line| line.trim().strip_prefix("drain_timeout_ms = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .expect("drain_timeout_ms in the ConfigMap");
    assert!(
        grace * 1000 > drain_ms + pause * 1000,
        "grace {grace} s, drain {drain_ms} ms"
    );
    let port = &container["ports"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], port["name"]);
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], port["name"]);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);

    // The Service sends to the named port of these pods.
    let service = find(&objects, "Service", "switchboard");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port["name"]);
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "the Service does not select the pod");
    }

    // The config: the ConfigMap mounted as a directory (a subPath mount never sees
    // updates, so hot reload would silently stop), at the path `--config` names.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|arg| *arg == "--config").unwrap() + 1];
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|volume| volume["configMap"]["name"] == "switchboard-config")
        .expect("the ConfigMap is a volume");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mount| mount["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount is never updated"
    );
    let configmap = find(&objects, "ConfigMap", "switchboard-config");
    let mount_path = mount["mountPath"].as_str().unwrap();
    let key = config_path
        .strip_prefix(mount_path)
        .map(|rest| rest.trim_start_matches('/'))
        .expect("--config is inside the ConfigMap mount");
    assert!(
        configmap["data"][key].is_string(),
        "the ConfigMap has no {key}"
    );

    // Every Secret key referred to exists in the example Secret.
    let secret = find(&objects, "Secret", "switchboard-secrets");
    let mut references = 0;
    for variable in container["env"].as_array().unwrap() {
        let reference = &variable["valueFrom"]["secretKeyRef"];
        if reference.is_null() {
            continue;
        }
        references += 1;
        assert_eq!(reference["name"], "switchboard-secrets");
        let key = reference["key"].as_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "the Secret has no {key}"
        );
        // The config reads the variable: `${NAME}` appears in it.
        let name = variable["name"].as_str().unwrap();
        let used = configmap["data"][config_key(configmap)]
            .as_str()
            .unwrap()
            .contains(&format!("${{{name}}}"))
            || name == "SWITCHBOARD_SECRETS_KEY";
        assert!(
            used,
            "{name} is set from the Secret but the config never reads it"
        );
    }
    assert!(references >= 1);

    // The cluster overlay: the autoscaler scales this Deployment from two replicas, and
    // every replica reaches the Redis Service the overlay adds.
    let cluster = kustomization(&linters, &cluster_dir());
    let cluster_objects = load_objects(&linters, &cluster.resources);
    let hpa = find(&cluster_objects, "HorizontalPodAutoscaler", "switchboard");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "switchboard");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let redis = find(&cluster_objects, "Service", "switchboard-redis");
    let redis_port = redis["spec"]["ports"][0]["port"].as_u64().unwrap();
    let patches = load_objects(&linters, &cluster.patches);
    let patch = find(&patches, "Deployment", "switchboard");
    assert!(patch["spec"]["replicas"].as_u64().unwrap() >= 2);
    let redis_url = patch["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variable| variable["name"] == "SWITCHBOARD_REDIS_URL")
        .expect("the replicas get the Redis URL")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(redis_url, format!("redis://switchboard-redis:{redis_port}"));
    let cluster_config = find(&patches, "ConfigMap", "switchboard-config");
    assert!(
        cluster_config["data"]["switchboard.toml"]
            .as_str()
            .unwrap()
            .contains("redis = \"${SWITCHBOARD_REDIS_URL}\"")
    );
    // A patch only changes objects the base has.
    for patch in &patches {
        let kind = patch["kind"].as_str().unwrap();
        let name = patch["metadata"]["name"].as_str().unwrap();
        find(&objects, kind, name);
    }
}

fn config_key(configmap: &Value) -> &str {
    configmap["data"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .expect("a ConfigMap key")
}

/// The ConfigMap's config, run by the real gateway: the probe paths the Deployment names
/// answer, and the Service's names pass the DNS-rebinding check while others do not.
#[tokio::test]
async fn deploy_configmap_config_serves_probes_and_service_hosts() {
    let Some(linters) = Linters::locate() else {
        return;
    };
    let config = configmap_config(&linters, &base_dir().join("configmap.yaml"));
    let state = tempfile::tempdir().unwrap();
    assert!(config.contains("state_dir = \"/var/lib/switchboard\""));
    let config = config.replace(
        "state_dir = \"/var/lib/switchboard\"",
        &format!("state_dir = {:?}", state.path().display().to_string()),
    );
    let config_file = state.path().join("switchboard.toml");
    std::fs::write(&config_file, config).unwrap();
    let gateway = spawn_gateway_http_at(
        GATEWAY,
        &config_file,
        &[("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
    .expect("gateway starts with the ConfigMap's config");
    let base = gateway.url.trim_end_matches("/mcp").to_owned();
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "deploy-test", "version": "1"}
        }
    });
    let post = |host: &'static str| {
        client
            .post(&gateway.url)
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    let admitted = post("switchboard.default.svc:8931").await.unwrap();
    assert_eq!(admitted.status(), 200);
    let refused = post("attacker.example:8931").await.unwrap();
    assert_eq!(refused.status(), 403);
}
