//! Security as TorchServe 0.12 ships it, and stricter: token authorization, environment
//! configuration, TLS, CORS, one listener for equal addresses, and hostile input of every kind,
//! each refused in TorchServe's error shape while the server keeps serving.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{fixture, mlp_cases, Reply, TestServer};

/// Free ports, with token authorization left on (its default).
const PORTS_WITH_TOKENS: &str =
    "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\n";

/// A model store with `archives`, a config.properties, and the folder they are in.
fn prepare(archives: &[&str], config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model_store");
    std::fs::create_dir(&store).unwrap();
    for archive in archives {
        std::fs::copy(fixture(archive), store.join(archive)).unwrap();
    }
    std::fs::write(dir.path().join("config.properties"), config).unwrap();
    dir
}

fn args(models: &str) -> Vec<String> {
    let mut args: Vec<String> = "--foreground --ncs --ts-config config.properties --model-store model_store"
        .split(' ')
        .map(String::from)
        .collect();
    if !models.is_empty() {
        args.extend(["--models".to_string(), models.to_string()]);
    }
    args
}

fn keys(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("key_file.json")).unwrap()).unwrap()
}

fn with_key(method: &str, url: &str, key: Option<&str>) -> Reply {
    let mut request = ureq::request(method, url);
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    Reply::from(request.call())
}

const REFUSED: &str = "Token Authorization failed. Token either incorrect, expired, or not provided correctly";

