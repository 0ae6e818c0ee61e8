//! Data is validated at the front end's boundary (issue 15): arrays must
//! have the input's rank and sample shape, targets the output's (with the
//! trailing axis of 1 Keras adds or drops), sparse class labels must lie in
//! `[0, classes)`, and a dtype conversion that cannot be exact (a
//! fractional, NaN or out-of-range label; an integer too large for f32) is an
//! error naming the array, the row and the value — never a silent cast.

use lossgraph::layers::{Dense, Input};
use lossgraph::{CompileOptions, FitOptions, HostTensor, Loss, Model, Optimizer, Sequential};

fn f32s(shape: &[usize], v: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, v).unwrap()
}

fn i32s(shape: &[usize], v: Vec<i32>) -> HostTensor {
    HostTensor::i32(shape, v).unwrap()
}

/// x: 2 features → Dense(7, softmax) compiled with `loss`.
fn model(loss: &str, units: usize) -> Model {
    let mut m = Sequential::new("m")
        .add(Input::new(&[2]))
        .add(Dense::new(units).activation("softmax").name("probs"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::from_name(loss).unwrap(),
    ))
    .unwrap();
    m
}

fn x(n: usize) -> HostTensor {
    f32s(&[n, 2], (0..2 * n).map(|i| i as f32 * 0.1).collect())
}

