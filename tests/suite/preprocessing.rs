//! image_classifier's pre-processing against torchvision's (Resize(256), CenterCrop(224),
//! ToTensor, Normalize on a PIL image), computed by the venv's torchvision for each test image.

use tch::Tensor;
use tserve::handlers::image::imagenet_input;

use crate::helpers::fixture;

/// Mean absolute difference allowed per value, after normalisation (the bound).
const TOLERANCE: f64 = 0.01;

#[test]
fn input_tensors_match_torchvision() {
    let images = fixture("images");
    let mut compared = 0;
    let mut report = Vec::new();
    for entry in std::fs::read_dir(&images).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".npy") {
            continue;
        }
        let ours = imagenet_input(&std::fs::read(&path).unwrap(), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_tensor()
            .unwrap();
        let theirs = Tensor::read_npy(images.join(format!("{name}.npy"))).unwrap();
        assert_eq!(ours.size(), theirs.size(), "{name}");
        let difference = (&ours - &theirs).abs();
        let mean = difference.mean(tch::Kind::Double).double_value(&[]);
        let max = difference.max().double_value(&[]);
        report.push(format!("{name}: mean {mean:.5}, max {max:.4}"));
        assert!(mean <= TOLERANCE, "{name}: mean abs difference {mean} > {TOLERANCE}");
        compared += 1;
    }
    println!("{}", report.join("\n"));
    assert!(compared >= 6, "compared {compared} images");
}