#[test]
fn token_authorization_is_on_by_default_as_in_torchserve() {
    let dir = prepare(&["mlp.mar"], &format!("{PORTS_WITH_TOKENS}default_workers_per_model=1\n"));
    let server = TestServer::spawn_in(dir.path(), &args("mlp.mar")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("key_file.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    let keys = keys(dir.path());
    let (inference, management, api) = (
        keys["inference"]["key"].as_str().unwrap().to_string(),
        keys["management"]["key"].as_str().unwrap().to_string(),
        keys["API"]["key"].as_str().unwrap().to_string(),
    );
    assert!(keys["management"]["expiration time"].as_str().unwrap().ends_with('Z'));

    let refused = with_key("GET", &server.url("/ping"), None);
    assert_eq!(refused.json(), json!({"code": 400, "type": "InvalidKeyException", "message": REFUSED}));
    assert_eq!(with_key("GET", &server.url("/ping"), Some(&management)).status, 400, "the inference key, not another");
    assert_eq!(with_key("GET", &server.url("/ping"), Some(&inference)).status, 200);
    let (input, expected) = &mlp_cases()[0];
    let answer = Reply::from(
        ureq::post(&server.url("/predictions/mlp"))
            .set("Authorization", &format!("Bearer {inference}"))
            .send_string(&input.to_string()),
    );
    crate::helpers::assert_close(&answer.json(), expected, 1e-5);
    // The API descriptions need no key; the metrics API none at all.
    assert_eq!(with_key("OPTIONS", &server.url("/"), None).status, 200);
    assert_eq!(with_key("GET", &server.url("/api-description"), None).status, 200);
    assert_eq!(with_key("GET", &format!("{}/metrics", server.metrics_url()), None).status, 200);
    let models = format!("{}/models", server.management_url);
    assert_eq!(with_key("GET", &models, None).status, 400);
    assert_eq!(with_key("GET", &models, Some(&inference)).status, 400);
    assert_eq!(with_key("GET", &models, Some(&management)).status, 200);

    // Rotation with the API key: the old inference key stops working, the new one works.
    let wrong = with_key("GET", &format!("{}/token?type=inference", server.management_url), Some(&inference));
    assert_eq!(wrong.error(400).1, "Token Authentication failed. Token either incorrect, expired, or not provided correctly");
    let rotated = with_key("GET", &format!("{}/token?type=inference", server.management_url), Some(&api));
    assert_eq!((rotated.status, rotated.body.as_str()), (200, ""));
    let new_inference = self::keys(dir.path())["inference"]["key"].as_str().unwrap().to_string();
    assert_ne!(new_inference, inference);
    assert_eq!(with_key("GET", &server.url("/ping"), Some(&inference)).status, 400);
    assert_eq!(with_key("GET", &server.url("/ping"), Some(&new_inference)).status, 200);
    assert_eq!(with_key("GET", &models, Some(&management)).status, 200, "the management key is unchanged");

    // `tserve --stop` takes the key file with the server.
    let stopped = crate::helpers::tserve_command(dir.path()).arg("--stop").output().unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(!dir.path().join("key_file.json").exists());
    drop(server);
}

#[test]
fn expired_keys_are_refused() {
    let dir = prepare(&[], &format!("{PORTS_WITH_TOKENS}token_expiration_min=0\n"));
    let server = TestServer::spawn_in(dir.path(), &args("")).unwrap();
    let inference = keys(dir.path())["inference"]["key"].as_str().unwrap().to_string();
    assert_eq!(with_key("GET", &server.url("/ping"), Some(&inference)).error(400).0, "InvalidKeyException");
}

#[test]
fn the_environment_configures_when_asked_to() {
    let config = format!("{PORTS_WITH_TOKENS}enable_envvars_config=true\n");
    let dir = prepare(&["mlp.mar"], &config);
    let env = [("TS_DISABLE_TOKEN_AUTHORIZATION", "true"), ("TS_ENABLE_MODEL_API", "true"), ("TS_JOB_QUEUE_SIZE", "7")];
    let server = TestServer::spawn_with_env(dir.path(), &args(""), &env).unwrap();
    assert!(!dir.path().join("key_file.json").exists(), "TS_DISABLE_TOKEN_AUTHORIZATION");
    assert_eq!(server.get("/ping").status, 200);
    let reply = server.manage("POST", "/models?url=mlp.mar&initial_workers=1");
    assert_eq!(reply.status, 200, "TS_ENABLE_MODEL_API: {}", reply.body);
    let described = server.manage("GET", "/models/mlp").json();
    assert_eq!(described[0]["jobQueueStatus"]["remainingCapacity"], 7, "TS_JOB_QUEUE_SIZE");

    // Without enable_envvars_config the environment is ignored.
    let dir = prepare(&[], PORTS_WITH_TOKENS);
    let _server = TestServer::spawn_with_env(dir.path(), &args(""), &env).unwrap();
    assert!(dir.path().join("key_file.json").exists());
}

/// A self-signed certificate for localhost, made now: (certificate PEM, key PEM).
pub fn certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

/// A TLS client that trusts only `certificate`.
fn tls_agent(certificate: &str) -> ureq::Agent {
    ureq::AgentBuilder::new().tls_config(tls_config(certificate)).build()
}

/// A TLS client configuration that trusts only `certificate`.
pub fn tls_config(certificate: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(certificate.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn bound_port(server: &TestServer, api: &str) -> u16 {
    let output = server.output_when(|o| o.contains(&format!("{api} API bound to https://")));
    let line = output.lines().find_map(|l| l.strip_prefix(&format!("{api} API bound to https://"))).unwrap();
    line.trim().rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_listener_serves_tls_with_the_configured_certificate() {
    let (cert, key) = certificate();
    let config = "inference_address=https://127.0.0.1:0\nmanagement_address=https://127.0.0.1:0\n\
                  metrics_address=https://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\n\
                  private_key_file=key.pem\ncertificate_file=cert.pem\ndefault_workers_per_model=1\n";
    let dir = prepare(&["mlp.mar"], config);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let server = TestServer::spawn_in(dir.path(), &args("mlp.mar")).unwrap();
    let agent = tls_agent(&cert);
    let url = |api: &str, path: &str| format!("https://localhost:{}{path}", bound_port(&server, api));
    let ping = agent.get(&url("Inference", "/ping")).call().unwrap();
    assert_eq!(ping.status(), 200);
    let (input, expected) = &mlp_cases()[0];
    let answer: Value = agent.post(&url("Inference", "/predictions/mlp")).send_string(&input.to_string()).unwrap().into_json().unwrap();
    crate::helpers::assert_close(&answer, expected, 1e-5);
    assert_eq!(agent.get(&url("Management", "/models")).call().unwrap().status(), 200);
    assert_eq!(agent.get(&url("Metrics", "/metrics")).call().unwrap().status(), 200);
    // A client that does not trust the certificate is refused: it is really verified.
    let (other, _) = certificate();
    assert!(tls_agent(&other).get(&url("Inference", "/ping")).call().is_err());
    // Plain HTTP on a TLS port gets nowhere.
    assert!(ureq::get(&format!("http://127.0.0.1:{}/ping", bound_port(&server, "Inference"))).call().is_err());
}

#[test]
fn a_keystore_half_a_key_pair_or_mixed_schemes_stop_start_up_clearly() {
    let dir = prepare(&[], "inference_address=https://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nkeystore=keystore.p12\n");
    let (code, output) = match TestServer::spawn_in(dir.path(), &args("")) {
        Err(failure) => failure,
        Ok(_) => panic!("started with a keystore"),
    };
    assert_eq!(code, Some(1));
    assert!(output.contains("keystore keystore.p12 (PKCS#12) is not supported") && output.contains("openssl pkcs12"), "{output}");
    let dir = prepare(&[], "inference_address=https://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nprivate_key_file=key.pem\n");
    let (_, output) = TestServer::spawn_in(dir.path(), &args("")).err().unwrap();
    assert!(output.contains("needs both private_key_file and certificate_file"), "{output}");
    // One port cannot speak both http and https.
    let dir = prepare(&[], "inference_address=https://127.0.0.1:18123\nmanagement_address=http://127.0.0.1:18123\n");
    let (_, output) = TestServer::spawn_in(dir.path(), &args("")).err().unwrap();
    assert!(output.contains("only one of them is https"), "{output}");
}

#[test]
fn cors_headers_and_preflights() {
    let config = format!(
        "{PORTS_WITH_TOKENS}cors_allowed_origin=https://app.example\ncors_allowed_methods=GET, POST\ncors_allowed_headers=Authorization, Content-Type\n"
    );
    let dir = prepare(&[], &config);
    let server = TestServer::spawn_in(dir.path(), &args("")).unwrap();
    // A preflight carries no credentials: it is answered before the token check.
    let preflight = Reply::from(
        ureq::request("OPTIONS", &server.url("/predictions/mlp"))
            .set("Origin", "https://app.example")
            .set("Access-Control-Request-Method", "POST")
            .call(),
    );
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("Authorization, Content-Type"));
    // Every other response carries them too, refusals included.
    let refused = server.get("/ping");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example"));
}

#[test]
fn equal_addresses_serve_both_apis_on_one_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{port}\n\
         metrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\ndefault_workers_per_model=1\n"
    );
    let dir = prepare(&["mlp.mar"], &config);
    let server = TestServer::spawn_in(dir.path(), &args("mlp.mar")).unwrap();
    assert_eq!(server.base_url, server.management_url);
    assert_eq!(server.get("/ping").status, 200);
    assert_eq!(server.manage("GET", "/models").json()["models"][0]["modelName"], "mlp");
    let description = server.request("OPTIONS", "/", b"").json();
    assert!(description["paths"]["/ping"].is_object() && description["paths"]["/models"].is_object(), "{description}");
}

#[test]
fn on_one_listener_each_path_needs_its_own_apis_key_however_it_is_spelled() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{port}\n\
         metrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndefault_workers_per_model=1\nenable_model_api=true\n"
    );
    let dir = prepare(&["mlp.mar"], &config);
    let server = TestServer::spawn_in(dir.path(), &args("mlp.mar")).unwrap();
    let keys = keys(dir.path());
    let (inference, management) = (keys["inference"]["key"].as_str(), keys["management"]["key"].as_str());
    let (input, _) = &mlp_cases()[0];
    let predict = |key: Option<&str>| {
        let request = ureq::post(&server.url("/predictions/mlp")).set("Authorization", &format!("Bearer {}", key.unwrap_or("")));
        Reply::from(request.send_bytes(input.to_string().as_bytes()))
    };
    assert_eq!(predict(inference).status, 200);
    assert_eq!(predict(management).error(400).1, REFUSED);
    assert_eq!(with_key("GET", &server.url("/models"), management).status, 200);
    // The inference key manages nothing, whether the path is written plainly or percent-encoded.
    for path in ["/models", "/%6Dodels", "/%6d%6f%64%65%6c%73", "/models/mlp", "/%6Dodels/mlp"] {
        assert_eq!(with_key("GET", &server.url(path), inference).error(400).1, REFUSED, "{path}");
        assert_eq!(with_key("DELETE", &server.url(path), inference).error(400).1, REFUSED, "{path}");
    }
    assert_eq!(with_key("GET", &server.url("/%6Dodels/mlp"), management).status, 200, "the encoded path routes to /models/mlp");
    assert_eq!(predict(inference).status, 200, "the model is still there");
}

