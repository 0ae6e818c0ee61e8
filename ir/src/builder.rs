//! Checked graph construction with symbolic tensor handles.
//!
//! A [`Builder`] owns a graph under construction; a [`Tensor`] is a handle to
//! one of its nodes. Ops infer their result type (NumPy broadcasting for
//! elementwise binary ops, inserting explicit `broadcast` nodes) and tag each
//! new node with the builder's current role and scope.
//!
//! Errors are *sticky*, so model code reads like Keras (`x.matmul(&w) + &b`):
//! the first failing op records an [`IrError`] naming the op, the scope and the
//! shapes; every later op is a no-op returning a placeholder, and
//! [`Builder::check`] / [`Builder::finish`] return the recorded error. A graph
//! is only ever handed out by `finish`, after verification, so a placeholder
//! can never reach an executor.

use crate::error::{IrError, Result};
use crate::graph::{Graph, Node, NodeId, Role};
use crate::op::{infer_type, BinaryOp, Literal, Op, ReduceOp, UnaryOp};
use crate::types::{broadcast_shapes, shape_str, DType, TensorType};
use smallvec::SmallVec;
use std::cell::{Ref, RefCell};
use std::rc::Rc;

struct State {
    graph: Graph,
    scope: String,
    role: Role,
    error: Option<IrError>,
}

/// Builds a graph. Cheap to clone (clones share the graph).
#[derive(Clone)]
pub struct Builder {
    st: Rc<RefCell<State>>,
}

/// A symbolic tensor: a node of a [`Builder`]'s graph plus its type.
#[derive(Clone)]
pub struct Tensor {
    st: Rc<RefCell<State>>,
    id: NodeId,
    ty: TensorType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(%{} : {})", self.id.index(), self.ty)
    }
}

/// Anything usable as an operand: a tensor, or an `f32`/`i32` scalar that
/// becomes a constant of the other operand's type.
pub trait IntoOperand {
    /// Turns `self` into a tensor of `like`'s builder.
    fn into_operand(self, like: &Tensor) -> Tensor;
}

impl IntoOperand for &Tensor {
    fn into_operand(self, _like: &Tensor) -> Tensor {
        self.clone()
    }
}

impl IntoOperand for Tensor {
    fn into_operand(self, _like: &Tensor) -> Tensor {
        self
    }
}

impl IntoOperand for f32 {
    fn into_operand(self, like: &Tensor) -> Tensor {
        let lit = match like.ty.dtype {
            DType::F32 => Literal::F32(vec![self]),
            DType::I32 => Literal::I32(vec![self as i32]),
        };
        like.builder()
            .constant(lit, TensorType::new(like.ty.dtype, []))
    }
}

impl IntoOperand for i32 {
    fn into_operand(self, like: &Tensor) -> Tensor {
        (self as f32).into_operand(like)
    }
}

impl Builder {
    /// A builder for a new, empty graph.
    pub fn new(name: impl Into<String>) -> Builder {
        Builder::from_graph(Graph::new(name))
    }

    /// A builder that appends to an existing graph (used by autodiff and optimisers).
    pub fn from_graph(graph: Graph) -> Builder {
        Builder {
            st: Rc::new(RefCell::new(State {
                graph,
                scope: String::new(),
                role: Role::Forward,
                error: None,
            })),
        }
    }

