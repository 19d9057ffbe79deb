//! Typed tensors as the Open Inference Protocol names them, without libtorch: a datatype, a
//! shape and the elements as little-endian, row-major bytes (BYTES elements each a 4-byte
//! little-endian length and its bytes), which is also the binary tensor data extension's layout.
//! Front doors build them from JSON or binary bodies and render them back; native workers turn
//! them into libtorch tensors (`handlers::typed`).

use bytes::Bytes;
use serde_json::{Number, Value};

/// An OIP datatype (plus Triton's BF16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element; `None` for BYTES, whose elements vary.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

/// One named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    /// The elements in the binary extension's layout.
    pub data: Bytes,
}

/// The number of elements a shape holds; an error for a negative dimension or an overflow.
pub fn element_count(shape: &[i64]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim).map_err(|_| format!("shape {shape:?} has a negative dimension"))?;
        count.checked_mul(dim).ok_or_else(|| format!("shape {shape:?} is too large"))
    })
}

impl TensorData {
    /// A tensor from its binary data, checked against the datatype and shape.
    pub fn from_binary(name: &str, datatype: DataType, shape: Vec<i64>, data: Bytes) -> Result<Self, String> {
        let count = element_count(&shape)?;
        let data = match datatype.size() {
            Some(size) => {
                if Some(data.len()) != count.checked_mul(size) {
                    return Err(format!(
                        "input '{name}': {} bytes of binary data for {count} {} elements of shape {shape:?}",
                        data.len(),
                        datatype.name()
                    ));
                }
                if datatype == DataType::Bool && data.iter().any(|&b| b > 1) {
                    // libtorch's bool tensors must hold 0 or 1.
                    Bytes::from(data.iter().map(|&b| u8::from(b != 0)).collect::<Vec<u8>>())
                } else {
                    data
                }
            }
            None => {
                let found = strings(&data).map_err(|e| format!("input '{name}': {e}"))?.len();
                if found != count {
                    return Err(format!("input '{name}': {found} BYTES elements for shape {shape:?}"));
                }
                data
            }
        };
        Ok(Self {
            name: name.to_string(),
            datatype,
            shape,
            data,
        })
    }

    /// A tensor from OIP JSON `data`, nested or flat, row-major.
    pub fn from_json(name: &str, datatype: DataType, shape: Vec<i64>, data: &Value) -> Result<Self, String> {
        let count = element_count(&shape)?;
        let mut leaves = Vec::with_capacity(count);
        flatten(data, &mut leaves);
        if leaves.len() != count {
            return Err(format!(
                "input '{name}': {} elements in data for shape {shape:?} ({count} expected)",
                leaves.len()
            ));
        }
        let mut out = Vec::with_capacity(count * datatype.size().unwrap_or(8));
        for leaf in leaves {
            encode(datatype, leaf, &mut out).map_err(|e| format!("input '{name}': {e}"))?;
        }
        Ok(Self {
            name: name.to_string(),
            datatype,
            shape,
            data: Bytes::from(out),
        })
    }

    /// KServe v1 `instances` (or any rectangular nested array of numbers), as `torch.as_tensor`
    /// makes it: INT64 when every number is an integer, else FP32; booleans make BOOL.
    pub fn from_nested(name: &str, value: &Value) -> Result<Self, String> {
        let mut shape = Vec::new();
        let mut current = value;
        while let Value::Array(items) = current {
            shape.push(items.len() as i64);
            match items.first() {
                Some(first) => current = first,
                None => break,
            }
        }
        let mut leaves = Vec::new();
        rectangular(value, &shape, &mut leaves)?;
        let datatype = if !leaves.is_empty() && leaves.iter().all(|l| l.is_boolean()) {
            DataType::Bool
        } else if leaves.iter().all(|l| l.as_i64().is_some()) {
            DataType::Int64
        } else {
            DataType::Fp32
        };
        let mut out = Vec::with_capacity(leaves.len() * 8);
        for leaf in leaves {
            encode(datatype, leaf, &mut out)?;
        }
        Ok(Self {
            name: name.to_string(),
            datatype,
            shape,
            data: Bytes::from(out),
        })
    }