fn fit(m: &mut Model, x: HostTensor, y: HostTensor) -> Result<(), String> {
    m.fit(
        &[x],
        &[y],
        FitOptions::new().epochs(1).batch_size(2).verbose(false),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn fit_err(m: &mut Model, x: HostTensor, y: HostTensor) -> String {
    fit(m, x, y).expect_err("fit accepted the data")
}

#[test]
fn valid_sparse_labels_train_as_n_or_n_by_1_int_or_integral_float() {
    let mut m = model("sparse_categorical_crossentropy", 7);
    let labels = vec![0, 6, 3, 1];
    fit(&mut m, x(4), i32s(&[4], labels.clone())).unwrap();
    fit(&mut m, x(4), i32s(&[4, 1], labels.clone())).unwrap();
    let floats: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    fit(&mut m, x(4), f32s(&[4], floats.clone())).unwrap();
    fit(&mut m, x(4), f32s(&[4, 1], floats)).unwrap();
}

#[test]
fn out_of_range_sparse_labels_are_errors_naming_row_and_value() {
    for (labels, row, value) in [
        (vec![0, 1, -1, 2], 2, -1),
        (vec![7, 1, 0, 2], 0, 7),
        (vec![0, 1, 2, i32::MAX], 3, i32::MAX),
        (vec![0, i32::MIN, 2, 3], 1, i32::MIN),
    ] {
        let mut m = model("sparse_categorical_crossentropy", 7);
        let e = fit_err(&mut m, x(4), i32s(&[4], labels));
        assert_eq!(
            e,
            format!(
                "data 'y': row {row} holds the label {value}, outside [0, 7): output 'probs' has 7 classes (sparse_categorical_crossentropy)"
            )
        );
    }
    // The same through train_on_batch and evaluate (one check per call).
    let mut m = model("sparse_categorical_crossentropy", 7);
    let e = m
        .train_on_batch(&[x(2)], &[i32s(&[2, 1], vec![3, 9])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1 holds the label 9, outside [0, 7)"), "{e}");
    let e = m
        .evaluate(&[x(2)], &[i32s(&[2], vec![-5, 0])], 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 0 holds the label -5, outside [0, 7)"),
        "{e}"
    );
}

#[test]
fn float_labels_that_are_no_integer_are_errors() {
    for (v, row, shown) in [
        (f32::NAN, 1, "NaN"),
        (2.5, 1, "2.5"),
        (f32::INFINITY, 1, "inf"),
        (3e9, 1, "3000000000"),
        (-2147483904.0, 1, "-2147484000"),
    ] {
        let mut m = model("sparse_categorical_crossentropy", 7);
        let e = fit_err(&mut m, x(3), f32s(&[3], vec![0.0, v, 1.0]));
        assert_eq!(
            e,
            format!(
                "data 'y': row {row} holds {shown}: this array must hold integers (i32, from -2147483648 to 2147483647)"
            )
        );
    }
    // A float label that is an integer but not a class is a range error.
    let mut m = model("sparse_categorical_crossentropy", 7);
    let e = fit_err(&mut m, x(2), f32s(&[2], vec![7.0, 0.0]));
    assert!(e.contains("row 0 holds the label 7, outside [0, 7)"), "{e}");
}

#[test]
fn nan_one_hot_labels_do_not_become_a_class_under_class_weights() {
    let mut m = model("categorical_crossentropy", 3);
    let mut y = vec![0.0f32; 12];
    for (r, c) in [(0, 0), (1, 2), (2, 1), (3, 1)] {
        y[r * 3 + c] = 1.0;
    }
    y[3 * 2] = f32::NAN;
    let e = m
        .fit(
            &[x(4)],
            &[f32s(&[4, 3], y)],
            FitOptions::new()
                .epochs(1)
                .batch_size(2)
                .verbose(false)
                .class_weight([(0, 2.0)]),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "data 'class_weight': the targets' row 2, element 0 holds NaN, which is no class"
    );
}

#[test]
fn x_must_have_the_input_rank_and_sample_shape() {
    let mut m = model("sparse_categorical_crossentropy", 7);
    let y = i32s(&[4], vec![0, 1, 2, 3]);
    for shape in [vec![4, 2, 1], vec![4, 1, 2], vec![4], vec![2, 4]] {
        let n: usize = shape.iter().product();
        let xs = f32s(&shape, vec![0.5; n]);
        let e = fit_err(&mut m, xs, y.clone());
        let first = shape[0];
        assert_eq!(
            e,
            format!(
                "data 'x': expected {first} samples of shape [2] (an array of shape [{first}, 2]), got an array of shape {shape:?}"
            )
        );
    }
    // predict checks the same.
    let e = m
        .predict(&[f32s(&[3, 2, 1], vec![0.0; 6])], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("got an array of shape [3, 2, 1]"), "{e}");
}

#[test]
fn y_must_have_the_output_shape_up_to_a_trailing_axis_of_one() {
    // mse on a (N, 1) output: y (N, 1) and (N,) are fine, (N, 1, 1) too.
    let mut m = model("mse", 1);
    for shape in [vec![4, 1], vec![4], vec![4, 1, 1]] {
        fit(&mut m, x(4), f32s(&shape, vec![0.5; 4])).unwrap();
    }
    // (N, 2) for a (N, 2) output; its transpose-like (N, 1, 2) is not.
    let mut m = model("mse", 2);
    fit(&mut m, x(4), f32s(&[4, 2], vec![0.5; 8])).unwrap();
    for shape in [vec![4, 1, 2], vec![4, 2, 1, 1], vec![4, 1], vec![2, 4]] {
        let n: usize = shape.iter().product();
        let e = fit_err(&mut m, x(4), f32s(&shape, vec![0.5; n]));
        assert_eq!(
            e,
            format!(
                "data 'y': expected 4 targets of shape [2] for output 'probs' (mean_squared_error): an array of shape [4, 2] (or with a trailing axis of 1 added or removed), got an array of shape {shape:?}"
            )
        );
    }
    // Sparse labels: (N,) or (N, 1), not (N, 1, 1) nor one-hot (N, 7).
    let mut m = model("sparse_categorical_crossentropy", 7);
    for shape in [vec![4, 1, 1], vec![4, 7]] {
        let n: usize = shape.iter().product();
        let e = fit_err(&mut m, x(4), i32s(&shape, vec![0; n]));
        assert!(
            e.contains(&format!("expected 4 targets of shape [] for output 'probs' (sparse_categorical_crossentropy): an array of shape [4] (or with a trailing axis of 1 added or removed), got an array of shape {shape:?}")),
            "{e}"
        );
    }
}

#[test]
fn int_targets_for_float_losses_must_be_exact_in_f32() {
    let mut m = model("mse", 1);
    fit(&mut m, x(2), i32s(&[2, 1], vec![1, 16_777_216])).unwrap();
    let e = fit_err(&mut m, x(2), i32s(&[2, 1], vec![1, 16_777_217]));
    assert_eq!(
        e,
        "data 'y': row 1 holds 16777217: an f32 array takes integers of magnitude at most 16777216 exactly"
    );
}
