//! Sizes are checked before anything is allocated: shape products that
//! overflow and weights beyond the memory budget are errors naming the
//! layer, the weight and the shape, raised before any initialiser runs (so
//! these tests allocate nothing large). The budget tests assume the default
//! budget (half of physical memory, `LOSSGRAPH_MEMORY_BUDGET` unset) is
//! below 4 TiB.

use lossgraph::layers::{
    AveragePooling2D, Conv2D, Conv2DTranspose, Dense, Flatten, Input, MaxPooling2D, Reshape,
};
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

#[test]
fn transposed_conv_geometry_that_overflows_names_layer_and_keys() {
    // A 2⁶⁴−1 kernel: the full output extent (n−1)·s + (k−1)·d + 1 wraps
    // (it was an add-overflow panic in the geometry).
    let e = err(Sequential::new("m")
        .add(Input::new(&[3, 4, 2]))
        .add(
            Conv2DTranspose::new(2, [usize::MAX, 3])
                .strides(&[3, 2])
                .output_padding(Some(&[2, 0]))
                .name("up"),
        )
        .build());
    assert_has(
        &e,
        &[
            "layer 'up'",
            "Conv2DTranspose on spatial axis 0",
            "kernel_size [18446744073709551615, 3]",
            "input extent 3, kernel size 18446744073709551615, stride 3",
            "overflowing",
        ],
    );
    // A 2⁶³ stride: (n−1)·s wraps (a multiply-overflow panic).
    let e = err(Sequential::new("m")
        .add(Input::new(&[3, 4, 2]))
        .add(
            Conv2DTranspose::new(3, [3, 3])
                .strides(&[1 << 63, 2])
                .padding("same")
                .output_padding(Some(&[1, 1]))
                .name("up"),
        )
        .build());
    assert_has(
        &e,
        &[
            "layer 'up'",
            "strides [9223372036854775808, 2]",
            "overflowing",
        ],
    );
    // On a 1-cell axis the extent fits, but the end padding span − 1 +
    // output_padding (2⁶³) is no isize (a subtract-overflow panic).
    let e = err(Sequential::new("m")
        .add(Input::new(&[1, 4, 2]))
        .add(
            Conv2DTranspose::new(2, [(1 << 63) + 1, 3])
                .strides(&[2, 1])
                .output_padding(Some(&[1, 0]))
                .name("up"),
        )
        .build());
    assert_has(
        &e,
        &[
            "layer 'up'",
            "kernel_size [9223372036854775809, 3]",
            "overflow the transposed geometry",
        ],
    );
}

#[test]
fn a_conv_dilation_padding_beyond_addressable_sizes_is_an_error() {
    // Dilation 2⁶² with `same` pads 2⁶² cells on each side: the padded image
    // is refused by shape inference, and the conv stops there (its output
    // rows used to be multiplied from the failed pad's shape: a panic).
    let e = err(Sequential::new("m")
        .add(Input::new(&[5, 5, 2]))
        .add(
            Conv2D::new(2, [3, 3])
                .dilation_rate(&[1 << 62, 1])
                .padding("same")
                .name("c"),
        )
        .build());
    assert_has(&e, &["layer 'c'", "4611686018427387904"]);
}

#[test]
fn a_pool_window_larger_than_the_input_costs_nothing_to_build() {
    // A 2 × 2³¹ average pool on a 5 × 5 image: with `same` padding Keras
    // pools the real cells of each window (output 3 × 3); its real-cell
    // counts were found by visiting all 2³¹ cells of each window (10 s).
    for max in [false, true] {
        let start = std::time::Instant::now();
        let pool = if max {
            MaxPooling2D::new([2, 1 << 31])
        } else {
            AveragePooling2D::new([2, 1 << 31])
        };
        let m = Sequential::new("m")
            .add(Input::new(&[5, 5, 3]))
            .add(pool.strides(&[2, 2]).padding("same").name("pool"))
            .build()
            .expect("a `same` pool larger than its input builds");
        let summary = m.summary().expect("summary");
        assert!(summary.contains("(None, 3, 3, 3)"), "{summary}");
        assert!(
            start.elapsed().as_secs_f64() < 2.0,
            "built in {:?}",
            start.elapsed()
        );
        // With `valid` padding the window does not fit: an error.
        let pool = if max {
            MaxPooling2D::new([2, 1 << 31])
        } else {
            AveragePooling2D::new([2, 1 << 31])
        };
        let e = err(Sequential::new("m")
            .add(Input::new(&[5, 5, 3]))
            .add(pool.name("pool"))
            .build());
        assert_has(
            &e,
            &[
                "layer 'pool'",
                "2147483648",
                "larger than the input extent 5",
            ],
        );
    }
}