    /// The graph built so far (read-only).
    pub fn graph(&self) -> Ref<'_, Graph> {
        Ref::map(self.st.borrow(), |s| &s.graph)
    }

    /// A handle to an existing node.
    pub fn tensor(&self, id: NodeId) -> Tensor {
        let ty = self.st.borrow().graph.get(id).map(|n| n.ty.clone());
        match ty {
            Some(ty) => Tensor {
                st: self.st.clone(),
                id,
                ty,
            },
            None => {
                self.fail("tensor", format!("no node %{}", id.index()));
                self.placeholder(TensorType::scalar())
            }
        }
    }

    /// The current scope path (`outer/inner`, or empty).
    pub fn scope(&self) -> String {
        self.st.borrow().scope.clone()
    }

    /// Replaces the scope path; returns the previous one.
    pub fn set_scope(&self, path: impl Into<String>) -> String {
        std::mem::replace(&mut self.st.borrow_mut().scope, path.into())
    }

    /// Runs `f` inside the child scope `name` of the current scope.
    pub fn with_scope<R>(&self, name: &str, f: impl FnOnce() -> R) -> R {
        let prev = self.scope();
        let path = if prev.is_empty() {
            name.to_string()
        } else {
            format!("{prev}/{name}")
        };
        self.set_scope(path);
        let r = f();
        self.set_scope(prev);
        r
    }

    /// The role given to new non-leaf nodes.
    pub fn role(&self) -> Role {
        self.st.borrow().role.clone()
    }

    /// Replaces the role given to new nodes; returns the previous one.
    pub fn set_role(&self, role: Role) -> Role {
        std::mem::replace(&mut self.st.borrow_mut().role, role)
    }

    /// Runs `f` with `role` as the role of new nodes.
    pub fn with_role<R>(&self, role: Role, f: impl FnOnce() -> R) -> R {
        let prev = self.set_role(role);
        let r = f();
        self.set_role(prev);
        r
    }

    /// A per-step input.
    pub fn input(&self, name: &str, ty: TensorType) -> Tensor {
        self.leaf(
            Op::Input {
                name: name.to_string(),
            },
            ty,
            Role::Input,
        )
    }

    /// A model variable.
    pub fn param(&self, name: &str, ty: TensorType) -> Tensor {
        self.leaf(
            Op::Param {
                name: name.to_string(),
            },
            ty,
            Role::Parameter,
        )
    }

    /// An optimiser-state variable (a `param` node with role `state`).
    pub fn state(&self, name: &str, ty: TensorType) -> Tensor {
        self.leaf(
            Op::Param {
                name: name.to_string(),
            },
            ty,
            Role::OptimizerState,
        )
    }

    /// A constant with the current role and scope.
    pub fn constant(&self, lit: Literal, ty: TensorType) -> Tensor {
        let role = self.role();
        self.leaf(Op::Const(lit), ty, role)
    }

    /// An `f32[]` constant.
    pub fn scalar(&self, v: f32) -> Tensor {
        self.constant(Literal::F32(vec![v]), TensorType::scalar())
    }

    /// An `f32` tensor filled with `v`.
    pub fn full(&self, v: f32, shape: &[usize]) -> Tensor {
        self.constant(Literal::F32(vec![v]), TensorType::f32(shape))
    }

    /// Counter-based uniform noise in `[0, 1)` of the given shape (see [`Op::RandomUniform`]).
    pub fn random_uniform(&self, step: &Tensor, seed: u32, shape: &[usize]) -> Tensor {
        self.push(
            Op::RandomUniform { seed },
            &[step],
            Some(TensorType::f32(shape)),
        )
    }

    /// Counter-based standard normal noise of the given shape (see [`Op::RandomNormal`]).
    pub fn random_normal(&self, step: &Tensor, seed: u32, shape: &[usize]) -> Tensor {
        self.push(
            Op::RandomNormal { seed },
            &[step],
            Some(TensorType::f32(shape)),
        )
    }

    /// A counter-based Bernoulli mask of the given shape: 1.0 with
    /// probability `p` (an `f32[]` tensor), else 0.0 (see
    /// [`Op::RandomBernoulli`]; it thresholds the uniform draw of the same
    /// seed and stream).
    pub fn random_bernoulli(
        &self,
        step: &Tensor,
        seed: u32,
        p: &Tensor,
        shape: &[usize],
    ) -> Tensor {
        self.push(
            Op::RandomBernoulli { seed },
            &[step, p],
            Some(TensorType::f32(shape)),
        )
    }

    /// Joins tensors along `axis` (negative counts from the end).
    pub fn concat(&self, parts: &[&Tensor], axis: isize) -> Tensor {
        let Some(first) = parts.first() else {
            self.fail("concat", "no operands".into());
            return self.placeholder(TensorType::scalar());
        };
        match norm_axis(axis, first.rank()) {
            Ok(a) => self.push(Op::Concat { axis: a }, parts, None),
            Err(m) => {
                self.fail("concat", m);
                self.placeholder(first.ty.clone())
            }
        }
    }

    /// Names `t` as a graph output (replacing an output of the same name).
    pub fn output(&self, name: &str, t: &Tensor) {
        if self.errored() {
            return;
        }
        if !Rc::ptr_eq(&self.st, &t.st) {
            self.fail(
                "output",
                format!("tensor for '{name}' belongs to another builder"),
            );
            return;
        }
        self.st.borrow_mut().graph.set_output(name, t.id);
    }

    /// The first recorded error, if any.
    pub fn check(&self) -> Result<()> {
        match &self.st.borrow().error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records an error (first one wins) for callers that detect misuse
    /// themselves, such as layers validating their inputs.
    pub fn record_error(&self, e: IrError) {
        let mut st = self.st.borrow_mut();
        if st.error.is_none() {
            st.error = Some(e);
        }
    }

    /// Returns the verified graph, or the first recorded or verification error.
    pub fn finish(self) -> Result<Graph> {
        self.check()?;
        let graph = self.st.borrow().graph.clone();
        crate::verify::verify(&graph)?;
        Ok(graph)
    }

    fn errored(&self) -> bool {
        self.st.borrow().error.is_some()
    }

    fn fail(&self, op: &str, message: String) {
        let scope = self.scope();
        self.record_error(IrError::Type {
            op: op.to_string(),
            scope,
            message,
        });
    }

    fn placeholder(&self, ty: TensorType) -> Tensor {
        Tensor {
            st: self.st.clone(),
            id: NodeId::end(),
            ty,
        }
    }

    fn leaf(&self, op: Op, ty: TensorType, role: Role) -> Tensor {
        if self.errored() {
            return self.placeholder(ty);
        }
        let name = op.name();
        if let Err(m) = infer_type(&op, &[], Some(&ty)) {
            self.fail(name, m);
            return self.placeholder(ty);
        }
        let dup = match &op {
            Op::Input { name } => self.graph().input(name).is_some(),
            Op::Param { name } => self.graph().param(name).is_some(),
            _ => false,
        };
        if dup {
            self.fail(name, format!("duplicate {name} name in {op:?}"));
            return self.placeholder(ty);
        }
        let scope = self.scope();
        let id = self.st.borrow_mut().graph.add_node(
            Node {
                op,
                ty: ty.clone(),
                role,
                scope,
            },
            &[],
        );
        Tensor {
            st: self.st.clone(),
            id,
            ty,
        }
    }

    /// Adds a checked node. On error records it and returns a placeholder.
    fn push(&self, op: Op, operands: &[&Tensor], declared: Option<TensorType>) -> Tensor {
        let fallback = || {
            declared
                .clone()
                .or_else(|| operands.first().map(|t| t.ty.clone()))
                .unwrap_or_else(TensorType::scalar)
        };
        if self.errored() {
            return self.placeholder(fallback());
        }
        if let Some(t) = operands.iter().find(|t| !Rc::ptr_eq(&t.st, &self.st)) {
            self.fail(
                op.name(),
                format!("operand {t:?} belongs to another builder"),
            );
            return self.placeholder(fallback());
        }
        let tys: SmallVec<[&TensorType; 4]> = operands.iter().map(|t| &t.ty).collect();
        let ty = match infer_type(&op, &tys, declared.as_ref()) {
            Ok(ty) => ty,
            Err(m) => {
                self.fail(op.name(), m);
                return self.placeholder(fallback());
            }
        };
        let ids: SmallVec<[NodeId; 4]> = operands.iter().map(|t| t.id).collect();
        let (role, scope) = {
            let st = self.st.borrow();
            (st.role.clone(), st.scope.clone())
        };
        let id = self.st.borrow_mut().graph.add_node(
            Node {
                op,
                ty: ty.clone(),
                role,
                scope,
            },
            &ids,
        );
        Tensor {
            st: self.st.clone(),
            id,
            ty,
        }
    }
}

