//! Tensors as JSON nested arrays, both ways, with `torch.as_tensor` / `Tensor.tolist` semantics:
//! all-integer input becomes int64, anything else float32; output keeps the tensor's values.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::{Number, Value};
use tch::{Kind, Tensor};

use super::sample::{Sample, Values};

/// A request body straight into a sample, in one pass with no `Value` tree in between: the hot
/// path of `base_handler`. Same rules as [`json_to_sample`] (shape from the first element at each
/// depth, all-integer input int64, anything else float32); a body it refuses is parsed again by
/// `serde_json::Value` and [`json_to_sample`], so that errors read exactly as they always have.
pub fn body_to_sample(body: &[u8]) -> Result<Sample, BodyError> {
    match flat_from_body(body) {
        Some(flat) => flat.into_sample().map_err(BodyError::Tensor),
        None => {
            let json: Value = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
            json_to_sample(&json).map_err(BodyError::Tensor)
        }
    }
}

/// Why a body is not a tensor.
#[derive(Debug)]
pub enum BodyError {
    NotJson(serde_json::Error),
    Tensor(String),
}

/// The fast pass: `None` for anything it does not take (not JSON, not rectangular, not numbers).
fn flat_from_body(body: &[u8]) -> Option<Flat> {
    let mut flat = Flat {
        lengths: Vec::new(),
        rank: None,
        ints: Some(Vec::new()),
        floats: Vec::new(),
    };
    let mut reader = serde_json::Deserializer::from_slice(body);
    Element { flat: &mut flat, depth: 0 }.deserialize(&mut reader).ok()?;
    reader.end().ok()?;
    Some(flat)
}

/// Numbers as they stream past, and the shape they must keep to.
struct Flat {
    /// Each depth's length, set by the first array closed at that depth: the first element's,
    /// as [`shape_of`] reads it (the first array at a depth always closes before the next opens).
    lengths: Vec<Option<usize>>,
    /// The depth of numbers: set by the first number, or by an empty first array, met.
    rank: Option<usize>,
    /// The numbers while all are integers; `None` once one is not.
    ints: Option<Vec<i64>>,
    floats: Vec<f32>,
}

/// The fast pass gives up; the slow pass says why.
const REFUSED: &str = "not a rectangular nested array of numbers";

impl Flat {
    fn open(&mut self, depth: usize) -> Result<(), &'static str> {
        if self.rank.is_some_and(|rank| depth >= rank) {
            return Err(REFUSED);
        }
        if self.lengths.len() <= depth {
            self.lengths.resize(depth + 1, None);
        }
        Ok(())
    }

    fn close(&mut self, depth: usize, length: usize) -> Result<(), &'static str> {
        if length == 0 && self.rank.is_none() {
            self.rank = Some(depth + 1);
        }
        match self.lengths[depth] {
            None => self.lengths[depth] = Some(length),
            Some(expected) if expected != length => return Err(REFUSED),
            Some(_) => {}
        }
        Ok(())
    }

    fn number(&mut self, depth: usize, number: Leaf) -> Result<(), &'static str> {
        if *self.rank.get_or_insert(depth) != depth {
            return Err(REFUSED);
        }
        match (number, self.ints.as_mut()) {
            (Leaf::Int(i), Some(ints)) => ints.push(i),
            (Leaf::Int(i), None) => self.floats.push(i as f64 as f32),
            (Leaf::Float(x), _) => {
                if let Some(ints) = self.ints.take() {
                    self.floats = ints.into_iter().map(|i| i as f64 as f32).collect();
                }
                self.floats.push(x as f32);
            }
        }
        Ok(())
    }

    fn into_sample(self) -> Result<Sample, String> {
        let rank = self.rank.unwrap_or(0);
        let dims: Vec<i64> = self.lengths.iter().take(rank).map(|d| d.unwrap_or(0) as i64).collect();
        let values = match self.ints {
            Some(ints) => Values::Int(ints),
            None => Values::Float(self.floats),
        };
        Sample::new(dims, values).ok_or_else(|| REFUSED.to_string())
    }
}

enum Leaf {
    Int(i64),
    /// Any other number, as `serde_json::Number::as_f64` gives it.
    Float(f64),
}

/// One element of the body at `depth`, read into `flat`.
struct Element<'a> {
    flat: &'a mut Flat,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a nested array of numbers")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.flat.number(self.depth, Leaf::Int(v)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let leaf = i64::try_from(v).map_or(Leaf::Float(v as f64), Leaf::Int);
        self.flat.number(self.depth, leaf).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.flat.number(self.depth, Leaf::Float(v)).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.flat.open(self.depth).map_err(de::Error::custom)?;
        let mut length = 0;
        while seq.next_element_seed(Element { flat: &mut *self.flat, depth: self.depth + 1 })?.is_some() {
            length += 1;
        }
        self.flat.close(self.depth, length).map_err(de::Error::custom)
    }
}

