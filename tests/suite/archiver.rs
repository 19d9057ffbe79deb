//! `tserve-archiver` and archive compatibility with TorchServe, both ways, and hostile archives.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::helpers::{assert_close, fixture, mlp_cases, TestServer};

fn archiver(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tserve-archiver"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// An archive's entries (path → content) and its manifest text, whatever its format.
fn read_any(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut entries = BTreeMap::new();
    let name = path.to_string_lossy();
    if path.is_dir() {
        let mut pending = vec![path.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap().path();
                if entry.is_dir() {
                    pending.push(entry);
                } else {
                    let relative = entry.strip_prefix(path).unwrap().to_string_lossy().into_owned();
                    entries.insert(relative, std::fs::read(&entry).unwrap());
                }
            }
        }
    } else if name.ends_with(".tar.gz") {
        let file = std::fs::File::open(path).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let entry_path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            entries.insert(entry_path, content);
        }
    } else {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index).unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let method = format!("{:?}", entry.compression());
            entries.insert(format!("{} [{method}]", entry.name()), content);
        }
    }
    entries
}

/// The manifest with its timestamp blanked, after checking the timestamp's format.
fn manifest_without_date(text: &[u8]) -> String {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let created = value["createdOn"].as_str().unwrap().to_string();
    let format = regex::Regex::new(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d$").unwrap();
    assert!(format.is_match(&created), "createdOn {created:?}");
    text.replace(&created, "<date>")
}

#[test]
fn archives_have_torch_model_archivers_layout_and_manifest() {
    let inputs = fixture("archiver_inputs");
    for (format, file) in [("default", "full.mar"), ("zip-store", "full.mar"), ("tgz", "full.tar.gz"), ("no-archive", "full")] {
        let out = tempfile::tempdir().unwrap();
        let export = out.path().to_string_lossy().into_owned();
        let (code, stderr) = archiver(&inputs, &[
            "--model-name", "full", "--version", "2.0", "--serialized-file", "model.pt",
            "--model-file", "model.py", "--handler", "my_handler.py", "--extra-files", "extra,single.txt",
            "-r", "requirements.txt", "-c", "cfg.yaml", "--archive-format", format, "--export-path", &export,
        ]);
        assert_eq!(code, 0, "{stderr}");
        let ours = read_any(&out.path().join(file));
        let theirs = read_any(&fixture("reference_archives").join(format).join(file));
        // The same entries, with the same contents and (zip) compression; the manifest equal
        // byte for byte but for its timestamp.
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{format}");
        for (name, content) in &ours {
            if name.contains("MANIFEST.json") {
                assert_eq!(manifest_without_date(content), manifest_without_date(&theirs[name]), "{format}");
            } else {
                assert_eq!(content, &theirs[name], "{format}: {name}");
            }
        }
    }
}

#[test]
fn the_readme_densenet161_command_archives_a_model_tserve_serves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::copy(fixture("densenet161.pt"), dir.path().join("densenet161.pt")).unwrap();
    std::fs::copy(fixture("index_to_name.json"), dir.path().join("index_to_name.json")).unwrap();
    let command = "--model-name densenet161 --version 1.0 --serialized-file densenet161.pt --export-path model_store --extra-files index_to_name.json --handler image_classifier";
    let (code, stderr) = archiver(dir.path(), &command.split(' ').collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    // Again without -f: refused, as torch-model-archiver does.
    let (code, stderr) = archiver(dir.path(), &command.split(' ').collect::<Vec<_>>());
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ERROR - model_store/densenet161.mar already exists."), "{stderr}");

    std::fs::write(dir.path().join("c.properties"), crate::helpers::FREE_PORTS.to_string() + "default_workers_per_model=1\n").unwrap();
    let args: Vec<String> = "--foreground --ncs --ts-config c.properties --model-store model_store --models densenet161.mar"
        .split(' ').map(String::from).collect();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    let photo = std::fs::read(fixture("images/photo.jpg")).unwrap();
    let reply = server.post("/predictions/densenet161", &photo);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let top5 = reply.json();
    assert_eq!(top5.as_object().unwrap().len(), 5);
    let labels: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("index_to_name.json")).unwrap()).unwrap();
    let known: Vec<&str> = labels.as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
    assert!(top5.as_object().unwrap().keys().all(|label| known.contains(&label.as_str())), "{top5}");
}