    /// The elements as a flat JSON array (BYTES as UTF-8 strings, lossily where they are not).
    pub fn to_json(&self) -> Result<Vec<Value>, String> {
        if self.datatype == DataType::Bytes {
            return Ok(strings(&self.data)?
                .into_iter()
                .map(|s| Value::from(String::from_utf8_lossy(&s).into_owned()))
                .collect());
        }
        let size = self.datatype.size().unwrap_or(1);
        if !self.data.len().is_multiple_of(size) {
            return Err(format!("tensor '{}' has a partial element", self.name));
        }
        Ok(self.data.chunks_exact(size).map(|bytes| decode(self.datatype, bytes)).collect())
    }

    /// The elements nested by the shape, as `Tensor.tolist()` (a 0-d tensor is its one value).
    pub fn to_nested_json(&self) -> Result<Value, String> {
        let mut leaves = self.to_json()?.into_iter();
        Ok(nest(&self.shape, &mut leaves))
    }
}

fn nest(shape: &[i64], leaves: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => leaves.next().unwrap_or(Value::Null),
        Some((&len, rest)) => Value::Array((0..len.max(0)).map(|_| nest(rest, leaves)).collect()),
    }
}

/// Every non-array value, in order.
fn flatten<'a>(value: &'a Value, leaves: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, leaves)),
        leaf => leaves.push(leaf),
    }
}

/// The leaves of a nested array whose every level matches `shape`.
fn rectangular<'a>(value: &'a Value, shape: &[i64], leaves: &mut Vec<&'a Value>) -> Result<(), String> {
    match (value, shape.split_first()) {
        (Value::Array(items), Some((&len, rest))) if items.len() as i64 == len => {
            items.iter().try_for_each(|item| rectangular(item, rest, leaves))
        }
        (Value::Number(_) | Value::Bool(_), None) => {
            leaves.push(value);
            Ok(())
        }
        _ => Err(format!("expected a rectangular nested array of numbers of shape {shape:?}")),
    }
}

/// The outputs a request names, in the order it names them; `None` names every output. Naming
/// one the model did not produce is an error (as Triton answers it).
pub fn select_outputs(outputs: Vec<TensorData>, wanted: Option<&[&str]>, model: &str) -> Result<Vec<TensorData>, String> {
    let Some(wanted) = wanted else {
        return Ok(outputs);
    };
    let mut outputs = outputs;
    wanted
        .iter()
        .map(|&name| {
            let index = outputs
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| format!("unexpected inference output '{name}' for model '{model}'"))?;
            Ok(outputs.swap_remove(index))
        })
        .collect()
}

/// The BYTES elements of binary data: each a 4-byte little-endian length and its bytes.
pub fn strings(data: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let Some(prefix) = data.get(at..at + 4) else {
            return Err("BYTES data ends inside an element's length".into());
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        let end = start.checked_add(len).filter(|&end| end <= data.len());
        let Some(end) = end else {
            return Err("BYTES data ends inside an element".into());
        };
        out.push(data.slice(start..end));
        at = end;
    }
    Ok(out)
}

fn integer(leaf: &Value) -> Result<i128, String> {
    match leaf {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| format!("{n} is not an integer")),
        Value::Bool(b) => Ok(i128::from(*b)),
        other => Err(format!("{other} is not a number")),
    }
}

fn float(leaf: &Value) -> Result<f64, String> {
    match leaf {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        // NaN and infinities have no JSON number; Triton's clients send them as strings.
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(format!("{s:?} is not a number")),
        },
        other => Err(format!("{other} is not a number")),
    }
}

fn in_range<T: TryFrom<i128>>(value: i128, datatype: DataType) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{value} is out of range for {}", datatype.name()))
}

