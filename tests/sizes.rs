//! Sizes are checked before anything is allocated: shape products that
//! overflow and weights beyond the memory budget are errors naming the
//! layer, the weight and the shape, raised before any initialiser runs (so
//! these tests allocate nothing large). The budget tests assume the default
//! budget (half of physical memory, `LOSSGRAPH_MEMORY_BUDGET` unset) is
//! below 4 TiB.

use lossgraph::layers::{Dense, Flatten, Input, Reshape};
use lossgraph::{Model, Result, Sequential};

const HUGE: usize = 1 << 62;

fn err(m: Result<Model>) -> String {
    match m {
        Ok(_) => panic!("the model was built"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "'{n}' missing from: {msg}");
    }
}

#[test]
fn a_kernel_whose_element_count_wraps_names_layer_and_shape() {
    // 3 · 2⁶² elements wrap a usize (they were a `capacity overflow` panic).
    let e = err(Sequential::new("m")
        .add(Input::new(&[3]))
        .add(Dense::new(HUGE).name("wide"))
        .build());
    assert_has(
        &e,
        &[
            "layer 'wide'",
            "weight 'kernel' f32[3,4611686018427387904]",
            "overflows",
        ],
    );
    // The same from the input side: a 2⁶²-wide input (its parameter count wrapped to 35).
    let e = err(Sequential::new("m")
        .add(Input::new(&[HUGE]))
        .add(Dense::new(4).name("out"))
        .build());
    assert_has(
        &e,
        &["layer 'out'", "f32[4611686018427387904,4]", "overflows"],
    );
}

#[test]
fn weights_beyond_the_memory_budget_are_refused_before_initialisation() {
    // 2²⁰ × 2²⁰ f32 = 4 TiB: refused before the initialiser draws a value.
    let side = 1 << 20;
    let start = std::time::Instant::now();
    let e = err(Sequential::new("m")
        .add(Input::new(&[side]))
        .add(Dense::new(side).name("big"))
        .build());
    assert_has(
        &e,
        &[
            "layer 'big'",
            "weight 'kernel' f32[1048576,1048576]",
            "needs 4398046511104 bytes (4.0 TiB)",
            "memory budget",
            "LOSSGRAPH_MEMORY_BUDGET",
        ],
    );
    assert!(start.elapsed().as_secs() < 5, "nothing was initialised");
}

#[test]
fn a_layer_on_an_input_too_large_to_address_is_refused() {
    // No weights: the per-sample shape itself holds 2¹²⁴·3 elements.
    let e = err(Sequential::new("m")
        .add(Input::new(&[HUGE, HUGE, 3]))
        .add(Flatten::new().name("flat"))
        .build());
    assert_has(
        &e,
        &[
            "layer 'flat'",
            "f32[2,4611686018427387904,4611686018427387904,3]",
            "larger than",
        ],
    );
}

#[test]
fn reshape_targets_whose_product_wraps_are_refused() {
    let huge = HUGE as isize;
    for target in [vec![huge, huge], vec![-1, huge, huge]] {
        let e = err(Sequential::new("m")
            .add(Input::new(&[8]))
            .add(Reshape::new(&target).name("r"))
            .build());
        assert_has(&e, &["layer 'r'", "cannot reshape samples of shape [8]"]);
    }
    let e = err(Sequential::new("m")
        .add(Input::new(&[HUGE, HUGE]))
        .add(Reshape::new(&[-1]).name("r"))
        .build());
    assert_has(&e, &["layer 'r'", "too many elements"]);
}