#[test]
fn archiver_validation_matches_torch_model_archiver() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = archiver(dir.path(), &["--model-name", "bad name", "-v", "1", "--handler", "base_handler"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ERROR - Model name contains special characters."), "{stderr}");
    let (code, stderr) = archiver(dir.path(), &["--model-name", "m", "-v", "1", "--handler", "base_handler", "--export-path", "nowhere"]);
    assert_eq!((code, stderr.trim()), (1, "ERROR - Given export-path nowhere is not a directory. Point to a valid export-path directory."));
    let (code, _) = archiver(dir.path(), &["--model-name", "m", "--handler", "base_handler"]);
    assert_eq!(code, 2, "missing -v is a usage error");
    let (code, _) = archiver(dir.path(), &["--model-name", "m", "-v", "1", "--handler", "base_handler", "--archive-format", "zip"]);
    assert_eq!(code, 2);
    let (code, stderr) = archiver(dir.path(), &["--model-name", "m", "-v", "1", "--handler", "base_handler", "--serialized-file", "nope.pt"]);
    assert_eq!((code, stderr.trim()), (1, "ERROR - No such file or directory: nope.pt"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written on failure");
    // A built-in handler is named, not copied; a minimal archive holds just the manifest.
    let (code, _) = archiver(dir.path(), &["--model-name", "m", "-v", "1", "--handler", "image_classifier"]);
    assert_eq!(code, 0);
    let entries = read_any(&dir.path().join("m.mar"));
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["MAR-INF/MANIFEST.json [Deflated]"]);
}

#[test]
fn an_eager_archive_is_written_as_torchserve_would_and_served_by_the_python_backend() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::copy(fixture("eager_mlp.pt"), dir.path().join("eager_mlp.pt")).unwrap();
    std::fs::copy(fixture("eager_model.py"), dir.path().join("model.py")).unwrap();
    std::fs::copy(crate::helpers::repo_root().join("tests/fixtures/python/mlp_handler.py"), dir.path().join("mlp_handler.py")).unwrap();
    let (code, stderr) = archiver(dir.path(), &["--model-name", "eager", "-v", "1.0", "--serialized-file", "eager_mlp.pt", "--model-file", "model.py", "--handler", "mlp_handler.py", "--export-path", "model_store"]);
    assert_eq!(code, 0, "{stderr}");
    let entries = read_any(&dir.path().join("model_store/eager.mar"));
    let manifest: serde_json::Value = serde_json::from_slice(&entries["MAR-INF/MANIFEST.json [Deflated]"]).unwrap();
    assert_eq!(manifest["model"]["modelFile"], "model.py");
    std::fs::write(dir.path().join("c.properties"), crate::helpers::FREE_PORTS.to_string() + "enable_model_api=true\n").unwrap();
    let args: Vec<String> = "--foreground --ncs --ts-config c.properties --model-store model_store".split(' ').map(String::from).collect();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    let reply = server.manage("POST", "/models?url=eager.mar&initial_workers=1");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (input, expected) = &crate::helpers::mlp_cases()[0];
    let answer = crate::helpers::Reply::from(
        ureq::post(&server.url("/predictions/eager")).set("Content-Type", "application/json").send_string(&input.to_string()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    crate::helpers::assert_close(&answer.json(), expected, 1e-5);
}

#[test]
fn torchserve_made_archives_serve_in_every_format() {
    let formats = ["tma_mlp.mar", "tma_store.mar", "tma_tgz.tar.gz", "tma_dir"];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model_store");
    std::fs::create_dir(&store).unwrap();
    for name in formats {
        let source = fixture("torchserve_archives").join(name);
        if source.is_dir() {
            std::fs::create_dir_all(store.join(name).join("MAR-INF")).unwrap();
            for file in ["mlp.pt", "cfg.yaml", "MAR-INF/MANIFEST.json"] {
                std::fs::copy(source.join(file), store.join(name).join(file)).unwrap();
            }
        } else {
            std::fs::copy(&source, store.join(name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("c.properties"), crate::helpers::FREE_PORTS.to_string() + "load_models=all\n").unwrap();
    let args: Vec<String> = "--foreground --ncs --ts-config c.properties --model-store model_store".split(' ').map(String::from).collect();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    let (input, expected) = &mlp_cases()[0];
    for model in ["tma_mlp", "tma_store", "tma_tgz", "tma_dir"] {
        let reply = server.post(&format!("/predictions/{model}"), input.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{model}: {}", reply.body);
        assert_close(&reply.json(), expected, 1e-5);
        // The archive's config YAML is in effect.
        let described = &server.manage("GET", &format!("/models/{model}")).json()[0];
        assert_eq!((described["batchSize"].clone(), described["maxBatchDelay"].clone()), (json!(2), json!(10)), "{model}");
    }
}

/// Writes a zip with the given entries; `symlink` adds a symlink entry.
fn hostile_zip(path: &Path, entries: &[(&str, &[u8])], symlink: Option<(&str, &str)>) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    if let Some((name, target)) = symlink {
        zip.add_symlink(name, target, zip::write::SimpleFileOptions::default()).unwrap();
    }
    zip.finish().unwrap();
}

fn hostile_tar(path: &Path, entries: &[(&str, &[u8])], link: Option<(&str, &str)>) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    for (name, data) in entries {
        let mut header = tar::Header::new_old();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Written raw, so that names like `../x` reach the archive as they are.
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    if let Some((name, target)) = link {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_cksum();
        tar.append_link(&mut header, name, target).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn store_listing(store: &Path) -> BTreeMap<PathBuf, u64> {
    std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect()
}

#[test]
fn hostile_and_broken_archives_are_refused_and_nothing_is_harmed() {
    let server = TestServer::launch(&["mlp.mar"], &["mlp.mar"], "enable_model_api=true\ndefault_workers_per_model=1\narchive_max_bytes=2000000");
    let store = server.store_path();
    let manifest = br#"{"runtime": "python", "model": {"modelName": "evil", "serializedFile": "mlp.pt", "handler": "base_handler", "modelVersion": "1.0"}}"#;
    let mlp = std::fs::read(fixture("mlp.pt")).unwrap();
    let escape_marker = store.parent().unwrap().join("escaped.txt");
    hostile_zip(&store.join("slip.mar"), &[("MAR-INF/MANIFEST.json", manifest), ("mlp.pt", &mlp), ("../escaped.txt", b"x")], None);
    hostile_zip(&store.join("absolute.mar"), &[("MAR-INF/MANIFEST.json", manifest), ("/tmp/tserve-absolute-escape.txt", b"x")], None);
    hostile_zip(&store.join("symlink.mar"), &[("MAR-INF/MANIFEST.json", manifest), ("mlp.pt", &mlp)], Some(("weights", "/etc/passwd")));
    hostile_zip(&store.join("bomb.mar"), &[("MAR-INF/MANIFEST.json", manifest), ("zeros", &vec![0u8; 8 << 20])], None);
    hostile_zip(&store.join("nomanifest.mar"), &[("mlp.pt", &mlp)], None);
    hostile_zip(&store.join("badmanifest.mar"), &[("MAR-INF/MANIFEST.json", b"{\"model\": "), ("mlp.pt", &mlp)], None);
    hostile_zip(&store.join("nofile.mar"), &[("MAR-INF/MANIFEST.json", manifest)], None);
    hostile_tar(&store.join("slip.tar.gz"), &[("evil/MAR-INF/MANIFEST.json", manifest), ("../escaped.txt", b"x")], None);
    hostile_tar(&store.join("link.tar.gz"), &[("evil/MAR-INF/MANIFEST.json", manifest)], Some(("evil/mlp.pt", "/etc/passwd")));
    let real = std::fs::read(fixture("mlp.mar")).unwrap();
    std::fs::write(store.join("truncated.mar"), &real[..real.len() / 2]).unwrap();
    let before = store_listing(&store);

    let cases = [
        ("slip.mar", "unsafe entry"),
        ("absolute.mar", "unsafe entry"),
        ("symlink.mar", "unsafe entry"),
        ("bomb.mar", "past the configured limit"),
        ("nomanifest.mar", "no MAR-INF/MANIFEST.json"),
        ("badmanifest.mar", "invalid MANIFEST.json"),
        ("nofile.mar", "no serializedFile in its manifest, or the file is missing"),
        ("slip.tar.gz", "unsafe entry"),
        ("link.tar.gz", "unsafe entry"),
        ("truncated.mar", "corrupt archive"),
    ];
    for (archive, expected) in cases {
        let (kind, message) = server.manage("POST", &format!("/models?url={archive}&initial_workers=1")).error(400);
        assert_eq!(kind, "InvalidModelException", "{archive}");
        assert!(message.contains(expected), "{archive}: {message}");
    }
    assert!(!escape_marker.exists(), "nothing was written outside the unpack folder");
    assert!(!Path::new("/tmp/tserve-absolute-escape.txt").exists());
    assert_eq!(store_listing(&store), before, "the model store is untouched");
    assert_eq!(server.manage("GET", "/models").json()["models"].as_array().unwrap().len(), 1);
    let (input, expected) = &mlp_cases()[0];
    assert_close(&server.post("/predictions/mlp", input.to_string().as_bytes()).json(), expected, 1e-5);
}
