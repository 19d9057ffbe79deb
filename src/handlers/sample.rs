//! One request's input after preprocessing: numbers in row-major order and their shape, still
//! outside libtorch. Samples of one shape and dtype become one batch tensor in one copy, so a
//! request costs no libtorch call of its own: a tensor per request (`from_slice`, `view`) and the
//! `stack` that joined them took about 14% of the MLP workers' time under `wrk -c64`
//! (`perf record --call-graph dwarf` of the worker threads).

use tch::{Kind, Tensor};

/// A sample's numbers, as `torch.as_tensor` types JSON: all integers int64, else float32.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Float(values) => values.len(),
            Values::Int(values) => values.len(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Values::Float(_) => Kind::Float,
            Values::Int(_) => Kind::Int64,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Values::Float(values) => bytemuck::cast_slice(values),
            Values::Int(values) => bytemuck::cast_slice(values),
        }
    }
}

/// Numbers and a shape that holds exactly that many: the one invariant libtorch's copy relies on
/// (`Tensor::from_data_size` reads as many bytes as the shape says, whatever the slice holds), so
/// it is checked where a sample is made and the fields stay private.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    shape: Vec<i64>,
    values: Values,
}

impl Sample {
    /// `None` when the shape does not hold exactly `values.len()` numbers.
    pub fn new(shape: Vec<i64>, values: Values) -> Option<Self> {
        (numel(&shape)? == values.len()).then_some(Self { shape, values })
    }

    /// Float zeros of `shape` (a warm-up input); `None` for a negative or overflowing shape.
    pub fn zeros(shape: Vec<i64>) -> Option<Self> {
        let count = numel(&shape)?;
        Self::new(shape, Values::Float(vec![0.0; count]))
    }

    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    pub fn kind(&self) -> Kind {
        self.values.kind()
    }

    pub fn values(&self) -> &Values {
        &self.values
    }

    /// This sample alone, without a batch dimension.
    pub fn to_tensor(&self) -> Result<Tensor, tch::TchError> {
        Tensor::f_from_data_size(self.values.bytes(), &self.shape, self.kind())
    }

    /// Samples stacked along a new first dimension, as `torch.stack(samples)`: one tensor, made in
    /// one copy. They must share one shape and dtype; the error says which does not.
    pub fn batch(samples: &[Sample]) -> Result<Tensor, String> {
        let Some(first) = samples.first() else { return Err("an empty batch".into()) };
        if let Some(odd) = samples.iter().find(|s| s.shape != first.shape || s.kind() != first.kind()) {
            return Err(format!(
                "samples of shape {:?} ({:?}) and {:?} ({:?})",
                first.shape,
                first.kind(),
                odd.shape,
                odd.kind()
            ));
        }
        let mut dims = Vec::with_capacity(first.shape.len() + 1);
        dims.push(samples.len() as i64);
        dims.extend_from_slice(&first.shape);
        // One kind throughout (checked above), so the samples' bytes one after another are
        // the batch's numbers.
        let joined: Vec<u8>;
        let bytes = match samples {
            [only] => only.values.bytes(),
            _ => {
                joined = samples.iter().map(|s| s.values.bytes()).collect::<Vec<_>>().concat();
                &joined
            }
        };
        Tensor::f_from_data_size(bytes, &dims, first.kind()).map_err(|e| e.to_string())
    }
}

/// How many numbers a shape holds; `None` for a negative dimension or an overflow.
fn numel(shape: &[i64]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |count, &dim| count.checked_mul(usize::try_from(dim).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(shape: &[i64], values: &[f32]) -> Sample {
        Sample::new(shape.to_vec(), Values::Float(values.to_vec())).unwrap()
    }

    #[test]
    fn a_shape_must_hold_exactly_the_values() {
        assert!(Sample::new(vec![2, 2], Values::Float(vec![1.0; 3])).is_none());
        assert!(Sample::new(vec![-1], Values::Float(vec![])).is_none());
        assert!(Sample::new(vec![i64::MAX, i64::MAX], Values::Int(vec![])).is_none());
        assert!(Sample::new(vec![], Values::Int(vec![7])).is_some());
        assert!(Sample::new(vec![2, 0], Values::Int(vec![])).is_some());
        assert_eq!(Sample::zeros(vec![2, 3]).unwrap().values(), &Values::Float(vec![0.0; 6]));
    }

    #[test]
    fn a_batch_is_what_stack_makes() {
        let samples = [floats(&[2], &[1.0, 2.0]), floats(&[2], &[3.0, 4.5])];
        let parts: Vec<Tensor> = samples.iter().map(|s| s.to_tensor().unwrap()).collect();
        let batch = Sample::batch(&samples).unwrap();
        assert_eq!((batch.size(), batch.kind()), (vec![2, 2], Kind::Float));
        assert!(batch.equal(&Tensor::stack(&parts, 0)));
        let ints = Sample::new(vec![3], Values::Int(vec![1, -2, 3])).unwrap();
        let one = Sample::batch(std::slice::from_ref(&ints)).unwrap();
        assert_eq!((one.size(), one.kind()), (vec![1, 3], Kind::Int64));
        assert_eq!(Vec::<i64>::try_from(one.view([-1])).unwrap(), vec![1, -2, 3]);
    }

    #[test]
    fn samples_that_differ_do_not_batch() {
        let err = Sample::batch(&[floats(&[2], &[1.0, 2.0]), floats(&[1], &[3.0])]).unwrap_err();
        assert!(err.contains("[2]") && err.contains("[1]"), "{err}");
        let int = Sample::new(vec![2], Values::Int(vec![1, 2])).unwrap();
        assert!(Sample::batch(&[floats(&[2], &[1.0, 2.0]), int]).is_err());
        assert!(Sample::batch(&[]).is_err());
    }
}