/// A black RGB PNG of `width`×`height` whose data holds the first `rows` rows: with fewer rows
/// than the height, a decompression bomb (a few hundred bytes declaring gigabytes).
fn black_png(width: u32, height: u32, rows: usize) -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut data = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    data.write_all(&vec![0u8; (1 + 3 * width as usize) * rows]).unwrap();
    let data = data.finish().unwrap();
    [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &header), &chunk(b"IDAT", &data), &chunk(b"IEND", b"")].concat()
}

/// 20000×20000 pixels, 400 million: 1.2 GB once decoded, from a few hundred bytes.
fn bomb_png() -> Vec<u8> {
    black_png(20_000, 20_000, 10)
}

#[test]
fn hostile_requests_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start(&["resnet18.mar", "mlp.mar"], "max_request_size=10000000");
    let photo = std::fs::read(fixture("images/photo.jpg")).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("bomb PNG", "/predictions/resnet18", bomb_png(), 400, "exceeds limit of 89478485 pixels"),
        ("truncated JPEG", "/predictions/resnet18", photo[..photo.len() - 500].to_vec(), 400, "truncated"),
        // Under the pixel limit, but 1×400,000 resized to a shorter side of 256 is 26 billion.
        ("a thin strip", "/predictions/resnet18", black_png(1, 400_000, 400_000), 400, "too elongated"),
        ("corrupt JPEG", "/predictions/resnet18", [&photo[..600], &vec![0x55; 2000][..]].concat(), 400, ""),
        ("truncated PNG", "/predictions/resnet18", bomb_png()[..40].to_vec(), 400, ""),
        ("not an image", "/predictions/resnet18", b"GIF89a but not really".to_vec(), 400, ""),
        ("deeply nested JSON", "/predictions/mlp", vec![b'['; 100_000], 400, "recursion limit"),
        ("non-UTF-8 JSON", "/predictions/mlp", b"[1.0, \xff\xfe, 2.0]".to_vec(), 400, ""),
        ("ragged arrays", "/predictions/mlp", b"[[1.0, 2.0], [3.0]]".to_vec(), 400, ""),
        ("strings for numbers", "/predictions/mlp", b"[\"a\", \"b\", \"c\", \"d\"]".to_vec(), 400, ""),
        ("wrong shape", "/predictions/mlp", b"[1.0, 2.0]".to_vec(), 503, ""),
        ("traversal in the model name", "/predictions/..%2F..%2Fetc%2Fpasswd", b"[1.0]".to_vec(), 404, ""),
    ];
    for (what, path, body, status, message) in cases {
        let reply = server.post(path, &body);
        let (_, text) = reply.error(status);
        assert!(text.contains(message), "{what}: {text}");
    }
    // A multipart body with no boundary, and a 100 MB body.
    let no_boundary = Reply::from(
        ureq::post(&server.url("/predictions/mlp")).set("Content-Type", "multipart/form-data").send_bytes(b"--x\r\n\r\n"),
    );
    assert_eq!(no_boundary.error(400).0, "BadRequestException");
    let huge = vec![b' '; 100 << 20];
    let started = Instant::now();
    let refused = Reply::from(ureq::post(&server.url("/predictions/mlp")).send_bytes(&huge));
    assert_eq!(refused.error(413).0, "PayloadTooLargeException");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A flood of headers: refused by the HTTP layer, the server unharmed.
    let mut flood = ureq::get(&server.url("/ping"));
    for i in 0..200 {
        flood = flood.set(&format!("x-flood-{i}"), "x");
    }
    let flooded = flood.call();
    assert!(!matches!(flooded, Ok(ref r) if r.status() == 200), "200 headers are more than the server takes");
    // Still serving.
    assert_eq!(server.post("/predictions/resnet18", &photo).status, 200);
    let (input, _) = &mlp_cases()[0];
    assert_eq!(server.post("/predictions/mlp", input.to_string().as_bytes()).status, 200);
    assert_eq!(server.get("/ping").status, 200);
}

