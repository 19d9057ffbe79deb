//! Typed tensors ([`TensorData`]) to libtorch tensors and back, for requests that hand a native
//! model its input tensors directly (OIP infer, KServe v1 instances); and what a TorchScript
//! file says of its `forward` (argument names, number of results), for OIP model metadata.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use tch::{Kind, Tensor};

use super::ModelError;
use crate::tensor::{element_count, widen_unsigned, DataType, TensorData};

/// A typed tensor as a libtorch tensor (on the CPU). libtorch has no BYTES, and no unsigned
/// types wider than 8 bits: UINT16/UINT32 widen to INT32/INT64, UINT64 to INT64 when it fits.
pub fn to_tensor(data: &TensorData) -> Result<Tensor, ModelError> {
    let data = widen_unsigned(data.clone()).map_err(ModelError::BadInput)?;
    let kind = match data.datatype {
        DataType::Bool => Kind::Bool,
        DataType::Uint8 => Kind::Uint8,
        DataType::Int8 => Kind::Int8,
        DataType::Int16 => Kind::Int16,
        DataType::Int32 => Kind::Int,
        DataType::Int64 => Kind::Int64,
        DataType::Fp16 => Kind::Half,
        DataType::Bf16 => Kind::BFloat16,
        DataType::Fp32 => Kind::Float,
        DataType::Fp64 => Kind::Double,
        DataType::Bytes | DataType::Uint16 | DataType::Uint32 | DataType::Uint64 => {
            return Err(ModelError::BadInput(format!(
                "input '{}': a TorchScript model cannot take {} tensors",
                data.name,
                data.datatype.name()
            )))
        }
    };
    // libtorch copies as many bytes as the shape says: check that they are there.
    let expected = element_count(&data.shape)
        .map_err(ModelError::BadInput)?
        .checked_mul(data.datatype.size().unwrap_or(1));
    if expected != Some(data.data.len()) {
        return Err(ModelError::BadInput(format!(
            "input '{}': {} bytes for shape {:?} of {}",
            data.name,
            data.data.len(),
            data.shape,
            data.datatype.name()
        )));
    }
    Tensor::f_from_data_size(&data.data, &data.shape, kind)
        .map_err(|e| ModelError::BadInput(format!("input '{}': {}", data.name, super::last_line(&e.to_string()))))
}

/// A libtorch tensor (on the CPU) as a typed tensor named `name`, with its own dtype and shape.
pub fn from_tensor(name: String, tensor: &Tensor) -> Result<TensorData, ModelError> {
    let datatype = match tensor.kind() {
        Kind::Bool => DataType::Bool,
        Kind::Uint8 => DataType::Uint8,
        Kind::Int8 => DataType::Int8,
        Kind::Int16 => DataType::Int16,
        Kind::Int => DataType::Int32,
        Kind::Int64 => DataType::Int64,
        Kind::Half => DataType::Fp16,
        Kind::BFloat16 => DataType::Bf16,
        Kind::Float => DataType::Fp32,
        Kind::Double => DataType::Fp64,
        other => {
            return Err(ModelError::InvalidOutput(format!(
                "output '{name}' is of type {other:?}, which has no OIP datatype"
            )))
        }
    };
    let tensor = tensor.f_contiguous().map_err(ModelError::from_torch)?;
    let numel = tensor.numel();
    let mut bytes = vec![0u8; numel * datatype.size().unwrap_or(1)];
    if numel > 0 {
        tensor.f_copy_data_u8(&mut bytes, numel).map_err(ModelError::from_torch)?;
    }
    Ok(TensorData {
        name,
        datatype,
        shape: tensor.size(),
        data: Bytes::from(bytes),
    })
}

/// What a TorchScript file's code says of its root module's `forward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSignature {
    /// The arguments after `self`, with their TorchScript types.
    pub inputs: Vec<(String, String)>,
    /// The return type: `Tensor`, `Tuple[Tensor, Tensor]`, ...
    pub output: String,
}

impl ForwardSignature {
    /// How many tensors `forward` returns: the members of a tuple, else one.
    pub fn output_count(&self) -> usize {
        match self.output.strip_prefix("Tuple[").and_then(|t| t.strip_suffix(']')) {
            Some(members) => split_top_level(members).len(),
            None => 1,
        }
    }
}

/// Reads the signature of the root module's `forward` from a TorchScript file: the root class
/// is named by `data.pkl`'s first pickle GLOBAL, and its source is under `code/`.
pub fn forward_signature(file: &Path) -> Option<ForwardSignature> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(file).ok()?).ok()?;
    let read = |archive: &mut zip::ZipArchive<std::fs::File>, suffix: &str| -> Option<String> {
        let name = archive.file_names().find(|n| n.ends_with(suffix) && n.matches('/').count() == suffix.matches('/').count())?.to_string();
        let mut text = String::new();
        archive.by_name(&name).ok()?.take(16 << 20).read_to_string(&mut text).ok()?;
        Some(text)
    };
    // data.pkl is binary; only its first bytes are read, lossily.
    let pickle = {
        let name = archive.file_names().find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)?.to_string();
        let mut head = Vec::new();
        archive.by_name(&name).ok()?.take(512).read_to_end(&mut head).ok()?;
        head
    };
    let (module, class) = root_class(&pickle)?;
    let source = read(&mut archive, &format!("/code/{}.py", module.replace('.', "/")))?;
    parse_forward(&source, &class)
}

