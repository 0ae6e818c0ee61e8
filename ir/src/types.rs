//! Element types and static tensor shapes.

use smallvec::SmallVec;
use std::fmt;

/// A static tensor shape: one extent per axis, outermost first. `[]` is a scalar.
pub type Shape = SmallVec<[usize; 4]>;

/// Element type of a tensor. `F32` carries values, `I32` labels and indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
        }
    }

    /// The name used by the text format (`f32`, `i32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }

    /// Parses a name written by [`DType::name`].
    pub fn from_name(s: &str) -> Option<DType> {
        match s {
            "f32" => Some(DType::F32),
            "i32" => Some(DType::I32),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a tensor value: element type plus static shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type from an element type and any list of extents.
    pub fn new(dtype: DType, shape: impl AsRef<[usize]>) -> TensorType {
        TensorType {
            dtype,
            shape: Shape::from_slice(shape.as_ref()),
        }
    }

    /// An `f32` tensor type.
    pub fn f32(shape: impl AsRef<[usize]>) -> TensorType {
        TensorType::new(DType::F32, shape)
    }

    /// An `i32` tensor type.
    pub fn i32(shape: impl AsRef<[usize]>) -> TensorType {
        TensorType::new(DType::I32, shape)
    }

    /// The `f32[]` scalar type.
    pub fn scalar() -> TensorType {
        TensorType::f32([])
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a scalar), saturating at `usize::MAX`. A
    /// type that passed [`crate::op::infer_type`] (every node of a built or
    /// verified graph) has at most [`MAX_TENSOR_BYTES`] bytes, so this is
    /// exact for it; use [`TensorType::checked_bytes`] on unchecked types.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1, |n, &d| n.saturating_mul(d))
    }

    /// Bytes of a value of this type, `None` when the element count or the
    /// byte size overflows or exceeds [`MAX_TENSOR_BYTES`].
    pub fn checked_bytes(&self) -> Option<usize> {
        checked_numel(&self.shape)?
            .checked_mul(self.dtype.size_bytes())
            .filter(|&b| b <= MAX_TENSOR_BYTES)
    }

    /// Same shape, another element type.
    pub fn with_dtype(&self, dtype: DType) -> TensorType {
        TensorType {
            dtype,
            shape: self.shape.clone(),
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The largest value a tensor may take, in bytes: Rust's allocation limit
/// (`isize::MAX`). Shape inference refuses larger types.
pub const MAX_TENSOR_BYTES: usize = isize::MAX as usize;

/// The product of the extents (1 for `[]`), `None` on `usize` overflow (an
/// extent 0 makes it 0 whatever the others are).
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Formats a shape as `[a,b,c]`.
pub fn shape_str(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(","))
}

/// NumPy broadcasting of two shapes (right-aligned; extents equal or 1).
/// Returns `None` when the shapes are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out = Shape::with_capacity(rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out.push(match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    Some(out)
}

/// True when `from` broadcasts to `to` under NumPy rules.
pub fn broadcastable_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len() && broadcast_shapes(from, to).is_some_and(|s| s.as_slice() == to)
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Shape {
    let mut s = Shape::from_elem(1, shape.len());
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[3, 1], &[4]).unwrap().as_slice(), &[3, 4]);
        assert_eq!(broadcast_shapes(&[], &[2, 5]).unwrap().as_slice(), &[2, 5]);
        assert_eq!(
            broadcast_shapes(&[2, 1, 5], &[7, 1]).unwrap().as_slice(),
            &[2, 7, 5]
        );
        assert!(broadcast_shapes(&[3], &[4]).is_none());
        assert!(broadcastable_to(&[1, 5], &[3, 5]));
        assert!(!broadcastable_to(&[3, 5], &[5]));
        assert!(!broadcastable_to(&[2], &[3]));
    }

    #[test]
    fn display_and_strides() {
        assert_eq!(TensorType::f32([64, 128]).to_string(), "f32[64,128]");
        assert_eq!(TensorType::i32([]).to_string(), "i32[]");
        assert_eq!(strides(&[2, 3, 4]).as_slice(), &[12, 4, 1]);
        assert_eq!(strides(&[]).as_slice(), &[] as &[usize]);
    }

    #[test]
    fn sizes_are_checked() {
        let big = 1usize << 62;
        assert_eq!(checked_numel(&[3, 4]), Some(12));
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[big, 4]), None);
        assert_eq!(checked_numel(&[big, big, 0]), Some(0));
        assert_eq!(TensorType::f32([big, 4]).numel(), usize::MAX);
        assert_eq!(TensorType::f32([3, 5]).checked_bytes(), Some(60));
        // 2^61 elements fit in usize, 2^63 bytes do not fit in isize.
        assert_eq!(TensorType::f32([1usize << 61]).checked_bytes(), None);
        assert_eq!(
            TensorType::i32([1usize << 60]).checked_bytes(),
            Some(1 << 62)
        );
    }
}
