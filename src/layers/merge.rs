//! Merge layers: `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`,
//! `Minimum` (elementwise, inputs of one shape), `Concatenate` and `Dot`.

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// How an elementwise merge layer combines its inputs (all of one shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Combine {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

impl Combine {
    fn class(self) -> &'static str {
        match self {
            Combine::Add => "Add",
            Combine::Subtract => "Subtract",
            Combine::Multiply => "Multiply",
            Combine::Average => "Average",
            Combine::Maximum => "Maximum",
            Combine::Minimum => "Minimum",
        }
    }

    /// Checks the input count (Subtract takes exactly two, the others two
    /// or more) and that every input has the first one's shape.
    fn check<S: AsRef<[usize]> + std::fmt::Debug>(self, path: &str, shapes: &[S]) -> Result<()> {
        let n = shapes.len();
        let arity_ok = match self {
            Combine::Subtract => n == 2,
            Combine::Add
            | Combine::Multiply
            | Combine::Average
            | Combine::Maximum
            | Combine::Minimum => n >= 2,
        };
        if !arity_ok {
            let want = if self == Combine::Subtract {
                "exactly 2"
            } else {
                "at least 2"
            };
            return Err(Error::layer(
                path,
                format!("{} needs {want} inputs, got {n}", self.class()),
            ));
        }
        if let Some(s) = shapes.iter().find(|s| s.as_ref() != shapes[0].as_ref()) {
            return Err(Error::layer(
                path,
                format!(
                    "{} needs inputs of equal shape, got {:?} and {:?}",
                    self.class(),
                    shapes[0],
                    s
                ),
            ));
        }
        Ok(())
    }

    fn apply(self, path: &str, inputs: &[Tensor]) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        self.check(path, &shapes)?;
        let (first, rest) = (&inputs[0], &inputs[1..]);
        let fold = |f: fn(&Tensor, &Tensor) -> Tensor| {
            rest.iter().fold(first.clone(), |acc, t| f(&acc, t))
        };
        Ok(match self {
            Combine::Add => fold(|a, b| a + b),
            Combine::Subtract => first - &rest[0],
            Combine::Multiply => fold(|a, b| a * b),
            Combine::Average => fold(|a, b| a + b) / inputs.len() as f32,
            Combine::Maximum => fold(|a, b| a.maximum(b)),
            Combine::Minimum => fold(|a, b| a.minimum(b)),
        })
    }
}

/// Defines an elementwise merge layer: a struct with an optional name and
/// a `Layer` impl that checks and applies its [`Combine`].
macro_rules! elementwise_merge {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $t {
            name: Option<String>,
        }

        impl $t {
            #[doc = concat!("A `", stringify!($t), "` layer.")]
            pub fn new() -> $t {
                $t::default()
            }

            /// The layer name.
            pub fn name(mut self, name: impl Into<String>) -> $t {
                self.name = Some(name.into());
                self
            }
        }

        impl Layer for $t {
            fn class_name(&self) -> String {
                Combine::$t.class().into()
            }
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }
            fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
                self.build_multi(ctx, &[input_shape.to_vec()])
            }
            fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, shapes: &[Vec<usize>]) -> Result<()> {
                Combine::$t.check(ctx.path(), shapes)
            }
            fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
                Combine::$t.apply(ctx.path(), inputs)
            }
        }
    };
}

elementwise_merge!(
    /// Elementwise sum of two or more inputs of equal shape (Keras `Add`).
    Add
);
elementwise_merge!(
    /// `inputs[0] - inputs[1]` for exactly two inputs of equal shape (Keras `Subtract`).
    Subtract
);
elementwise_merge!(
    /// Elementwise product of two or more inputs of equal shape (Keras `Multiply`).
    Multiply
);
elementwise_merge!(
    /// Elementwise mean of two or more inputs of equal shape (Keras `Average`).
    Average
);
elementwise_merge!(
    /// Elementwise maximum of two or more inputs of equal shape (Keras `Maximum`).
    Maximum
);
elementwise_merge!(
    /// Elementwise minimum of two or more inputs of equal shape (Keras `Minimum`).
    Minimum
);

/// Keras's `Dot`: the dot product of two inputs along an axis of each
/// (axes count the batch axis, as in Keras; negative from the end), per
/// sample. Inputs `[batch, d]` give `[batch, 1]`; inputs `[batch, n, d]` and
/// `[batch, m, d']` give the batched matrix product over the chosen axes,
/// `[batch, n', m']`. With `normalize`, each input is first L2-normalised
/// along its axis (`x / sqrt(max(Σx², 1e-12))`), giving cosine similarities.
#[derive(Clone, Debug)]
pub struct Dot {
    axes: (isize, isize),
    normalize: bool,
    name: Option<String>,
}

impl Dot {
    /// Dot product along `axes` of both inputs.
    pub fn new(axes: isize) -> Dot {
        Dot {
            axes: (axes, axes),
            normalize: false,
            name: None,
        }
    }

    /// Different axes for the two inputs (Keras's `axes=(a, b)`).
    pub fn axes_pair(mut self, a: isize, b: isize) -> Dot {
        self.axes = (a, b);
        self
    }

