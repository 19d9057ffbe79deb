//! Image pre-processing equal to TorchServe's image handlers, which run torchvision on PIL images:
//! `Resize(256)` (Pillow's antialiased bilinear), `CenterCrop(224)`, `ToTensor()`,
//! `Normalize(ImageNet mean, std)`. Images are converted to RGB first, so greyscale and RGBA
//! inputs work (TorchServe fails on them).

use std::io::Cursor;

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::{ModelError, Sample, Values};

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Pillow's `Image.MAX_IMAGE_PIXELS`, the default of `limit_max_image_pixels`.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// The ImageNet transform of `image_classifier`: bytes → `[3, 224, 224]` float sample. An image
/// whose header declares more than `max_pixels` is refused before it is decoded.
pub fn imagenet_input(bytes: &[u8], max_pixels: Option<u64>) -> Result<Sample, ModelError> {
    let image = decode_rgb(bytes, max_pixels)?;
    let image = resize_shorter_side(image, 256)?;
    let image = center_crop(&image, 224);
    normalized(&image, IMAGENET_MEAN, IMAGENET_STD)
}

/// Decodes JPEG, PNG, GIF, BMP, WebP or TIFF into 8-bit RGB, as PIL's `convert("RGB")`:
/// alpha is dropped, grey is repeated over the three channels. Refused before decoding: an
/// image whose header declares more than `max_pixels` (a decompression bomb: a small file that
/// expands to gigabytes), and a JPEG whose data ends before its image does (Pillow refuses a
/// truncated file too, where a lenient decoder would fill the rest with grey).
pub fn decode_rgb(bytes: &[u8], max_pixels: Option<u64>) -> Result<RgbImage, ModelError> {
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ModelError::BadInput(format!("cannot read image: {e}")))
    };
    let format = reader()?.format().ok_or_else(|| {
        ModelError::BadInput("cannot identify image file: not a JPEG, PNG, GIF, BMP, WebP or TIFF image".into())
    })?;
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| ModelError::BadInput(format!("cannot read image: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if let Some(limit) = max_pixels.filter(|&limit| pixels > limit) {
        return Err(ModelError::BadInput(format!(
            "Image size ({pixels} pixels, {width}×{height}) exceeds limit of {limit} pixels, could be \
             decompression bomb DOS attack (limit_max_image_pixels)"
        )));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ModelError::BadInput("image file is truncated: the JPEG data ends before the image does".into()));
    }
    // The reader's default limits still cap the decoded size (512 MiB) when the pixel limit is
    // turned off.
    let decoded = reader()?
        .decode()
        .map_err(|e| ModelError::BadInput(format!("cannot decode image: {e}")))?;
    Ok(decoded.to_rgb8())
}

/// Whether a JPEG's entropy-coded data reaches its end-of-image marker: walks the marker
/// segments (skipping metadata such as an EXIF thumbnail, which has markers of its own) to the
/// first start-of-scan, then looks for `FF D9` after it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            return bytes[at..].windows(2).any(|pair| pair == [0xFF, 0xD9]);
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        at += 2 + length;
    }
    false
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
    if short == 0 {
        return Err(ModelError::BadInput(format!("image has no pixels ({width}×{height})")));
    }
    // Same float arithmetic as Python's `int(size * long / short)`.
    let new_long = f64::from(size) * f64::from(long) / f64::from(short);
    // A thin strip that passes the pixel limit (1×89,000,000) would become billions of pixels
    // once its short side is scaled up; refuse it rather than ask for that memory.
    if new_long * f64::from(size) > MAX_IMAGE_PIXELS as f64 {
        return Err(ModelError::BadInput(format!(
            "image of {width}×{height} pixels is too elongated: resized to a shorter side of {size} it \
             would exceed {MAX_IMAGE_PIXELS} pixels"
        )));
    }
    let new_long = new_long as u32;
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
pub fn normalized(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Result<Sample, ModelError> {
    let (width, height) = image.dimensions();
    let plane = (width * height) as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (index, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            let value = f32::from(pixel[channel]) / 255.0;
            chw[channel * plane + index] = (value - mean[channel]) / std[channel];
        }
    }
    Sample::new(vec![3, i64::from(height), i64::from(width)], Values::Float(chw))
        .ok_or_else(|| ModelError::BadInput(format!("a {width}x{height} image")))
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
        let sample = normalized(&image, IMAGENET_MEAN, IMAGENET_STD).unwrap();
        assert_eq!(sample.shape(), [3, 1, 2]);
        let Values::Float(values) = sample.values() else { panic!("{sample:?}") };
        // Channel-first: red of both pixels, then green, then blue.
        assert!((values[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((values[2] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        bytes
    }

    #[test]
    fn a_truncated_jpeg_is_refused_and_a_whole_one_decodes() {
        let whole = jpeg(64, 48);
        assert_eq!(decode_rgb(&whole, Some(MAX_IMAGE_PIXELS)).unwrap().dimensions(), (64, 48));
        // Cut inside the scan data: every header is whole, the image is not.
        let err = decode_rgb(&whole[..whole.len() - 20], Some(MAX_IMAGE_PIXELS)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn images_past_the_pixel_limit_are_refused_before_decoding() {
        let err = decode_rgb(&jpeg(100, 100), Some(9_999)).unwrap_err();
        assert!(err.to_string().contains("exceeds limit of 9999 pixels"), "{err}");
        assert!(decode_rgb(&jpeg(100, 100), None).is_ok(), "no limit");
    }

    #[test]
    fn images_too_thin_or_empty_to_resize_are_refused() {
        let err = resize_shorter_side(RgbImage::new(1, 400_000), 256).unwrap_err();
        assert!(err.to_string().contains("too elongated"), "{err}");
        let err = resize_shorter_side(RgbImage::new(0, 5), 256).unwrap_err();
        assert!(err.to_string().contains("no pixels"), "{err}");
        assert_eq!(resize_shorter_side(RgbImage::new(100, 300), 256).unwrap().dimensions(), (256, 768));
    }

    #[test]
    fn garbage_is_bad_input() {
        let err = imagenet_input(b"definitely not an image", Some(MAX_IMAGE_PIXELS)).unwrap_err();
        assert!(matches!(err, ModelError::BadInput(_)), "{err}");
    }
}