/// The module and class of a pickle's first GLOBAL (`c<module>\n<name>\n`).
fn root_class(pickle: &[u8]) -> Option<(String, String)> {
    let at = pickle.windows(10).position(|w| w == b"c__torch__")?;
    let text = String::from_utf8_lossy(&pickle[at + 1..]);
    let mut lines = text.split('\n');
    Some((lines.next()?.to_string(), lines.next()?.to_string()))
}

/// The `forward` of `class` in TorchScript's generated source.
fn parse_forward(source: &str, class: &str) -> Option<ForwardSignature> {
    let class_at = source.find(&format!("class {class}("))?;
    let body = &source[class_at..];
    let def = body.find("  def forward(")? + "  def forward(".len();
    let rest = &body[def..];
    let close = rest.find(") -> ")?;
    let arguments = &rest[..close];
    let output = rest[close + ") -> ".len()..].split(":\n").next()?.trim().to_string();
    let inputs = split_top_level(arguments)
        .into_iter()
        .skip(1) // self
        .filter_map(|argument| {
            let (name, kind) = argument.split_once(':')?;
            let kind = kind.split('=').next().unwrap_or(kind);
            Some((name.trim().to_string(), kind.trim().to_string()))
        })
        .collect();
    Some(ForwardSignature { inputs, output })
}

/// Splits on commas outside brackets.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut depth, mut current) = (Vec::new(), 0i32, String::new());
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_libtorch_datatype_round_trips() {
        // Every datatype but the ones libtorch has no dtype for (tested below).
        let widened = [DataType::Uint16, DataType::Uint32, DataType::Uint64, DataType::Bytes];
        for datatype in DataType::ALL.into_iter().filter(|datatype| !widened.contains(datatype)) {
            let data = if datatype == DataType::Bool { json!([true, false, true, false, false, true]) } else { json!([1, 2, 3, 4, 5, 6]) };
            let typed = TensorData::from_json("x", datatype, vec![2, 3], &data).unwrap();
            let tensor = to_tensor(&typed).unwrap();
            assert_eq!(tensor.size(), vec![2, 3]);
            let back = from_tensor("x".into(), &tensor).unwrap();
            assert_eq!(back, typed, "{datatype:?}");
        }
    }

    #[test]
    fn wide_unsigned_types_widen_and_bytes_are_refused() {
        let typed = TensorData::from_json("u", DataType::Uint16, vec![2], &json!([65535, 0])).unwrap();
        let back = from_tensor("u".into(), &to_tensor(&typed).unwrap()).unwrap();
        assert_eq!(back.datatype, DataType::Int32);
        assert_eq!(back.to_json().unwrap(), vec![json!(65535), json!(0)]);
        let short = TensorData {
            name: "f".into(),
            datatype: DataType::Fp32,
            shape: vec![4],
            data: Bytes::from_static(&[0; 8]),
        };
        assert!(matches!(to_tensor(&short), Err(ModelError::BadInput(_))), "never reads past the data");
        let text = TensorData::from_json("s", DataType::Bytes, vec![1], &json!(["a"])).unwrap();
        assert!(matches!(to_tensor(&text), Err(ModelError::BadInput(_))));
    }

    #[test]
    fn forward_signatures_from_generated_code() {
        let source = "class Mlp(Module):\n  __parameters__ = []\n  def forward(self: __torch__.Mlp,\n    x: Tensor) -> Tensor:\n    return x\n";
        let signature = parse_forward(source, "Mlp").unwrap();
        assert_eq!(signature.inputs, vec![("x".to_string(), "Tensor".to_string())]);
        assert_eq!(signature.output_count(), 1);
        let two = "class Two(Module):\n  def forward(self: __torch__.Two,\n    a: Tensor,\n    b: Optional[Tensor]=None) -> Tuple[Tensor, Tensor]:\n    return (a, a)\n";
        let signature = parse_forward(two, "Two").unwrap();
        assert_eq!(signature.inputs.len(), 2);
        assert_eq!(signature.inputs[1], ("b".to_string(), "Optional[Tensor]".to_string()));
        assert_eq!(signature.output_count(), 2);
        assert_eq!(root_class(b"\x80\x02c__torch__.a.b\nNet\nq\x00"), Some(("__torch__.a.b".into(), "Net".into())));
    }
}