/// A rectangular nested array of numbers → sample. Errors name what is wrong with the input.
pub fn json_to_sample(value: &Value) -> Result<Sample, String> {
    let shape = shape_of(value);
    let mut leaves = Vec::new();
    collect_leaves(value, &shape, 0, &mut leaves)?;
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let values = if leaves.iter().all(|n| n.is_i64()) {
        Values::Int(leaves.iter().filter_map(|n| n.as_i64()).collect())
    } else {
        Values::Float(leaves.iter().map(|n| n.as_f64().unwrap_or(f64::NAN) as f32).collect())
    };
    Sample::new(dims, values).ok_or_else(|| format!("shape {shape:?} does not hold {} numbers", leaves.len()))
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
        let s = json_to_sample(&json!([[1.5, 2], [3, 4]])).unwrap();
        assert_eq!(s.shape(), [2, 2]);
        assert_eq!(s.values(), &Values::Float(vec![1.5, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn integers_become_int64() {
        let s = json_to_sample(&json!([1, 2, 3])).unwrap();
        assert_eq!((s.shape(), s.kind()), (&[3][..], Kind::Int64));
    }

    #[test]
    fn ragged_and_non_numeric_are_refused() {
        assert!(json_to_sample(&json!([[1, 2], [3]])).is_err());
        assert!(json_to_sample(&json!([[1, 2], 3])).is_err());
        let err = json_to_sample(&json!(["a"])).unwrap_err();
        assert!(err.contains("a string"), "{err}");
    }

    #[test]
    fn a_body_refused_reads_as_the_value_parser_says() {
        for body in [&b"[[1, 2], [3]]"[..], b"[[1, 2], 3]", b"[\"a\"]", b"[[1], []]", b"[1, [2]]"] {
            let json: Value = serde_json::from_slice(body).unwrap();
            match body_to_sample(body) {
                Err(BodyError::Tensor(message)) => assert_eq!(message, json_to_sample(&json).unwrap_err()),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(body_to_sample(b"[1, 2"), Err(BodyError::NotJson(_))));
        assert!(matches!(body_to_sample(b"[1] x"), Err(BodyError::NotJson(_))));
    }

    #[test]
    fn bodies_become_samples_in_one_pass() {
        let s = body_to_sample(b" [[1.5, 2], [3, 4]] ").unwrap();
        assert_eq!(s.shape(), [2, 2]);
        assert_eq!(s.values(), &Values::Float(vec![1.5, 2.0, 3.0, 4.0]));
        let s = body_to_sample(b"[[1, 2, 3]]").unwrap();
        assert_eq!((s.shape(), s.values()), (&[1, 3][..], &Values::Int(vec![1, 2, 3])));
        assert_eq!(body_to_sample(b"7").unwrap().shape(), [0i64; 0]);
        assert_eq!(body_to_sample(b"[[], []]").unwrap().shape(), [2, 0]);
    }

    #[test]
    fn round_trips() {
        let value = json!([[1.5, -2.25], [0.0, 4.0]]);
        let back = tensor_to_json(&json_to_sample(&value).unwrap().to_tensor().unwrap()).unwrap();
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

        /// Rectangular nested arrays of rank 0 to 3 (a length may be 0), of integers, floats or
        /// both: bodies the one-pass parser takes.
        fn rectangular_json() -> impl Strategy<Value = Value> {
            let number = prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e9f64..1e9).prop_map(Value::from),
            ];
            (prop::collection::vec(0usize..4, 0..4), prop::collection::vec(number, 64)).prop_map(|(shape, numbers)| {
                let mut numbers = numbers.into_iter().cycle();
                build(&shape, &mut numbers)
            })
        }

        fn build(shape: &[usize], numbers: &mut impl Iterator<Item = Value>) -> Value {
            match shape.split_first() {
                None => numbers.next().unwrap_or(Value::Null),
                Some((&len, rest)) => Value::Array((0..len).map(|_| build(rest, numbers)).collect()),
            }
        }

        /// The one-pass parser and the `Value` parser give the same sample, or both refuse.
        fn both_parsers_agree(value: &Value) -> Result<(), TestCaseError> {
            let body = serde_json::to_vec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match (json_to_sample(value), flat_from_body(&body).map(Flat::into_sample)) {
                (Ok(slow), Some(Ok(fast))) => {
                    prop_assert_eq!(slow.shape(), fast.shape());
                    prop_assert_eq!(slow.kind(), fast.kind());
                    // Bit for bit (NaN is not a JSON number, so `==` on floats is exact here).
                    prop_assert_eq!(slow.values(), fast.values());
                }
                (Err(_), None) => {}
                (slow, fast) => prop_assert!(false, "{body:?}: Value parser {:?}, one pass {:?}", slow.is_ok(), fast.map(|t| t.is_ok())),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::property_tests::config())]
            #[test]
            fn one_pass_agrees_on_rectangular_bodies(value in rectangular_json()) {
                both_parsers_agree(&value)?;
            }

            #[test]
            fn one_pass_agrees_on_any_json(value in any_json()) {
                both_parsers_agree(&value)?;
            }

            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                    let _ = json_to_sample(&json);
                }
            }

            #[test]
            fn a_tensor_holds_every_number_given(value in any_json()) {
                if let Ok(sample) = json_to_sample(&value) {
                    prop_assert_eq!(sample.to_tensor().map_err(|e| TestCaseError::fail(e.to_string()))?.numel(), leaf_count(&value));
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
                let tensor = json_to_sample(&value).map_err(TestCaseError::fail)?.to_tensor().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(tensor.size(), vec![rows as i64, cols as i64]);
                let back = tensor_to_json(&tensor).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, value);
            }
        }
    }
}
