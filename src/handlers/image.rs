//! Image pre-processing equal to TorchServe's image handlers, which run torchvision on PIL images:
//! `Resize(256)` (Pillow's antialiased bilinear), `CenterCrop(224)`, `ToTensor()`,
//! `Normalize(ImageNet mean, std)`. Images are converted to RGB first, so greyscale and RGBA
//! inputs work (TorchServe fails on them).

use std::io::Cursor;

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use tch::Tensor;

use super::ModelError;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The ImageNet transform of `image_classifier`: bytes → `[3, 224, 224]` float tensor.
pub fn imagenet_input(bytes: &[u8]) -> Result<Tensor, ModelError> {
    let image = decode_rgb(bytes)?;
    let image = resize_shorter_side(image, 256)?;
    let image = center_crop(&image, 224);
    normalized_tensor(&image, IMAGENET_MEAN, IMAGENET_STD)
}

/// Decodes JPEG, PNG, GIF, BMP, WebP or TIFF into 8-bit RGB, as PIL's `convert("RGB")`:
/// alpha is dropped, grey is repeated over the three channels.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ModelError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::BadInput(format!("cannot read image: {e}")))?;
    if reader.format().is_none() {
        return Err(ModelError::BadInput(
            "cannot identify image file: not a JPEG, PNG, GIF, BMP, WebP or TIFF image".into(),
        ));
    }
    // The reader's default limits cap the decoded size (512 MiB), which stops decompression
    // bombs much as PIL's MAX_IMAGE_PIXELS does.
    let decoded = reader
        .decode()
        .map_err(|e| ModelError::BadInput(format!("cannot decode image: {e}")))?;
    Ok(decoded.to_rgb8())
}

/// torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer one
/// `int(size * long / short)`; an image already that size is returned unchanged.
pub fn resize_shorter_side(image: RgbImage, size: u32) -> Result<RgbImage, ModelError> {
    let (width, height) = image.dimensions();
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    if short == size {
        return Ok(image);
    }
    // Same float arithmetic as Python's `int(size * long / short)`.
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let (new_width, new_height) = if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    };
    let resize_error = |e: &dyn std::fmt::Display| ModelError::BadInput(format!("cannot resize image: {e}"));
    let source = ResizeImage::from_vec_u8(width, height, image.into_raw(), PixelType::U8x3)
        .map_err(|e| resize_error(&e))?;
    let mut target = ResizeImage::new(new_width, new_height, PixelType::U8x3);
    // Convolution with the bilinear filter is Pillow's BILINEAR resampling (antialiased when
    // shrinking), which torchvision uses for PIL images.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| resize_error(&e))?;
    RgbImage::from_raw(new_width, new_height, target.into_vec())
        .ok_or_else(|| ModelError::BadInput("resized image has the wrong size".into()))
}

/// torchvision's `CenterCrop(size)`: offsets are `int(round((dim - size) / 2))`, with Python's
/// round-half-to-even. The image must be at least `size` on both sides.
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let offset = |dim: u32| (f64::from(dim.saturating_sub(size)) / 2.0).round_ties_even() as u32;
    image::imageops::crop_imm(image, offset(width), offset(height), size.min(width), size.min(height))
        .to_image()
}

/// `ToTensor()` then `Normalize(mean, std)`: CHW float32, `(pixel / 255 - mean) / std`, in the
/// same float32 operations as torchvision.
pub fn normalized_tensor(
    image: &RgbImage,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Tensor, ModelError> {
    let (width, height) = image.dimensions();
    let plane = (width * height) as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (index, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            let value = f32::from(pixel[channel]) / 255.0;
            chw[channel * plane + index] = (value - mean[channel]) / std[channel];
        }
    }
    Tensor::f_from_slice(&chw)
        .and_then(|t| t.f_view([3, i64::from(height), i64::from(width)]))
        .map_err(|e| ModelError::BadInput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_aspect_like_torchvision() {
        let image = RgbImage::new(500, 333);
        let resized = resize_shorter_side(image, 256).unwrap();
        // int(256 * 500 / 333) = 384
        assert_eq!(resized.dimensions(), (384, 256));
    }

    #[test]
    fn crop_rounds_half_to_even() {
        // (257 - 224) / 2 = 16.5 → 16 (Python round), not 17.
        let mut image = RgbImage::new(257, 224);
        image.put_pixel(16, 0, image::Rgb([255, 0, 0]));
        let cropped = center_crop(&image, 224);
        assert_eq!(cropped.dimensions(), (224, 224));
        assert_eq!(cropped.get_pixel(0, 0)[0], 255);
    }

    #[test]
    fn normalizes_per_channel() {
        let image = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 128]));
        let tensor = normalized_tensor(&image, IMAGENET_MEAN, IMAGENET_STD).unwrap();
        assert_eq!(tensor.size(), vec![3, 1, 2]);
        let red = tensor.double_value(&[0, 0, 0]);
        assert!((red - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    }

    #[test]
    fn garbage_is_bad_input() {
        let err = imagenet_input(b"definitely not an image").unwrap_err();
        assert!(matches!(err, ModelError::BadInput(_)), "{err}");
    }
}
