//! A constant takes arena space only when something reads it from memory:
//! a splat read by elementwise kernels is an immediate there (the broadcast
//! zeros of a convnet's gradient used to take 30 MB of `cnn`'s arena).

use lossgraph_compiler::fusion::{self, FusionOptions};
use lossgraph_compiler::lower_clif::nest::{kernel_body, BodyOptions, KernelBody};
use lossgraph_compiler::memplan::{plan_memory, Location};
use lossgraph_ir::{Builder, TensorType};

#[test]
fn a_splat_read_only_as_an_immediate_has_no_buffer_and_a_matmul_operand_has_one() {
    let b = Builder::new("consts");
    let x = b.input("x", TensorType::f32([64, 64]));
    let zeros = b.full(0.0, &[64, 64]);
    let ones = b.full(1.0, &[64, 64]);
    let e = &x + &zeros;
    let m = x.matmul(&ones);
    b.output("e", &e);
    b.output("m", &m);
    let (zeros, ones) = (zeros.id(), ones.id());
    let g = b.finish().unwrap();
    let plan = fusion::plan(&g, &FusionOptions::default()).unwrap();
    let bodies: Vec<KernelBody> = (0..plan.kernels.len())
        .map(|k| kernel_body(&plan, k, &BodyOptions::default()))
        .collect::<Result<_, _>>()
        .unwrap();
    let mem = plan_memory(&plan, &bodies).unwrap();
    assert_eq!(
        mem.location[zeros.index()],
        None,
        "the splat read as an immediate"
    );
    assert!(
        matches!(mem.location[ones.index()], Some(Location::Arena(_))),
        "the matmul operand: {:?}",
        mem.location[ones.index()]
    );
    // x, ones, e and m: four 16 KiB buffers (plus alignment), not five.
    let buf = 64 * 64 * 4;
    assert!(
        mem.size >= 4 * buf && mem.size < 5 * buf,
        "arena {} bytes",
        mem.size
    );
}
