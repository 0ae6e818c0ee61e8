//! Structural tests of `grad`, `append_gradients` and `total_loss`: which
//! gradients exist, their types, roles, scopes and output names, and errors.
//! (Values are checked in `autodiff_values.rs` and by finite differences.)

use lossgraph_compiler::{append_gradients, grad, total_loss, CompileError};
use lossgraph_ir::{
    verify, Builder, DType, Graph, LossReason, NodeId, Op, Role, Tensor, TensorType,
};

fn loss_role(output: &str, weight: f32) -> Role {
    Role::CompiledLoss {
        output: output.into(),
        weight,
    }
}

#[test]
fn gradient_has_the_params_type_and_gradient_role() {
    let b = Builder::new("g");
    let w = b.param("w", TensorType::f32([3, 2]));
    b.set_scope("dense");
    let l = (&w * &w).sum_all();
    b.output("l", &l);
    let (wid, lid) = (w.id(), l.id());
    drop((w, l));
    let mut g = b.finish().unwrap();
    let before = g.len();
    let r = grad(&mut g, lid, &[wid]).unwrap();
    let gid = r[0].expect("sum(w*w) depends on w");
    verify(&g).unwrap();
    assert!(g.len() > before);
    let n = g.node(gid);
    assert_eq!(n.ty, TensorType::f32([3, 2]));
    assert_eq!(n.role, Role::Gradient);
    assert_eq!(n.scope, "dense");
    for id in g.node_ids() {
        if id.index() >= before {
            let n = g.node(id);
            assert_eq!(n.role, Role::Gradient, "{n:?}");
            assert_eq!(n.scope, "dense", "{n:?}");
        }
    }
}

/// `of = Σ f(x) + Σ x_other`; returns (graph, of, x).
fn through(f: impl Fn(&Tensor) -> Tensor) -> (Graph, NodeId, NodeId) {
    let b = Builder::new("nd");
    let x = b.input("x", TensorType::f32([4]));
    let other = b.input("other", TensorType::f32([4]));
    let l = f(&x).sum_all() + other.sum_all();
    b.output("l", &l);
    let (xid, lid) = (x.id(), l.id());
    drop((x, other, l));
    (b.finish().unwrap(), lid, xid)
}

/// A tensor function under test.
type Unary = dyn Fn(&Tensor) -> Tensor;

#[test]
fn non_differentiable_paths_give_none() {
    let cases: Vec<(&str, Box<Unary>)> = vec![
        ("stop_gradient", Box::new(|x| x.stop_gradient())),
        ("gt", Box::new(|x| x.gt(0.5))),
        ("eq", Box::new(|x| x.eq(x))),
        ("sign", Box::new(|x| x.sign() * 3.0)),
        ("cast", Box::new(|x| x.cast(DType::I32).cast(DType::F32))),
        (
            "argmax+one_hot",
            Box::new(|x| x.reshape(&[2, 2]).argmax(1).one_hot(3)),
        ),
        ("select mask", Box::new(|x| x.select(1.0, 2.0))),
        (
            "random",
            Box::new(|x| {
                let b = x.builder();
                let step = b.input("step", TensorType::i32([]));
                b.random_uniform(&step, 7, &[4]) + x.stop_gradient()
            }),
        ),
    ];
    for (what, f) in cases {
        let (mut g, l, x) = through(f);
        let n = g.len();
        let r = grad(&mut g, l, &[x]).unwrap();
        assert_eq!(r, vec![None], "{what}");
        verify(&g).unwrap();
        assert_eq!(g.len(), n, "{what}: no nodes should be added");
    }
}

#[test]
fn integer_values_and_unrelated_nodes_get_none() {
    let b = Builder::new("int");
    let x = b.input("x", TensorType::f32([3]));
    let k = b.input("k", TensorType::i32([3]));
    let u = b.param("unused", TensorType::f32([2]));
    let l = (&x * k.cast(DType::F32)).sum_all();
    b.output("l", &l);
    let ids = [k.id(), u.id(), x.id()];
    let lid = l.id();
    drop((x, k, u, l));
    let mut g = b.finish().unwrap();
    let r = grad(&mut g, lid, &ids).unwrap();
    assert!(r[0].is_none() && r[1].is_none() && r[2].is_some(), "{r:?}");
}

#[test]
fn grad_of_itself_is_one_and_errors_name_the_node() {
    let b = Builder::new("e");
    let x = b.input("x", TensorType::f32([2]));
    b.set_scope("layer");
    let y = x.exp();
    let s = y.sum_all();
    b.output("s", &s);
    let (xid, yid, sid) = (x.id(), y.id(), s.id());
    drop((x, y, s));
    let mut g = b.finish().unwrap();
    let r = grad(&mut g, sid, &[sid]).unwrap();
    let one = g.node(r[0].unwrap());
    assert_eq!(one.op, Op::Const(lossgraph_ir::Literal::F32(vec![1.0])));

    let before = g.clone();
    let e = grad(&mut g, yid, &[xid]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("%{}", yid.index())) && msg.contains("exp"),
        "{msg}"
    );
    assert!(msg.contains("layer") && msg.contains("f32[2]"), "{msg}");
    assert!(matches!(e, CompileError::Node { .. }));
    assert_eq!(g.len(), before.len(), "graph unchanged on error");
    assert!(grad(&mut g, NodeId::new(999), &[xid]).is_err());
    assert!(grad(&mut g, sid, &[NodeId::new(999)]).is_err());
}

