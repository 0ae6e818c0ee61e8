//! Convolution, pooling and spatial layers in the front end: Keras
//! auto-names, output shapes and parameter counts in `summary()`, and
//! hand-computed values of the transposed, depthwise, padding, cropping and
//! upsampling layers on both engines. (Conv1D/Conv2D and the pooling layers
//! are checked against Keras itself by the p08–p10 cases in `keras_cases.rs`.)

use lossgraph::layers::{
    Conv1DTranspose, Conv2D, Conv2DTranspose, Cropping2D, DepthwiseConv2D, Flatten,
    GlobalAveragePooling2D, Input, MaxPooling2D, SeparableConv2D, UpSampling1D, ZeroPadding1D,
};
use lossgraph::{CompileOptions, Engine, HostTensor, Layer, Loss, Model, Optimizer, Sequential};

fn compiled(mut m: Model, engine: Engine) -> Model {
    m.compile(CompileOptions::new(Optimizer::sgd(0.1), Loss::MeanSquaredError).engine(engine))
        .unwrap();
    m
}

#[test]
fn auto_names_shapes_and_param_counts() {
    let m = Sequential::new("cnn")
        .add(Input::new(&[9, 9, 1]))
        .add(Conv2D::new(4, [3, 3]).activation("relu"))
        .add(Conv2D::new(8, [3, 3]).padding("same"))
        .add(MaxPooling2D::new([2, 2]))
        .add(DepthwiseConv2D::new([3, 3]).depth_multiplier(2))
        .add(SeparableConv2D::new(5, [1, 1]))
        .add(
            Conv2DTranspose::new(3, [3, 3])
                .strides(&[2, 2])
                .padding("same"),
        )
        .add(GlobalAveragePooling2D::new())
        .build()
        .unwrap();
    let names = m.layer_names();
    assert_eq!(
        names[1..],
        [
            "conv2d",
            "conv2d_1",
            "max_pooling2d",
            "depthwise_conv2d",
            "separable_conv2d",
            "conv2d_transpose",
            "global_average_pooling2d"
        ]
    );
    let s = m.summary().unwrap();
    // 9×9 → valid 3×3: 7×7×4 (3·3·1·4 + 4 = 40 params) → same: 7×7×8 (3·3·4·8 + 8 = 296)
    // → pool 2: 3×3×8 → depthwise ×2, valid: 1×1×16 (3·3·8·2 + 16 = 160)
    // → separable 1×1 to 5: 1·1·16 + 16·5 + 5 = 101 → transpose same stride 2: 2×2×3
    // (3·3·3·5 + 3 = 138) → GAP: 3.
    for (shape, params) in [
        ("(None, 7, 7, 4)", "40"),
        ("(None, 7, 7, 8)", "296"),
        ("(None, 3, 3, 8)", "0"),
        ("(None, 1, 1, 16)", "160"),
        ("(None, 1, 1, 5)", "101"),
        ("(None, 2, 2, 3)", "138"),
        ("(None, 3)", "0"),
    ] {
        assert!(
            s.lines()
                .any(|l| l.contains(shape) && l.split_whitespace().any(|w| w == params)),
            "no row with {shape} and {params} params in\n{s}"
        );
    }
}

fn run(
    m: impl Fn() -> Model,
    x: HostTensor,
    weights: &[(&str, HostTensor)],
    want: &[f32],
    shape: &[usize],
) {
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut m = compiled(m(), engine);
        for (p, w) in weights {
            m.set_weight(p, w.clone()).unwrap();
        }
        let y = m.predict(std::slice::from_ref(&x), x.shape()[0]).unwrap();
        assert_eq!(y[0].shape(), shape, "{engine:?}");
        let got: Vec<f32> = y[0].to_f64().iter().map(|&v| v as f32).collect();
        assert_eq!(got, want, "{engine:?}");
    }
}

fn t(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape, v.to_vec()).unwrap()
}

#[test]
fn transposed_convolution_scatters_without_flipping() {
    // x = [1, 2], kernel [1, 10]: valid stride 2 gives length 2·2 = 4:
    // [1·1, 1·10, 2·1, 2·10]; stride 1 overlaps: [1, 10 + 2, 20].
    let k = t(&[2, 1, 1], &[1.0, 10.0]);
    let b = t(&[1], &[0.5]);
    let m = |s: usize| {
        move || {
            Sequential::new("tr")
                .add(Input::new(&[2, 1]))
                .add(Conv1DTranspose::new(1, 2).strides(&[s]).name("tr"))
                .build()
                .unwrap()
        }
    };
    let w = [("tr/kernel", k.clone()), ("tr/bias", b.clone())];
    run(
        m(2),
        t(&[1, 2, 1], &[1.0, 2.0]),
        &w,
        &[1.5, 10.5, 2.5, 20.5],
        &[1, 4, 1],
    );
    run(
        m(1),
        t(&[1, 2, 1], &[1.0, 2.0]),
        &w,
        &[1.5, 12.5, 20.5],
        &[1, 3, 1],
    );
}

#[test]
fn depthwise_keeps_channels_apart() {
    // 1×1 depthwise kernel, multiplier 2: channel c gives outputs 2c, 2c+1.
    let m = || {
        Sequential::new("dw")
            .add(Input::new(&[1, 1, 2]))
            .add(
                DepthwiseConv2D::new([1, 1])
                    .depth_multiplier(2)
                    .use_bias(false)
                    .name("dw"),
            )
            .build()
            .unwrap()
    };
    let k = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    run(
        m,
        t(&[1, 1, 1, 2], &[10.0, 100.0]),
        &[("dw/kernel", k)],
        &[10.0, 20.0, 300.0, 400.0],
        &[1, 1, 1, 4],
    );
}

#[test]
fn padding_cropping_and_upsampling() {
    let m = || {
        Sequential::new("pad")
            .add(Input::new(&[2, 1]))
            .add(ZeroPadding1D::new((1, 2)))
            .add(UpSampling1D::new(2))
            .build()
            .unwrap()
    };
    run(
        m,
        t(&[1, 2, 1], &[3.0, 4.0]),
        &[],
        &[0.0, 0.0, 3.0, 3.0, 4.0, 4.0, 0.0, 0.0, 0.0, 0.0],
        &[1, 10, 1],
    );
    let m = || {
        Sequential::new("crop")
            .add(Input::new(&[3, 3, 1]))
            .add(Cropping2D::new([(1, 0), (0, 1)]))
            .add(Flatten::new())
            .build()
            .unwrap()
    };
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    run(m, t(&[1, 3, 3, 1], &x), &[], &[4.0, 5.0, 7.0, 8.0], &[1, 4]);
    let e = Sequential::new("bad")
        .add(Input::new(&[2, 2, 1]))
        .add(Cropping2D::new([(1, 1), (0, 0)]).name("crop"))
        .build()
        .err()
        .expect("cropping everything is an error");
    assert!(e.to_string().contains("crop"), "{e}");
    assert_eq!(Cropping2D::new([(0, 0), (0, 0)]).class_name(), "Cropping2D");
}