fn norm_axis(axis: isize, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    if a < 0 || a as usize >= rank {
        Err(format!("axis {axis} out of range for rank {rank}"))
    } else {
        Ok(a as usize)
    }
}

fn norm_axes(axes: &[isize], rank: usize) -> std::result::Result<SmallVec<[usize; 4]>, String> {
    let mut out: SmallVec<[usize; 4]> = SmallVec::new();
    for &a in axes {
        out.push(norm_axis(a, rank)?);
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("repeated axis in {axes:?}"));
    }
    Ok(out)
}

impl Tensor {
    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The result type.
    pub fn ty(&self) -> &TensorType {
        &self.ty
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.ty.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.ty.rank()
    }

    /// The builder owning this tensor.
    pub fn builder(&self) -> Builder {
        Builder {
            st: self.st.clone(),
        }
    }

    /// `u` applied to this tensor (the generator's entry for any unary op).
    pub(crate) fn unary(&self, u: UnaryOp) -> Tensor {
        self.builder().push(Op::Unary(u), &[self], None)
    }

    /// `-x`.
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    /// `e^x`.
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// `|x|`.
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// `1/x`.
    pub fn recip(&self) -> Tensor {
        self.unary(UnaryOp::Recip)
    }
    /// -1, 0 or 1 (0 for ±0; NaN stays NaN).
    pub fn sign(&self) -> Tensor {
        self.unary(UnaryOp::Sign)
    }
    /// The error function.
    pub fn erf(&self) -> Tensor {
        self.unary(UnaryOp::Erf)
    }
    /// `sin x` (radians).
    pub fn sin(&self) -> Tensor {
        self.unary(UnaryOp::Sin)
    }
    /// `cos x` (radians).
    pub fn cos(&self) -> Tensor {
        self.unary(UnaryOp::Cos)
    }