#[test]
fn append_gradients_names_outputs_and_zero_fills() {
    let b = Builder::new("ag");
    let x = b.input("x", TensorType::f32([2, 3]));
    let w = b.with_scope("dense", || b.param("dense/kernel", TensorType::f32([3, 4])));
    let frozen = b.with_scope("other", || b.param("other/w", TensorType::f32([5])));
    let l = x.matmul(&w).sum_all();
    b.output("loss", &l);
    let (xid, wid, fid, lid) = (x.id(), w.id(), frozen.id(), l.id());
    drop((x, w, frozen, l));
    let mut g = b.finish().unwrap();
    append_gradients(&mut g, lid, &[wid, fid]).unwrap();
    verify(&g).unwrap();
    let gw = g.output("grad/dense/kernel").unwrap();
    assert_eq!(g.node(gw).ty, TensorType::f32([3, 4]));
    let gz = g.output("grad/other/w").unwrap();
    let z = g.node(gz);
    assert_eq!(z.op, Op::Const(lossgraph_ir::Literal::F32(vec![0.0])));
    assert_eq!(
        (z.ty.clone(), z.role.clone(), z.scope.as_str()),
        (TensorType::f32([5]), Role::Gradient, "other")
    );
    let e = append_gradients(&mut g, lid, &[xid])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("param") && e.contains(&format!("%{}", xid.index())),
        "{e}"
    );
}

#[test]
fn total_loss_weights_compiled_losses_and_sums_added_ones() {
    let b = Builder::new("tl");
    let x = b.input("x", TensorType::f32([4]));
    b.set_scope("out_a");
    b.set_role(loss_role("a", 1.0));
    let la = x.sum_all();
    b.set_scope("out_b");
    b.set_role(loss_role("b", 0.5));
    let lb = (&x * &x).sum_all();
    b.set_scope("dense");
    b.set_role(Role::AddedLoss {
        reason: LossReason::ActivityRegularizer,
        call: 0,
    });
    let act = x.abs(); // non-scalar: summed by total_loss
    b.output("loss/a", &la);
    b.output("loss/b", &lb);
    b.output("added/0", &act);
    let (la_id, lb_id, act_id) = (la.id(), lb.id(), act.id());
    drop((x, la, lb, act));
    let mut g = b.finish().unwrap();
    let n0 = g.len();
    let t = total_loss(&mut g).unwrap();
    verify(&g).unwrap();
    assert_eq!(g.output("loss"), Some(t));
    assert_eq!(g.node(t).ty, TensorType::scalar());
    // mul(lb, 0.5) [+ const, + broadcast? no: scalar], add, reduce_sum(act), add
    let new: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|i| i.index() >= n0)
        .collect();
    let muls: Vec<_> = new
        .iter()
        .filter(|&&i| g.node(i).op == Op::Binary(lossgraph_ir::BinaryOp::Mul))
        .collect();
    assert_eq!(muls.len(), 1, "only the 0.5-weighted loss is scaled");
    let m = g.node(*muls[0]);
    assert_eq!(
        (m.role.clone(), m.scope.as_str()),
        (loss_role("b", 0.5), "out_b")
    );
    assert!(g.operands(*muls[0]).contains(&lb_id));
    assert!(!new.iter().any(|&i| g.operands(i).contains(&la_id)
        && g.node(i).op == Op::Binary(lossgraph_ir::BinaryOp::Mul)));
    let sums: Vec<_> = new
        .iter()
        .filter(|&&i| g.operands(i).contains(&act_id))
        .collect();
    assert_eq!(sums.len(), 1);
    assert!(matches!(g.node(*sums[0]).op, Op::Reduce { .. }));
    assert_eq!(
        g.node(t).scope,
        "dense",
        "the last add folds in the added loss"
    );
}

#[test]
fn total_loss_single_term_adds_nothing_and_errors() {
    let b = Builder::new("one");
    let x = b.input("x", TensorType::f32([4]));
    b.set_role(loss_role("y", 1.0));
    let l = x.sum_all();
    b.output("loss/y", &l);
    b.set_role(Role::Forward);
    let f = x.sum_all();
    let lid = l.id();
    drop(l);
    let mut g = b.finish().unwrap();
    let n = g.len();
    assert_eq!(total_loss(&mut g).unwrap(), lid);
    assert_eq!(g.len(), n);

    // a loss/<o> output that is not a compiled-loss node
    let b = Builder::from_graph(g.clone());
    b.output("loss/z", &b.tensor(f.id()));
    let mut g2 = b.finish().unwrap();
    let e = total_loss(&mut g2).unwrap_err().to_string();
    assert!(e.contains("loss/z") && e.contains("forward"), "{e}");

    let mut empty = Graph::new("empty");
    assert!(total_loss(&mut empty)
        .unwrap_err()
        .to_string()
        .contains("no 'loss/<output>'"));
}