/// Appends one JSON element as `datatype`'s little-endian bytes.
fn encode(datatype: DataType, leaf: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match datatype {
        DataType::Bool => match leaf {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Number(n) if matches!(n.as_i64(), Some(0 | 1)) => out.push(u8::from(n.as_i64() == Some(1))),
            other => return Err(format!("{other} is not a boolean")),
        },
        DataType::Uint8 => out.push(in_range::<u8>(integer(leaf)?, datatype)?),
        DataType::Int8 => out.extend(in_range::<i8>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Uint16 => out.extend(in_range::<u16>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Int16 => out.extend(in_range::<i16>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Uint32 => out.extend(in_range::<u32>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Int32 => out.extend(in_range::<i32>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Uint64 => out.extend(in_range::<u64>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Int64 => out.extend(in_range::<i64>(integer(leaf)?, datatype)?.to_le_bytes()),
        DataType::Fp16 => out.extend(half::f16::from_f64(float(leaf)?).to_le_bytes()),
        DataType::Bf16 => out.extend(half::bf16::from_f64(float(leaf)?).to_le_bytes()),
        DataType::Fp32 => out.extend((float(leaf)? as f32).to_le_bytes()),
        DataType::Fp64 => out.extend(float(leaf)?.to_le_bytes()),
        DataType::Bytes => {
            let Value::String(s) = leaf else {
                return Err(format!("{leaf} is not a string"));
            };
            let len = u32::try_from(s.len()).map_err(|_| "a BYTES element over 4 GiB".to_string())?;
            out.extend(len.to_le_bytes());
            out.extend(s.as_bytes());
        }
    }
    Ok(())
}

/// A float as JSON: a number, or (NaN, infinities) its name as a string, as Triton writes it.
fn float_value(x: f64) -> Value {
    match Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::from("NaN"),
        None if x > 0.0 => Value::from("Infinity"),
        None => Value::from("-Infinity"),
    }
}

/// One fixed-size element back to JSON.
fn decode(datatype: DataType, b: &[u8]) -> Value {
    let two = || [b[0], b[1]];
    let four = || [b[0], b[1], b[2], b[3]];
    let eight = || [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    match datatype {
        DataType::Bool => Value::from(b[0] != 0),
        DataType::Uint8 => Value::from(b[0]),
        DataType::Int8 => Value::from(b[0] as i8),
        DataType::Uint16 => Value::from(u16::from_le_bytes(two())),
        DataType::Int16 => Value::from(i16::from_le_bytes(two())),
        DataType::Uint32 => Value::from(u32::from_le_bytes(four())),
        DataType::Int32 => Value::from(i32::from_le_bytes(four())),
        DataType::Uint64 => Value::from(u64::from_le_bytes(eight())),
        DataType::Int64 => Value::from(i64::from_le_bytes(eight())),
        DataType::Fp16 => float_value(half::f16::from_le_bytes(two()).to_f64()),
        DataType::Bf16 => float_value(half::bf16::from_le_bytes(two()).to_f64()),
        DataType::Fp32 => float_value(f64::from(f32::from_le_bytes(four()))),
        DataType::Fp64 => float_value(f64::from_le_bytes(eight())),
        DataType::Bytes => Value::Null,
    }
}

/// libtorch has no unsigned types wider than 8 bits: UINT16 and UINT32 become INT32 and INT64
/// (exactly), UINT64 becomes INT64 when every value fits. Any other tensor is left as it is.
pub fn widen_unsigned(tensor: TensorData) -> Result<TensorData, String> {
    let (to, size) = match tensor.datatype {
        DataType::Uint16 => (DataType::Int32, 2),
        DataType::Uint32 => (DataType::Int64, 4),
        DataType::Uint64 => (DataType::Int64, 8),
        _ => return Ok(tensor),
    };
    let mut out = Vec::with_capacity(tensor.data.len() / size * to.size().unwrap_or(8));
    for b in tensor.data.chunks_exact(size) {
        match size {
            2 => out.extend(i32::from(u16::from_le_bytes([b[0], b[1]])).to_le_bytes()),
            4 => out.extend(i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()),
            _ => {
                let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                let v = i64::try_from(v)
                    .map_err(|_| format!("input '{}': UINT64 value {v} does not fit libtorch's int64", tensor.name))?;
                out.extend(v.to_le_bytes());
            }
        }
    }
    Ok(TensorData {
        datatype: to,
        data: Bytes::from(out),
        ..tensor
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::parse(datatype.name()), Some(datatype));
        }
        assert_eq!(DataType::parse("fp32"), None);
    }

    #[test]
    fn every_datatype_round_trips_through_json() {
        let cases = [
            (DataType::Bool, json!([true, false, true, true])),
            (DataType::Uint8, json!([0, 1, 200, 255])),
            (DataType::Uint16, json!([0, 1, 60000, 65535])),
            (DataType::Uint32, json!([0, 1, 4000000000u64, 7])),
            (DataType::Uint64, json!([0, 1, u64::MAX, 7])),
            (DataType::Int8, json!([-128, 0, 1, 127])),
            (DataType::Int16, json!([-32768, 0, 1, 32767])),
            (DataType::Int32, json!([i32::MIN, 0, 1, i32::MAX])),
            (DataType::Int64, json!([i64::MIN, 0, 1, i64::MAX])),
            (DataType::Fp16, json!([0.5, -2.0, 1024.0, 0.25])),
            (DataType::Bf16, json!([0.5, -2.0, 1024.0, 0.25])),
            (DataType::Fp32, json!([0.5, -2.25, 1e10, 3.0])),
            (DataType::Fp64, json!([0.1, -2.25, 1e300, 3.0])),
            (DataType::Bytes, json!(["a", "", "héllo", "z"])),
        ];
        for (datatype, data) in cases {
            let tensor = TensorData::from_json("x", datatype, vec![2, 2], &data).unwrap();
            assert_eq!(Value::Array(tensor.to_json().unwrap()), data, "{datatype:?}");
            let again = TensorData::from_binary("x", datatype, vec![2, 2], tensor.data.clone()).unwrap();
            assert_eq!(again, tensor);
        }
    }

    #[test]
    fn nested_data_and_shapes() {
        let tensor = TensorData::from_json("x", DataType::Int32, vec![2, 2], &json!([[1, 2], [3, 4]])).unwrap();
        assert_eq!(tensor.to_nested_json().unwrap(), json!([[1, 2], [3, 4]]));
        let err = TensorData::from_json("x", DataType::Int32, vec![3], &json!([1, 2])).unwrap_err();
        assert!(err.contains("2 elements"), "{err}");
        assert!(TensorData::from_json("x", DataType::Int32, vec![-1], &json!([])).is_err());
    }

    #[test]
    fn out_of_range_and_wrong_kinds_are_refused() {
        for (datatype, data) in [
            (DataType::Uint8, json!([256])),
            (DataType::Int8, json!([-129])),
            (DataType::Uint32, json!([-1])),
            (DataType::Int64, json!([1.5])),
            (DataType::Fp32, json!(["x"])),
            (DataType::Bool, json!([2])),
            (DataType::Bytes, json!([1])),
        ] {
            assert!(TensorData::from_json("x", datatype, vec![1], &data).is_err(), "{datatype:?} {data}");
        }
    }

    #[test]
    fn binary_sizes_are_checked() {
        let err = TensorData::from_binary("x", DataType::Fp32, vec![2], Bytes::from_static(&[0; 7])).unwrap_err();
        assert!(err.contains("7 bytes"), "{err}");
        let bools = TensorData::from_binary("b", DataType::Bool, vec![2], Bytes::from_static(&[0, 9])).unwrap();
        assert_eq!(bools.data.as_ref(), &[0, 1]);
        let truncated = Bytes::from_static(&[3, 0, 0, 0, b'a']);
        assert!(TensorData::from_binary("s", DataType::Bytes, vec![1], truncated).is_err());
    }

    #[test]
    fn instances_follow_torch_as_tensor() {
        let ints = TensorData::from_nested("i", &json!([[1, 2], [3, 4]])).unwrap();
        assert_eq!((ints.datatype, ints.shape.clone()), (DataType::Int64, vec![2, 2]));
        let floats = TensorData::from_nested("f", &json!([[1, 2.5]])).unwrap();
        assert_eq!((floats.datatype, floats.shape.clone()), (DataType::Fp32, vec![1, 2]));
        assert_eq!(floats.to_nested_json().unwrap(), json!([[1.0, 2.5]]));
        assert!(TensorData::from_nested("r", &json!([[1, 2], [3]])).is_err());
        assert!(TensorData::from_nested("s", &json!(["a"])).is_err());
    }

    #[test]
    fn non_finite_floats_are_named() {
        let t = TensorData::from_json("x", DataType::Fp32, vec![3], &json!(["NaN", "Infinity", "-Infinity"])).unwrap();
        assert_eq!(Value::Array(t.to_json().unwrap()), json!(["NaN", "Infinity", "-Infinity"]));
    }

    #[test]
    fn unsigned_widening() {
        let t = TensorData::from_json("u", DataType::Uint32, vec![2], &json!([4000000000u64, 1])).unwrap();
        let wide = widen_unsigned(t).unwrap();
        assert_eq!(wide.datatype, DataType::Int64);
        assert_eq!(Value::Array(wide.to_json().unwrap()), json!([4000000000u64, 1]));
        let big = TensorData::from_json("u", DataType::Uint64, vec![1], &json!([u64::MAX])).unwrap();
        assert!(widen_unsigned(big).is_err());
    }
}