    /// Applies a binary op with NumPy broadcasting.
    pub fn binary(&self, op: BinaryOp, other: impl IntoOperand) -> Tensor {
        let b = self.builder();
        let other = other.into_operand(self);
        let Some(shape) = broadcast_shapes(self.shape(), other.shape()) else {
            b.fail(
                op.name(),
                format!("cannot broadcast {} with {}", self.ty, other.ty),
            );
            return b.placeholder(self.ty.clone());
        };
        let l = self.broadcast_to(&shape);
        let r = other.broadcast_to(&shape);
        b.push(Op::Binary(op), &[&l, &r], None)
    }

    /// `self + other`, broadcasting.
    pub fn add(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Add, other)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Sub, other)
    }
    /// `self * other`, broadcasting.
    pub fn mul(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Mul, other)
    }
    /// `self / other`, broadcasting.
    pub fn div(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Div, other)
    }
    /// `self ^ other`, broadcasting (Keras `ops.power`; a scalar exponent is
    /// `x.pow(2.0)`). f32 follows C's `pow`: a negative base needs an integer
    /// exponent (else NaN), `x^0 = 1`. i32 is exact (wrapping); a negative
    /// exponent truncates toward zero as division does (see [`BinaryOp::Pow`]).
    pub fn pow(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Pow, other)
    }
    /// Elementwise maximum, broadcasting.
    pub fn maximum(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Max, other)
    }
    /// Elementwise minimum, broadcasting.
    pub fn minimum(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Min, other)
    }
    /// 1.0 where `self == other`, else 0.0.
    pub fn eq(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Eq, other)
    }
    /// 1.0 where `self != other`, else 0.0.
    pub fn ne(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Ne, other)
    }
    /// 1.0 where `self < other`, else 0.0.
    pub fn lt(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Lt, other)
    }
    /// 1.0 where `self <= other`, else 0.0.
    pub fn le(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Le, other)
    }
    /// 1.0 where `self > other`, else 0.0.
    pub fn gt(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Gt, other)
    }
    /// 1.0 where `self >= other`, else 0.0.
    pub fn ge(&self, other: impl IntoOperand) -> Tensor {
        self.binary(BinaryOp::Ge, other)
    }

    /// `on_true` where `self != 0`, else `on_false`; all three broadcast together.
    pub fn select(&self, on_true: impl IntoOperand, on_false: impl IntoOperand) -> Tensor {
        let b = self.builder();
        let t = on_true.into_operand(self);
        let f = on_false.into_operand(&t);
        let shape =
            broadcast_shapes(self.shape(), t.shape()).and_then(|s| broadcast_shapes(&s, f.shape()));
        let Some(shape) = shape else {
            b.fail(
                "select",
                format!(
                    "cannot broadcast mask {} with {} and {}",
                    self.ty, t.ty, f.ty
                ),
            );
            return b.placeholder(t.ty.clone());
        };
        let (m, t, f) = (
            self.broadcast_to(&shape),
            t.broadcast_to(&shape),
            f.broadcast_to(&shape),
        );
        b.push(Op::Select, &[&m, &t, &f], None)
    }

    /// Converts the element type (f32 → i32 truncates toward zero).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        self.builder()
            .push(Op::Cast, &[self], Some(self.ty.with_dtype(dtype)))
    }

    /// NumPy-broadcasts to `shape`; returns `self` when the shape already matches.
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        self.builder().push(
            Op::Broadcast,
            &[self],
            Some(TensorType::new(self.dtype(), shape)),
        )
    }

    /// Same elements in another shape; returns `self` when the shape already matches.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        self.builder().push(
            Op::Reshape,
            &[self],
            Some(TensorType::new(self.dtype(), shape)),
        )
    }

    /// Permutes axes: result axis `i` is axis `perm[i]`.
    pub fn transpose(&self, perm: &[usize]) -> Tensor {
        self.builder().push(
            Op::Transpose {
                perm: SmallVec::from_slice(perm),
            },
            &[self],
            None,
        )
    }

    /// Swaps the last two axes.
    pub fn t(&self) -> Tensor {
        let r = self.rank();
        if r < 2 {
            self.builder()
                .fail("transpose", format!("t() needs rank >= 2, got {}", self.ty));
            return self.clone();
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.transpose(&perm)
    }

    fn reduce(&self, op: ReduceOp, axes: &[isize], keepdims: bool) -> Tensor {
        let b = self.builder();
        let axes = match norm_axes(axes, self.rank()) {
            Ok(a) => a,
            Err(m) => {
                b.fail(op.name(), format!("{m} for {}", self.ty));
                return b.placeholder(self.ty.clone());
            }
        };
        let r = b.push(
            Op::Reduce {
                op,
                axes: axes.clone(),
            },
            &[self],
            None,
        );
        if keepdims {
            let kept: Vec<usize> = (0..self.rank())
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        self.shape()[i]
                    }
                })
                .collect();
            r.reshape(&kept)
        } else {
            r
        }
    }

    /// Sum over `axes` (negative counts from the end); `keepdims` keeps them as extent 1.
    pub fn sum(&self, axes: &[isize], keepdims: bool) -> Tensor {
        self.reduce(ReduceOp::Sum, axes, keepdims)
    }

    /// Sum of all elements, as a scalar.
    pub fn sum_all(&self) -> Tensor {
        let axes: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&axes, false)
    }

    /// Maximum over `axes`.
    pub fn max(&self, axes: &[isize], keepdims: bool) -> Tensor {
        self.reduce(ReduceOp::Max, axes, keepdims)
    }

    /// Mean over `axes`.
    pub fn mean(&self, axes: &[isize], keepdims: bool) -> Tensor {
        let n: usize = match norm_axes(axes, self.rank()) {
            Ok(a) => a.iter().map(|&i| self.shape()[i]).product(),
            Err(_) => 1,
        };
        self.sum(axes, keepdims) * (1.0 / n as f32)
    }

    /// Mean of all elements, as a scalar.
    pub fn mean_all(&self) -> Tensor {
        let n = self.ty.numel();
        self.sum_all() * (1.0 / n as f32)
    }

    /// Index of the maximum along `axis`, as `i32`.
    pub fn argmax(&self, axis: isize) -> Tensor {
        let b = self.builder();
        match norm_axis(axis, self.rank()) {
            Ok(a) => b.push(Op::ArgMax { axis: a }, &[self], None),
            Err(m) => {
                b.fail("argmax", m);
                b.placeholder(self.ty.with_dtype(DType::I32))
            }
        }
    }

    /// Matrix product (rank 2, or rank 3 with a shared batch axis).
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.matmul_t(other, false, false)
    }

    /// Matrix product with the last two axes of either operand transposed.
    pub fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Tensor {
        self.builder()
            .push(Op::MatMul { trans_a, trans_b }, &[self, other], None)
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Tensor {
        let b = self.builder();
        match norm_axis(axis, self.rank()) {
            Ok(a) => b.push(
                Op::Slice {
                    axis: a,
                    start,
                    end,
                },
                &[self],
                None,
            ),
            Err(m) => {
                b.fail("slice", m);
                b.placeholder(self.ty.clone())
            }
        }
    }

    /// Sliding windows ([`Op::Unfold`]): `[N, S.., C]` → `[N, O.., K.., C]`.
    pub fn unfold(&self, window: &[usize], strides: &[usize], dilation: &[usize]) -> Tensor {
        self.builder().push(
            Op::Unfold {
                window: window.into(),
                strides: strides.into(),
                dilation: dilation.into(),
            },
            &[self],
            None,
        )
    }

    /// Window sums back into an image of shape `image` ([`Op::Fold`], the
    /// transpose of [`Tensor::unfold`] with the same geometry).
    pub fn fold(
        &self,
        image: &[usize],
        window: &[usize],
        strides: &[usize],
        dilation: &[usize],
    ) -> Tensor {
        self.builder().push(
            Op::Fold {
                window: window.into(),
                strides: strides.into(),
                dilation: dilation.into(),
            },
            &[self],
            Some(TensorType::f32(image)),
        )
    }

    /// Pads every axis `i` with `lo[i]` cells of `value` before and `hi[i]`
    /// after: one `concat` with constant blocks per padded axis (its
    /// gradient is a slice). `lo` and `hi` have one entry per axis.
    pub fn pad(&self, lo: &[usize], hi: &[usize], value: f32) -> Tensor {
        let b = self.builder();
        if lo.len() != self.rank() || hi.len() != self.rank() {
            b.fail(
                "pad",
                format!("pads {lo:?}/{hi:?} need one entry per axis of {}", self.ty),
            );
            return b.placeholder(self.ty.clone());
        }
        let mut t = self.clone();
        for axis in 0..self.rank() {
            if lo[axis] == 0 && hi[axis] == 0 {
                continue;
            }
            let block = |n: usize| {
                let mut s = t.shape().to_vec();
                s[axis] = n;
                b.full(value, &s)
            };
            let mut parts = Vec::with_capacity(3);
            if lo[axis] > 0 {
                parts.push(block(lo[axis]));
            }
            parts.push(t.clone());
            if hi[axis] > 0 {
                parts.push(block(hi[axis]));
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            t = b.concat(&refs, axis as isize);
        }
        t
    }

    /// `i32` labels to a trailing one-hot `f32` axis of `depth`.
    pub fn one_hot(&self, depth: usize) -> Tensor {
        self.builder().push(Op::OneHot { depth }, &[self], None)
    }

    /// Rows of this `f32[V, D]` table selected by the `i32` `ids`: `f32[ids.., D]`
    /// (see [`Op::Gather`]).
    pub fn gather(&self, ids: &Tensor) -> Tensor {
        self.builder().push(Op::Gather, &[self, ids], None)
    }

    /// These `f32[ids.., D]` values summed into the rows `ids` of an
    /// `f32[rows, D]` zero table (see [`Op::ScatterAdd`]).
    pub fn scatter_add(&self, ids: &Tensor, rows: usize) -> Tensor {
        self.builder()
            .push(Op::ScatterAdd { rows }, &[ids, self], None)
    }

    /// The elementwise mean of this `f32` value over every rank of the
    /// program's communicator (see [`Op::AllReduceMean`]; the identity in a
    /// single process).
    pub fn all_reduce_mean(&self) -> Tensor {
        self.builder().push(Op::AllReduceMean, &[self], None)
    }

    /// Identity with zero gradient.
    pub fn stop_gradient(&self) -> Tensor {
        self.builder().push(Op::StopGradient, &[self], None)
    }

    /// Records a shape error against this tensor's builder unless the shape matches.
    pub fn expect_shape(&self, what: &str, shape: &[usize]) -> bool {
        if self.shape() == shape {
            return true;
        }
        self.builder().fail(
            what,
            format!("expected shape {}, got {}", shape_str(shape), self.ty),
        );
        false
    }
}

macro_rules! impl_binop {
    ($tr:ident, $m:ident) => {
        impl<R: IntoOperand> std::ops::$tr<R> for &Tensor {
            type Output = Tensor;
            fn $m(self, rhs: R) -> Tensor {
                Tensor::$m(self, rhs)
            }
        }
        impl<R: IntoOperand> std::ops::$tr<R> for Tensor {
            type Output = Tensor;
            fn $m(self, rhs: R) -> Tensor {
                Tensor::$m(&self, rhs)
            }
        }
        impl std::ops::$tr<&Tensor> for f32 {
            type Output = Tensor;
            fn $m(self, rhs: &Tensor) -> Tensor {
                Tensor::$m(&self.into_operand(rhs), rhs)
            }
        }
        impl std::ops::$tr<Tensor> for f32 {
            type Output = Tensor;
            fn $m(self, rhs: Tensor) -> Tensor {
                Tensor::$m(&self.into_operand(&rhs), &rhs)
            }
        }
    };
}

impl_binop!(Add, add);
impl_binop!(Sub, sub);
impl_binop!(Mul, mul);
impl_binop!(Div, div);

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
