//! OIP gRPC tensors to and from [`TensorData`]: the typed `contents` field of each datatype
//! (`fp32_contents`, `int_contents` for INT8-INT32, ...), or the raw bytes of
//! `raw_input_contents`/`raw_output_contents`, which carry the same little-endian layout as the
//! REST binary extension. FP16 and BF16 have no typed field: they travel raw only.

use bytes::Bytes;

use super::proto::InferTensorContents;
use crate::tensor::{strings, DataType, TensorData};

/// A tensor from the typed contents its datatype uses; counts are checked against the shape.
pub fn from_contents(name: &str, datatype: DataType, shape: Vec<i64>, contents: &InferTensorContents) -> Result<TensorData, String> {
    let narrow = |value: i64| format!("input '{name}': {value} is out of range for {}", datatype.name());
    let mut out: Vec<u8> = Vec::new();
    match datatype {
        DataType::Bool => out.extend(contents.bool_contents.iter().map(|&b| u8::from(b))),
        DataType::Int8 => {
            for &v in &contents.int_contents {
                out.extend(i8::try_from(v).map_err(|_| narrow(v.into()))?.to_le_bytes());
            }
        }
        DataType::Int16 => {
            for &v in &contents.int_contents {
                out.extend(i16::try_from(v).map_err(|_| narrow(v.into()))?.to_le_bytes());
            }
        }
        DataType::Int32 => contents.int_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Int64 => contents.int64_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Uint8 => {
            for &v in &contents.uint_contents {
                out.push(u8::try_from(v).map_err(|_| narrow(v.into()))?);
            }
        }
        DataType::Uint16 => {
            for &v in &contents.uint_contents {
                out.extend(u16::try_from(v).map_err(|_| narrow(v.into()))?.to_le_bytes());
            }
        }
        DataType::Uint32 => contents.uint_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Uint64 => contents.uint64_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Fp32 => contents.fp32_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Fp64 => contents.fp64_contents.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Bytes => {
            for element in &contents.bytes_contents {
                let len = u32::try_from(element.len()).map_err(|_| format!("input '{name}': a BYTES element over 4 GiB"))?;
                out.extend(len.to_le_bytes());
                out.extend(element);
            }
        }
        DataType::Fp16 | DataType::Bf16 => {
            return Err(format!(
                "input '{name}': {} has no typed contents field; send it in raw_input_contents",
                datatype.name()
            ))
        }
    }
    TensorData::from_binary(name, datatype, shape, Bytes::from(out))
}

/// A tensor's elements in the typed contents field of its datatype; `None` for FP16 and BF16,
/// which only travel raw.
pub fn to_contents(tensor: &TensorData) -> Result<Option<InferTensorContents>, String> {
    let data = &tensor.data;
    let mut contents = InferTensorContents::default();
    macro_rules! each {
        ($size:literal, $from:expr) => {
            data.chunks_exact($size).map(|b| $from(b.try_into().unwrap_or([0; $size]))).collect()
        };
    }
    match tensor.datatype {
        DataType::Bool => contents.bool_contents = data.iter().map(|&b| b != 0).collect(),
        DataType::Int8 => contents.int_contents = data.iter().map(|&b| i32::from(b as i8)).collect(),
        DataType::Int16 => contents.int_contents = each!(2, |b| i32::from(i16::from_le_bytes(b))),
        DataType::Int32 => contents.int_contents = each!(4, i32::from_le_bytes),
        DataType::Int64 => contents.int64_contents = each!(8, i64::from_le_bytes),
        DataType::Uint8 => contents.uint_contents = data.iter().map(|&b| u32::from(b)).collect(),
        DataType::Uint16 => contents.uint_contents = each!(2, |b| u32::from(u16::from_le_bytes(b))),
        DataType::Uint32 => contents.uint_contents = each!(4, u32::from_le_bytes),
        DataType::Uint64 => contents.uint64_contents = each!(8, u64::from_le_bytes),
        DataType::Fp32 => contents.fp32_contents = each!(4, f32::from_le_bytes),
        DataType::Fp64 => contents.fp64_contents = each!(8, f64::from_le_bytes),
        DataType::Bytes => contents.bytes_contents = strings(data)?.into_iter().map(|s| s.to_vec()).collect(),
        DataType::Fp16 | DataType::Bf16 => return Ok(None),
    }
    Ok(Some(contents))
}

/// The raw bytes of a tensor, as `raw_output_contents` carries them.
pub fn to_raw(tensor: &TensorData) -> Vec<u8> {
    tensor.data.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_datatype_round_trips() {
        let contents = |f: fn(&mut InferTensorContents)| {
            let mut c = InferTensorContents::default();
            f(&mut c);
            c
        };
        let cases = [
            (DataType::Bool, contents(|c| c.bool_contents = vec![true, false])),
            (DataType::Int8, contents(|c| c.int_contents = vec![-128, 127])),
            (DataType::Int16, contents(|c| c.int_contents = vec![-300, 300])),
            (DataType::Int32, contents(|c| c.int_contents = vec![i32::MIN, i32::MAX])),
            (DataType::Int64, contents(|c| c.int64_contents = vec![i64::MIN, 7])),
            (DataType::Uint8, contents(|c| c.uint_contents = vec![0, 255])),
            (DataType::Uint16, contents(|c| c.uint_contents = vec![0, 65535])),
            (DataType::Uint32, contents(|c| c.uint_contents = vec![0, u32::MAX])),
            (DataType::Uint64, contents(|c| c.uint64_contents = vec![0, u64::MAX])),
            (DataType::Fp32, contents(|c| c.fp32_contents = vec![1.5, -2.25])),
            (DataType::Fp64, contents(|c| c.fp64_contents = vec![1e300, -0.5])),
            (DataType::Bytes, contents(|c| c.bytes_contents = vec![b"ab".to_vec(), vec![0, 255]])),
        ];
        for (datatype, sent) in cases {
            let tensor = from_contents("x", datatype, vec![2], &sent).unwrap();
            assert_eq!(tensor.data.len(), datatype.size().map_or(tensor.data.len(), |s| 2 * s));
            assert_eq!(to_contents(&tensor).unwrap(), Some(sent), "{datatype:?}");
        }
    }

    #[test]
    fn out_of_range_and_miscounted_contents_are_refused() {
        let mut c = InferTensorContents { int_contents: vec![200], ..Default::default() };
        assert!(from_contents("x", DataType::Int8, vec![1], &c).unwrap_err().contains("out of range for INT8"));
        c.int_contents = vec![1, 2, 3];
        assert!(from_contents("x", DataType::Int32, vec![2], &c).is_err());
        assert!(from_contents("x", DataType::Fp16, vec![0], &c).unwrap_err().contains("raw_input_contents"));
        let half = TensorData::from_binary("h", DataType::Fp16, vec![1], Bytes::from_static(&[0, 60])).unwrap();
        assert_eq!(to_contents(&half).unwrap(), None);
    }
}
