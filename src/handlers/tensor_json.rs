//! Tensors as JSON nested arrays, both ways, with `torch.as_tensor` / `Tensor.tolist` semantics:
//! all-integer input becomes int64, anything else float32; output keeps the tensor's values.

use serde_json::{Number, Value};
use tch::{Kind, Tensor};

/// A rectangular nested array of numbers → tensor. Errors name what is wrong with the input.
pub fn json_to_tensor(value: &Value) -> Result<Tensor, String> {
    let shape = shape_of(value);
    let mut leaves = Vec::new();
    collect_leaves(value, &shape, 0, &mut leaves)?;
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let tensor = if leaves.iter().all(|n| n.is_i64()) {
        let ints: Vec<i64> = leaves.iter().filter_map(|n| n.as_i64()).collect();
        Tensor::f_from_slice(&ints)
    } else {
        let floats: Vec<f32> = leaves
            .iter()
            .map(|n| n.as_f64().unwrap_or(f64::NAN) as f32)
            .collect();
        Tensor::f_from_slice(&floats)
    };
    tensor
        .and_then(|t| t.f_view(dims.as_slice()))
        .map_err(|e| e.to_string())
}

/// The shape implied by the first element at each depth; checked against the rest afterwards.
fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut current = value;
    while let Value::Array(items) = current {
        shape.push(items.len());
        match items.first() {
            Some(first) => current = first,
            None => break,
        }
    }
    shape
}

fn collect_leaves<'a>(
    value: &'a Value,
    shape: &[usize],
    depth: usize,
    leaves: &mut Vec<&'a Number>,
) -> Result<(), String> {
    match value {
        Value::Number(n) if depth == shape.len() => {
            leaves.push(n);
            Ok(())
        }
        Value::Array(items) if depth < shape.len() && items.len() == shape[depth] => items
            .iter()
            .try_for_each(|item| collect_leaves(item, shape, depth + 1, leaves)),
        Value::Array(_) | Value::Number(_) => Err(format!(
            "expected a rectangular nested array of numbers; shape {shape:?} breaks at depth {depth}"
        )),
        other => Err(format!(
            "expected a nested array of numbers, found {}",
            json_type(other)
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Number(_) => "a number",
    }
}

/// Tensor → nested arrays (a 0-d tensor → a number), as `Tensor.tolist()`.
pub fn tensor_to_json(tensor: &Tensor) -> Result<Value, tch::TchError> {
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let flat = tensor.f_contiguous()?.f_view([-1])?;
    let leaves: Vec<Value> = match tensor.kind() {
        Kind::Bool => Vec::<bool>::try_from(&flat)?.into_iter().map(Value::from).collect(),
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 => {
            Vec::<i64>::try_from(&flat)?.into_iter().map(Value::from).collect()
        }
        // float32 leaves libtorch as it is (no conversion kernel) and widens here, exactly.
        Kind::Float => Vec::<f32>::try_from(&flat)?
            .into_iter()
            .map(|x| Value::from(f64::from(x)))
            .collect(),
        _ => Vec::<f64>::try_from(&flat)?.into_iter().map(Value::from).collect(),
    };
    let mut leaves = leaves.into_iter();
    Ok(nest(&shape, &mut leaves))
}

fn nest(shape: &[usize], leaves: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => leaves.next().unwrap_or(Value::Null),
        Some((&len, rest)) => Value::Array((0..len).map(|_| nest(rest, leaves)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_become_float32() {
        let t = json_to_tensor(&json!([[1.5, 2], [3, 4]])).unwrap();
        assert_eq!(t.size(), vec![2, 2]);
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(t.double_value(&[0, 0]), 1.5);
    }

    #[test]
    fn integers_become_int64() {
        let t = json_to_tensor(&json!([1, 2, 3])).unwrap();
        assert_eq!((t.size(), t.kind()), (vec![3], Kind::Int64));
    }

    #[test]
    fn ragged_and_non_numeric_are_refused() {
        assert!(json_to_tensor(&json!([[1, 2], [3]])).is_err());
        assert!(json_to_tensor(&json!([[1, 2], 3])).is_err());
        let err = json_to_tensor(&json!(["a"])).unwrap_err();
        assert!(err.contains("a string"), "{err}");
    }

    #[test]
    fn round_trips() {
        let value = json!([[1.5, -2.25], [0.0, 4.0]]);
        let back = tensor_to_json(&json_to_tensor(&value).unwrap()).unwrap();
        assert_eq!(back, value);
        assert_eq!(tensor_to_json(&Tensor::from(7i64)).unwrap(), json!(7));
    }

    mod arbitrary_input {
        //! Arbitrary request bodies through the JSON tensor parser: each gives a tensor or an
        //! error, never a panic. `PROPTEST_CASES` raises the case count for a longer run.
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, numbers of every kind included.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(6, 256, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,4}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn leaf_count(value: &Value) -> usize {
            match value {
                Value::Array(items) => items.iter().map(leaf_count).sum(),
                _ => 1,
            }
        }

        proptest! {
            #![proptest_config(crate::property_tests::config())]
            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                    let _ = json_to_tensor(&json);
                }
            }

            #[test]
            fn a_tensor_holds_every_number_given(value in any_json()) {
                if let Ok(tensor) = json_to_tensor(&value) {
                    prop_assert_eq!(tensor.numel(), leaf_count(&value));
                }
            }

            #[test]
            fn rectangular_floats_round_trip(
                rows in 1usize..6,
                values in prop::collection::vec(-1e6f32..1e6, 1..48),
            ) {
                let cols = values.len().div_ceil(rows);
                let values: Vec<f64> = values.iter().cycle().take(rows * cols).map(|&v| f64::from(v)).collect();
                let value = Value::Array(values.chunks(cols).map(|row| Value::from(row.to_vec())).collect());
                let tensor = json_to_tensor(&value).map_err(TestCaseError::fail)?;
                prop_assert_eq!(tensor.size(), vec![rows as i64, cols as i64]);
                let back = tensor_to_json(&tensor).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, value);
            }
        }
    }
}
