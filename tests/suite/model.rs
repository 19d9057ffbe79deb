//! The handler pipeline on real TorchScript models, without actors or HTTP.

use serde_json::Value;
use tch::Device;
use tserve::handlers::{build_handler, HandlerKind, LoadedModel, ModelError};

use crate::helpers::{assert_close, fixture, fixtures, mlp_cases};

fn load(file: &str, kind: HandlerKind) -> LoadedModel {
    let handler = build_handler(kind, fixtures(), &Default::default(), None).unwrap();
    LoadedModel::load(&fixture(file), handler, Device::Cpu).unwrap()
}

#[test]
fn a_batch_answers_each_sample_as_pytorch_does_alone() {
    let _no_grad = tch::no_grad_guard();
    let model = load("mlp.pt", HandlerKind::Base);
    let cases = mlp_cases();
    let payloads: Vec<Vec<u8>> = cases.iter().map(|(input, _)| input.to_string().into_bytes()).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let answers = model.predict(&slices);
    assert_eq!(answers.len(), cases.len());
    for (answer, (_, expected)) in answers.iter().zip(&cases) {
        assert_close(answer.as_ref().unwrap(), expected, 1e-5);
    }
}

#[test]
fn a_bad_payload_fails_only_itself() {
    let _no_grad = tch::no_grad_guard();
    let model = load("mlp.pt", HandlerKind::Base);
    let (input, expected) = &mlp_cases()[0];
    let good = input.to_string().into_bytes();
    let answers = model.predict(&[&good, b"[[1, 2], [3]]", &good]);
    assert_close(answers[0].as_ref().unwrap(), expected, 1e-5);
    assert!(matches!(answers[1], Err(ModelError::BadInput(_))), "{:?}", answers[1]);
    assert_close(answers[2].as_ref().unwrap(), expected, 1e-5);
}

#[test]
fn a_model_that_is_not_torchscript_fails_to_load_clearly() {
    let handler = build_handler(HandlerKind::Base, fixtures(), &Default::default(), None).unwrap();
    let err = match LoadedModel::load(&fixture("eager_mlp.pt"), handler, Device::Cpu) {
        Err(e) => e,
        Ok(_) => panic!("a state dict is not a TorchScript module"),
    };
    assert!(matches!(err, ModelError::Load { .. }), "{err}");
    assert!(err.to_string().contains("eager_mlp.pt"), "{err}");
}

#[test]
fn image_classifier_batches_equal_single_answers() {
    let _no_grad = tch::no_grad_guard();
    let model = load("resnet18.pt", HandlerKind::ImageClassifier);
    let photo = std::fs::read(fixture("images/photo.jpg")).unwrap();
    let grey = std::fs::read(fixture("images/grey.jpg")).unwrap();
    let alone: Vec<Value> = [&photo, &grey]
        .iter()
        .map(|image| model.predict(&[image.as_slice()]).remove(0).unwrap())
        .collect();
    let batched = model.predict(&[&photo, &grey]);
    for (single, batch) in alone.iter().zip(&batched) {
        let batch = batch.as_ref().unwrap();
        let keys: Vec<&String> = single.as_object().unwrap().keys().collect();
        assert_eq!(keys, batch.as_object().unwrap().keys().collect::<Vec<_>>());
        for key in keys {
            let (a, b) = (single[key].as_f64().unwrap(), batch[key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-5, "{key}: {a} vs {b}");
        }
    }
}

#[test]
fn a_batch_of_mixed_shapes_runs_as_compatible_sub_batches() {
    let _no_grad = tch::no_grad_guard();
    // The faulty model doubles any input (and raises on a negative first element).
    let model = load("faulty.pt", HandlerKind::Base);
    let answers = model.predict(&[b"[1.5, 2.0]", b"[1.0, 2.0, 3.0]", b"[3, 4]", b"[0.5, 0.25]", b"[-1.0]"]);
    let values: Vec<Option<Value>> = answers.iter().map(|a| a.as_ref().ok().cloned()).collect();
    assert_eq!(values[0], Some(serde_json::json!([3.0, 4.0])));
    assert_eq!(values[1], Some(serde_json::json!([2.0, 4.0, 6.0])));
    assert_eq!(values[2], Some(serde_json::json!([6, 8])), "int64 samples run apart from float ones");
    assert_eq!(values[3], Some(serde_json::json!([1.0, 0.5])));
    assert!(matches!(answers[4], Err(ModelError::Prediction(_))), "only its own sub-batch fails");
}

/// Typed (OIP) requests that agree in dtypes and trailing shapes share one `forward`; each gets
/// its own rows back, and one that cannot join runs alone.
#[test]
fn typed_requests_batch_by_shape_and_split_by_rows() {
    use tserve::tensor::{DataType, TensorData};
    let _no_grad = tch::no_grad_guard();
    let model = load("pair.pt", HandlerKind::Base);
    let tensor = |name: &str, rows: usize, start: f64, datatype: DataType| {
        let values: Vec<f64> = (0..rows * 2).map(|i| start + i as f64).collect();
        TensorData::from_json(name, datatype, vec![rows as i64, 2], &serde_json::json!(values)).unwrap()
    };
    let requests: Vec<Vec<TensorData>> = vec![
        vec![tensor("a", 1, 0.0, DataType::Fp32), tensor("b", 1, 10.0, DataType::Fp32)],
        vec![tensor("a", 3, 100.0, DataType::Fp32), tensor("b", 3, 1.0, DataType::Fp32)],
        vec![tensor("a", 2, 5.0, DataType::Fp64), tensor("b", 2, 5.0, DataType::Fp64)],
        vec![tensor("a", 2, 7.0, DataType::Fp32), tensor("b", 1, 7.0, DataType::Fp32)],
    ];
    let slices: Vec<&[TensorData]> = requests.iter().map(Vec::as_slice).collect();
    let answers = model.predict_typed(&slices);
    for (request, answer) in requests.iter().zip(&answers) {
        let answer = answer.as_ref().unwrap();
        let alone = model.predict_tensors(request).unwrap();
        assert_eq!(answer, &alone, "batched answers equal each request run alone");
    }
    // The last one's inputs differ in rows (libtorch broadcasts them): it ran alone.
    assert_eq!(answers[3].as_ref().unwrap()[0].shape, vec![2, 2]);
    assert_eq!(answers[1].as_ref().unwrap()[0].shape, vec![3, 2]);
}
