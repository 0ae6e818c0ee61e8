//! Host tensors: the values fed to and produced by the interpreter and executors.

use crate::types::{DType, TensorType};

/// Element storage of a host tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// A tensor value in host memory. Invariant: `data` holds exactly
/// `ty.numel()` elements of `ty.dtype`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub ty: TensorType,
    pub data: Data,
}

impl HostTensor {
    /// An `f32` tensor; `None` if `values` has the wrong length.
    pub fn f32(shape: &[usize], values: Vec<f32>) -> Option<HostTensor> {
        let ty = TensorType::f32(shape);
        (values.len() == ty.numel()).then_some(HostTensor {
            ty,
            data: Data::F32(values),
        })
    }

    /// An `i32` tensor; `None` if `values` has the wrong length.
    pub fn i32(shape: &[usize], values: Vec<i32>) -> Option<HostTensor> {
        let ty = TensorType::i32(shape);
        (values.len() == ty.numel()).then_some(HostTensor {
            ty,
            data: Data::I32(values),
        })
    }

    /// An `f32[]` scalar.
    pub fn scalar(v: f32) -> HostTensor {
        HostTensor {
            ty: TensorType::scalar(),
            data: Data::F32(vec![v]),
        }
    }

    /// A zero-filled tensor of any type.
    pub fn zeros(ty: &TensorType) -> HostTensor {
        let n = ty.numel();
        let data = match ty.dtype {
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::I32 => Data::I32(vec![0; n]),
        };
        HostTensor {
            ty: ty.clone(),
            data,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.ty.shape
    }

    /// The `f32` elements, or `None` for an `i32` tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I32(_) => None,
        }
    }

    /// Mutable `f32` elements, or `None` for an `i32` tensor.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            Data::F32(v) => Some(v),
            Data::I32(_) => None,
        }
    }

    /// The `i32` elements, or `None` for an `f32` tensor.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            Data::I32(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    /// Every element widened to `f64` (i32 values exactly).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The single element of a one-element tensor, as `f64`.
    pub fn item(&self) -> Option<f64> {
        (self.ty.numel() == 1).then(|| self.to_f64()[0])
    }
}