#[test]
fn hostile_registrations_are_refused_at_the_door() {
    let server = TestServer::launch(&["mlp.mar"], &[], "enable_model_api=true\nmax_workers_per_model=8");
    // A model name with a NUL byte, or one that walks paths.
    for name in ["a%00b", "..%2Fx", "%2Fetc", "-dash"] {
        let (kind, message) = server.manage("POST", &format!("/models?url=mlp.mar&model_name={name}")).error(400);
        assert_eq!(kind, "BadRequestException", "{name}");
        assert!(message.starts_with("Invalid model name"), "{message}");
    }
    // More workers than the cap.
    let (_, message) = server.manage("POST", "/models?url=mlp.mar&initial_workers=10000").error(400);
    assert_eq!(message, "10000 workers is more than max_workers_per_model (8) allows");
    assert_eq!(server.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
    let (_, message) = server.manage("PUT", "/models/mlp?min_worker=10000").error(400);
    assert!(message.contains("max_workers_per_model (8)"), "{message}");
    // URL traversal.
    let (_, message) = server.manage("POST", "/models?url=..%2F..%2Fetc%2Fpasswd").error(404);
    assert!(message.starts_with("Relative path is not allowed in url"), "{message}");
    assert_eq!(server.get("/ping").status, 200, "the server was not hurt");
}

/// A .mar whose manifest names `serialized` as its model file.
fn archive_naming(path: &Path, serialized: &str) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let manifest = json!({"runtime": "python", "model": {"modelName": "evil", "serializedFile": serialized, "handler": "base_handler", "modelVersion": "1.0"}});
    zip.start_file("MAR-INF/MANIFEST.json", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(manifest.to_string().as_bytes()).unwrap();
    zip.finish().unwrap();
}

#[test]
fn a_manifest_cannot_point_outside_its_archive_nor_tell_what_exists() {
    let server = TestServer::launch(&[], &[], "enable_model_api=true");
    let store = server.store_path();
    let mut answers = Vec::new();
    for (archive, target) in [("a.mar", "/etc/passwd"), ("b.mar", "/etc/no-such-file"), ("c.mar", "../../../../etc/passwd"), ("d.mar", "../../../../no/such")] {
        archive_naming(&store.join(archive), target);
        let reply = server.manage("POST", &format!("/models?url={archive}&initial_workers=1"));
        let (kind, message) = reply.error(400);
        assert_eq!(kind, "InvalidModelException");
        assert_eq!(message, format!("the manifest names {target:?}, which is not a file inside the archive"));
        answers.push((reply.status, kind));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "the same answer whether the file exists or not");
}

/// The unpacked-archive folders tserve has in `dir` (its TMPDIR).
fn unpacked(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("tserve-model-"))
        .map(|e| e.path())
        .collect()
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unpacked_archives_are_private_and_removed_when_their_model_goes() {
    let dir = prepare(&["mlp.mar"], crate::helpers::FREE_PORTS);
    std::fs::write(dir.path().join("config.properties"), format!("{}enable_model_api=true\narchive_max_bytes=1000000\n", crate::helpers::FREE_PORTS)).unwrap();
    // What a killed tserve left behind (no process has this pid): removed at start.
    let leftover = dir.path().join("tserve-model-999999999-abcdef");
    std::fs::create_dir(&leftover).unwrap();
    let server = TestServer::spawn_in(dir.path(), &args("")).unwrap();
    wait_until("the leftover removed", Duration::from_secs(10), || !leftover.exists());

    for _ in 0..3 {
        assert_eq!(server.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
        let folders = unpacked(dir.path());
        assert_eq!(folders.len(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&folders[0]).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(server.manage("DELETE", "/models/mlp").status, 200);
        wait_until("removed after unregister", Duration::from_secs(10), || unpacked(dir.path()).is_empty());
    }
    // A zip bomb fails mid-way and leaves nothing.
    let bomb = dir.path().join("model_store/bomb.mar");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&bomb).unwrap());
    zip.start_file("MAR-INF/MANIFEST.json", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(br#"{"model": {"modelName": "bomb", "serializedFile": "zeros.pt", "handler": "base_handler"}}"#).unwrap();
    zip.start_file("zeros.pt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(&vec![0u8; 8 << 20]).unwrap();
    zip.finish().unwrap();
    assert_eq!(server.manage("POST", "/models?url=bomb.mar").error(400).0, "InvalidModelException");
    wait_until("nothing left by the bomb", Duration::from_secs(10), || unpacked(dir.path()).is_empty());
}

#[test]
fn downloads_stop_at_the_archive_size_limit() {
    let server = TestServer::launch(&[], &[], "enable_model_api=true\narchive_max_bytes=100000");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/big.mar", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![0u8; 64 << 10];
            // 64 MB, far past the limit, streamed until the server hangs up.
            for _ in 0..1024 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    let (kind, message) = server.manage("POST", &format!("/models?url={url}")).error(400);
    assert_eq!(kind, "DownloadArchiveException");
    assert!(message.contains("archive_max_bytes (100000 bytes)"), "{message}");
    let store: Vec<_> = std::fs::read_dir(server.store_path()).unwrap().collect();
    assert!(store.is_empty(), "nothing kept in the store: {store:?}");
}