    /// L2-normalise both inputs along their axes first (cosine similarity).
    pub fn normalize(mut self, yes: bool) -> Dot {
        self.normalize = yes;
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Dot {
        self.name = Some(name.into());
        self
    }

    /// The two axes, batch axis counted, resolved for inputs of `rank`
    /// (per-sample rank + 1): each in `1..rank`.
    fn resolve(&self, path: &str, shapes: &[&[usize]]) -> Result<(usize, usize)> {
        let [a, b] = shapes else {
            return Err(Error::layer(
                path,
                format!("Dot needs exactly 2 inputs, got {}", shapes.len()),
            ));
        };
        if a.len() != b.len() || !(1..=2).contains(&a.len()) {
            return Err(Error::layer(
                path,
                format!(
                    "Dot takes two inputs of per-sample rank 1 or 2 (the same), got {a:?} and {b:?}"
                ),
            ));
        }
        let rank = a.len() + 1;
        let norm = |ax: isize| -> Result<usize> {
            let r = if ax < 0 { ax + rank as isize } else { ax };
            if r < 1 || r as usize >= rank {
                return Err(Error::layer(
                    path,
                    format!("Dot axis {ax} is out of range for inputs of rank {rank} (the batch axis cannot be contracted)"),
                ));
            }
            Ok(r as usize)
        };
        let (xa, ya) = (norm(self.axes.0)?, norm(self.axes.1)?);
        if a[xa - 1] != b[ya - 1] {
            return Err(Error::layer(
                path,
                format!(
                    "Dot axes ({xa}, {ya}) have sizes {} and {} for inputs {a:?} and {b:?}",
                    a[xa - 1],
                    b[ya - 1]
                ),
            ));
        }
        Ok((xa, ya))
    }
}

/// `x / sqrt(max(Σ_axis x², 1e-12))`: Keras's `l2_normalize`.
fn l2_normalize(x: &Tensor, axis: usize) -> Tensor {
    let ss = (x * x).sum(&[axis as isize], true);
    x / ss.maximum(1e-12).sqrt()
}

impl Layer for Dot {
    fn class_name(&self) -> String {
        "Dot".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, shapes: &[Vec<usize>]) -> Result<()> {
        let s: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        self.resolve(ctx.path(), &s).map(|_| ())
    }
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        let per_sample: Vec<&[usize]> = inputs.iter().map(|t| &t.shape()[1..]).collect();
        let (xa, ya) = self.resolve(ctx.path(), &per_sample)?;
        let (mut x, mut y) = (inputs[0].clone(), inputs[1].clone());
        if self.normalize {
            x = l2_normalize(&x, xa);
            y = l2_normalize(&y, ya);
        }
        Ok(if x.rank() == 2 {
            (&x * &y).sum(&[1], true)
        } else {
            // [b, n, d]·[b, d, m]: contract x's axis last, y's axis first.
            x.matmul_t(&y, xa == 1, ya == 2)
        })
    }
    fn describe(&self) -> String {
        format!(
            "axes=({}, {}), normalize={}",
            self.axes.0, self.axes.1, self.normalize
        )
    }
}

/// Joins inputs along an axis (Keras `Concatenate`, default axis -1). The axis
/// counts the batch axis, as in Keras; negative values count from the end.
#[derive(Clone, Debug)]
pub struct Concatenate {
    axis: isize,
    name: Option<String>,
}

impl Default for Concatenate {
    fn default() -> Concatenate {
        Concatenate {
            axis: -1,
            name: None,
        }
    }
}

impl Concatenate {
    /// Concatenation along the last axis.
    pub fn new() -> Concatenate {
        Concatenate::default()
    }

    /// The axis (batch axis included, negative from the end).
    pub fn axis(mut self, axis: isize) -> Concatenate {
        self.axis = axis;
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Concatenate {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Concatenate {
    fn class_name(&self) -> String {
        "Concatenate".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        self.build_multi(ctx, &[input_shape.to_vec()])
    }
    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, shapes: &[Vec<usize>]) -> Result<()> {
        require_two_or_more(ctx, "Concatenate", shapes.len())?;
        let rank = shapes[0].len() + 1;
        let axis = if self.axis < 0 {
            self.axis + rank as isize
        } else {
            self.axis
        };
        if axis < 1 || axis as usize >= rank {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "Concatenate axis {} is out of range for inputs of rank {rank} (the batch axis cannot be joined)",
                    self.axis
                ),
            ));
        }
        let a = axis as usize - 1;
        for s in &shapes[1..] {
            let ok =
                s.len() == shapes[0].len() && (0..s.len()).all(|i| i == a || s[i] == shapes[0][i]);
            if !ok {
                return Err(Error::layer(
                    ctx.path(),
                    format!(
                        "Concatenate inputs disagree off axis {}: {:?} and {:?}",
                        self.axis, shapes[0], s
                    ),
                ));
            }
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        self.call_multi(ctx, std::slice::from_ref(inputs))
    }
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        if inputs.len() < 2 {
            return Err(Error::layer(
                ctx.path(),
                format!("Concatenate needs at least 2 inputs, got {}", inputs.len()),
            ));
        }
        let parts: Vec<&Tensor> = inputs.iter().collect();
        Ok(ctx.builder().concat(&parts, self.axis))
    }
    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }
}

/// Merge layers take two or more inputs; anything else is an error naming the layer.
fn require_two_or_more(ctx: &BuildCtx<'_>, class: &str, n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::layer(
            ctx.path(),
            format!("{class} needs at least 2 inputs, got {n}"),
        ));
    }
    Ok(())
}
