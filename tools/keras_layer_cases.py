#!/usr/bin/env python3
"""Generates the Keras reference cases of tests/data/keras-layer-cases/.

Each case is produced by real Keras 3 (JAX backend, CPU, float32) in the
format of shared/keras-cases/README.md (model.json, weights.safetensors,
data.safetensors, case.json, expected.safetensors; no model.keras, to keep
the folders small), plus summary.txt: Keras's `model.summary()` text as
printed when stdout is not a terminal (line length 76).

The cases cover the layers the shared p08-p13 cases do not: DepthwiseConv2D,
SeparableConv2D, Conv1D/2DTranspose (strides, output_padding), ZeroPadding,
Cropping and UpSampling (1D and 2D), BatchNormalization after Conv2D (over
N, H, W) and after Conv1D (over N, T) with center/scale off,
LayerNormalization over several axes and with rms_scaling, and
GroupNormalization.

Usage (the tests do not need Python; rerun only to regenerate):
    python3 -m venv /work/venv-keras
    /work/venv-keras/bin/pip install keras jax jaxlib
    /work/venv-keras/bin/python tools/keras_layer_cases.py [OUT_DIR]
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import sys
import tempfile

import jax
import keras
import numpy as np
from keras import layers as L
from keras import regularizers as R

assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax"

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


# ---------------------------------------------------------------- files


def write_atomic(path, data):
    """Writes bytes to path through a temporary file in the same folder."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def safetensors_bytes(tensors):
    """The safetensors encoding of an ordered {name: float32/int32 array}."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + b"".join(blobs)


def write_json(path, value):
    write_atomic(path, (json.dumps(value, indent=1) + "\n").encode())


# ---------------------------------------------------------------- values


def initial_value(rng, path, shape):
    """Deliberately not Keras's initializers: importing them must matter.
    No bias, beta or embedding entry is zero; gamma is near 1, moving_mean
    small and non-zero, moving_variance in [0.5, 1.5]."""
    var = path.rsplit("/", 1)[1]
    n = int(np.prod(shape))
    if var == "gamma":
        v = 1.0 + rng.uniform(-0.3, 0.3, n)
    elif var == "moving_variance":
        v = rng.uniform(0.5, 1.5, n)
    elif var in ("bias", "beta", "moving_mean"):
        v = rng.uniform(0.05, 0.3, n) * rng.choice([-1.0, 1.0], n)
    else:
        fan_in = int(np.prod(shape[:-1])) or 1
        v = rng.normal(0.0, 1.2 / np.sqrt(fan_in), n)
    return v.reshape(shape).astype(np.float32)


LOSSES = {
    "mse": keras.losses.MeanSquaredError,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
}


def loss_object(loss):
    if isinstance(loss, str):
        return LOSSES[loss]()
    return loss


def serialize_loss(loss):
    if isinstance(loss, str):
        return loss
    return keras.losses.serialize(loss)


def reg_config(r):
    return keras.regularizers.serialize(r)


def var_paths(model):
    """`<layer name>/<variable name>` of every variable (Keras's own
    `variable.path` depends on the scope the layer was built in)."""
    paths = {}
    for layer in model.layers:
        for w in layer.weights:
            paths[id(w)] = f"{layer.name}/{w.name}"
    return paths


def path(model, w):
    return var_paths(model)[id(w)]


def regularization_labels(model):
    """Keras's `model.losses` order: activity losses in layer order (one per
    call: these cases are Sequential, one call per layer), then weight
    regularizers in trainable-weight order."""
    assert isinstance(model, keras.Sequential)
    labels = []
    for layer in model.layers:
        if getattr(layer, "activity_regularizer", None) is not None:
            labels.append(
                {
                    "kind": "activity",
                    "layer": layer.name,
                    "call_index": 0,
                    "regularizer": reg_config(layer.activity_regularizer),
                }
            )
    for w in model.trainable_weights:
        if w.regularizer is not None:
            layer, var = path(model, w).rsplit("/", 1)
            labels.append(
                {
                    "kind": "weight",
                    "layer": layer,
                    "variable": var,
                    "regularizer": reg_config(w.regularizer),
                }
            )
    return labels


def summary_text(model):
    out = []
    model.summary(print_fn=lambda s, **_: out.append(s))
    return "".join(out)


# ---------------------------------------------------------------- a case


def generate(out_dir, name, description, make_model, loss, optimizer, make_data,
             batch_size=4, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    model = make_model()
    json_text = model.to_json()
    paths = var_paths(model)
    weights = {
        paths[id(w)]: initial_value(rng, paths[id(w)], tuple(w.shape)) for w in model.weights
    }
    assert len(weights) == len(model.weights), "duplicate variable paths"
    x, y = make_data(rng, batch_size * steps)

    def fresh():
        m = keras.models.model_from_json(json_text)
        p = var_paths(m)
        m.set_weights([weights[p[id(w)]] for w in m.weights])
        return m

    def compiled():
        m = fresh()
        m.compile(optimizer=keras.optimizers.deserialize(
            keras.optimizers.serialize(optimizer)), loss=loss_object(loss))
        return m

    def rows(a, i):
        return a[i * batch_size:(i + 1) * batch_size]

    # Initial values: one stateless training-mode call (no assignment of
    # moving statistics), differentiated with respect to the trainables.
    m = fresh()
    x0, y0 = rows(x, 0), rows(y, 0)
    lfn = loss_object(loss)
    tv = [v.value for v in m.trainable_variables]
    ntv = [v.value for v in m.non_trainable_variables]

    def total(tv):
        pred, _, losses = m.stateless_call(tv, ntv, x0, training=True, return_losses=True)
        compiled_loss = lfn(y0, pred)
        return compiled_loss + sum(losses), (pred, compiled_loss, losses)

    (tot, (pred, comp, losses)), grads = jax.value_and_grad(total, has_aux=True)(tv)
    labels = regularization_labels(m)
    assert len(labels) == len(losses), (name, labels, losses)
    for lab, val in zip(labels, losses):
        lab["value"] = float(val)
    out_name = m.layers[-1].name
    expected_tensors = {}
    for v, g in zip(m.trainable_variables, grads):
        expected_tensors["grad/" + path(m, v)] = np.asarray(g, np.float32)
    expected_tensors["output"] = np.asarray(pred, np.float32)
    if any(isinstance(l, L.BatchNormalization) for l in m.layers):
        expected_tensors["inference_output"] = np.asarray(
            fresh().predict_on_batch(x0), np.float32)

    # train_on_batch steps, then the final variables (non-trainable included).
    t = compiled()
    per_step = [float(t.train_on_batch(rows(x, i), rows(y, i))) for i in range(steps)]
    assert abs(per_step[0] - float(tot)) <= 1e-5 + 1e-5 * abs(float(tot)), (per_step[0], tot)
    for w in t.weights:
        expected_tensors["final/" + path(t, w)] = np.asarray(w.value, np.float32)

    f = compiled()
    hist = f.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    for w, w2 in zip(f.weights, t.weights):
        np.testing.assert_allclose(np.asarray(w.value), np.asarray(w2.value), rtol=1e-5, atol=1e-6)

    case = {
        "description": description,
        "keras_version": keras.__version__,
        "backend": "jax",
        "compile": {
            "optimizer": keras.optimizers.serialize(optimizer),
            "loss": serialize_loss(loss),
            "loss_weights": None,
        },
        "train": {"batch_size": batch_size, "steps": steps, "shuffle": False},
        "expected": {
            "initial": {
                "total_loss": float(tot),
                "compiled_loss": float(comp),
                "compiled_loss_per_output": {out_name: float(comp)},
                "regularization_losses": labels,
                "outputs_checksum": float(np.sum(np.asarray(pred, np.float64))),
            },
            "per_step_loss": per_step,
            "per_step_output_losses": None,
            "fit_epoch_loss": float(hist.history["loss"][0]),
            "tolerance": TOLERANCE,
        },
    }
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    write_atomic(os.path.join(d, "model.json"), json_text.encode())
    write_atomic(os.path.join(d, "weights.safetensors"), safetensors_bytes(weights))
    data = {"x": x, "y": y}
    write_atomic(os.path.join(d, "data.safetensors"), safetensors_bytes(data))
    write_atomic(os.path.join(d, "expected.safetensors"), safetensors_bytes(expected_tensors))
    write_json(os.path.join(d, "case.json"), case)
    write_atomic(os.path.join(d, "summary.txt"), summary_text(fresh()).encode())
    print(f"{name}: total {float(tot):.6f}, {len(weights)} variables", file=sys.stderr)


# ---------------------------------------------------------------- data


def images(shape, classes=None, one_hot=False, units=None, binary=False):
    """x: float32 (N, *shape); y: int32 class ids (N,), float32 one-hot
    (N, classes), 0/1 (N, units) or regression targets (N, units)."""
    def make(rng, n):
        x = rng.normal(0.0, 1.0, (n, *shape)).astype(np.float32)
        if classes and one_hot:
            y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
        elif classes:
            y = rng.integers(0, classes, n).astype(np.int32)
        elif binary:
            y = rng.integers(0, 2, (n, units)).astype(np.float32)
        else:
            y = rng.normal(0.0, 1.0, (n, units)).astype(np.float32)
        return x, y
    return make


# ---------------------------------------------------------------- cases


def seq(name, input_shape, *layers):
    return lambda: keras.Sequential([keras.Input(input_shape, name=name + "_input"), *layers], name=name)


CASES = [
    dict(
        name="q01_depthwise_same_stride2_gap_sparse_adam",
        description="(7,7,3) -> DepthwiseConv2D 3x3 depth_multiplier 2 strides 2 same relu "
                    "(depthwise L2, variable dw/kernel) -> GlobalAveragePooling2D -> Dense softmax; "
                    "sparse_categorical_crossentropy; Adam.",
        make_model=seq("dw", (7, 7, 3),
                       L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                         activation="relu",
                                         depthwise_regularizer=R.L2(0.01), name="dw"),
                       L.GlobalAveragePooling2D(name="gap"),
                       L.Dense(3, activation="softmax", name="probs")),
        loss="sparse_categorical_crossentropy",
        optimizer=keras.optimizers.Adam(0.01),
        make_data=images((7, 7, 3), classes=3),
    ),
    dict(
        name="q02_separable_dilated_flatten_cce_rmsprop",
        description="(8,8,2) -> SeparableConv2D 4 filters 3x3 dilation 2 valid depth_multiplier 2 "
                    "tanh (depthwise L1, pointwise L2, bias L2, activity L2) -> Flatten -> Dense softmax; "
                    "categorical_crossentropy; RMSprop.",
        make_model=seq("sep", (8, 8, 2),
                       L.SeparableConv2D(4, 3, dilation_rate=2, depth_multiplier=2, activation="tanh",
                                         depthwise_regularizer=R.L1(0.002),
                                         pointwise_regularizer=R.L2(0.01),
                                         bias_regularizer=R.L2(0.05),
                                         activity_regularizer=R.L2(0.001), name="sep"),
                       L.Flatten(name="flat"),
                       L.Dense(3, activation="softmax", name="probs")),
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.RMSprop(0.005),
        make_data=images((8, 8, 2), classes=3, one_hot=True),
    ),
    dict(
        name="q03_conv2d_transpose_strides_output_padding_mse_sgd",
        description="(3,4,2) -> Conv2DTranspose 3 filters 3x3 strides 2 same output_padding 1 relu "
                    "(kernel L2) -> Conv2DTranspose 2 filters (2,3) strides (3,2) valid output_padding (2,0) "
                    "-> Flatten -> Dense; mse; SGD momentum.",
        make_model=seq("up", (3, 4, 2),
                       L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1,
                                         activation="relu", kernel_regularizer=R.L2(0.01), name="tr1"),
                       L.Conv2DTranspose(2, (2, 3), strides=(3, 2), padding="valid",
                                         output_padding=(2, 0), name="tr2"),
                       L.Flatten(name="flat"),
                       L.Dense(2, name="out")),
        loss="mse",
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        make_data=images((3, 4, 2), units=2),
    ),
    dict(
        name="q04_conv1d_transpose_valid_same_bce_adam",
        description="(5,3) -> Conv1DTranspose 4 filters k3 strides 2 valid (default output_padding) tanh "
                    "-> Conv1DTranspose 2 filters k4 strides 3 same output_padding 2 -> GlobalMaxPooling1D "
                    "-> Dense sigmoid; binary_crossentropy; Adam.",
        make_model=seq("up1", (5, 3),
                       L.Conv1DTranspose(4, 3, strides=2, activation="tanh", name="tr1"),
                       L.Conv1DTranspose(2, 4, strides=3, padding="same", output_padding=2, name="tr2"),
                       L.GlobalMaxPooling1D(name="gmp"),
                       L.Dense(1, activation="sigmoid", name="prob")),
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(0.01),
        make_data=images((5, 3), units=1, binary=True),
    ),
    dict(
        name="q05_pad_crop_upsample_2d_sparse_sgd",
        description="(5,4,2) -> ZeroPadding2D ((1,2),(0,1)) -> Conv2D 3 3x3 relu -> UpSampling2D (2,3) "
                    "nearest -> Cropping2D ((1,0),(2,1)) -> MaxPooling2D 2 -> Flatten -> Dense softmax; "
                    "sparse_categorical_crossentropy; SGD.",
        make_model=seq("pcu", (5, 4, 2),
                       L.ZeroPadding2D(((1, 2), (0, 1)), name="pad"),
                       L.Conv2D(3, 3, activation="relu", name="conv"),
                       L.UpSampling2D((2, 3), name="up"),
                       L.Cropping2D(((1, 0), (2, 1)), name="crop"),
                       L.MaxPooling2D(2, name="pool"),
                       L.Flatten(name="flat"),
                       L.Dense(3, activation="softmax", name="probs")),
        loss="sparse_categorical_crossentropy",
        optimizer=keras.optimizers.SGD(0.1),
        make_data=images((5, 4, 2), classes=3),
    ),
    dict(
        name="q06_pad_crop_upsample_1d_mse_adam",
        description="(6,2) -> ZeroPadding1D (2,1) -> Conv1D 3 k3 tanh -> UpSampling1D 3 -> Cropping1D (1,2) "
                    "-> AveragePooling1D 2 same -> Flatten -> Dense; mse; Adam.",
        make_model=seq("pcu1", (6, 2),
                       L.ZeroPadding1D((2, 1), name="pad"),
                       L.Conv1D(3, 3, activation="tanh", name="conv"),
                       L.UpSampling1D(3, name="up"),
                       L.Cropping1D((1, 2), name="crop"),
                       L.AveragePooling1D(2, padding="same", name="pool"),
                       L.Flatten(name="flat"),
                       L.Dense(2, name="out")),
        loss="mse",
        optimizer=keras.optimizers.Adam(0.01),
        make_data=images((6, 2), units=2),
    ),
    dict(
        name="q07_conv2d_batchnorm_relu_gap_mse_sgd_momentum",
        description="(6,6,2) -> Conv2D 4 3x3 (biased; the bias feeds BN, so its gradient is rounding noise "
                    "and the optimizer is SGD) -> BatchNormalization (statistics over N,H,W; gamma L2) "
                    "-> Activation relu -> GlobalAveragePooling2D -> Dense; mse; SGD momentum. "
                    "inference_output uses the initial moving statistics.",
        make_model=seq("convbn", (6, 6, 2),
                       L.Conv2D(4, 3, name="conv"),
                       L.BatchNormalization(gamma_regularizer=R.L2(0.01), name="bn"),
                       L.Activation("relu", name="relu"),
                       L.GlobalAveragePooling2D(name="gap"),
                       L.Dense(2, name="out")),
        loss="mse",
        optimizer=keras.optimizers.SGD(0.05, momentum=0.5),
        make_data=images((6, 6, 2), units=2),
        batch_size=6,
    ),
    dict(
        name="q08_conv1d_batchnorm_center_scale_off_bce_adam",
        description="(7,3) -> Conv1D 4 k3 use_bias=False -> BatchNormalization(center=False, momentum 0.9; "
                    "statistics over N,T) -> Activation tanh -> Flatten -> Dense 4 use_bias=False -> "
                    "BatchNormalization(scale=False, epsilon 0.01, beta L1) -> Dense sigmoid; "
                    "binary_crossentropy; Adam.",
        make_model=seq("seqbn", (7, 3),
                       L.Conv1D(4, 3, use_bias=False, name="conv"),
                       L.BatchNormalization(center=False, momentum=0.9, name="bn1"),
                       L.Activation("tanh", name="tanh"),
                       L.Flatten(name="flat"),
                       L.Dense(4, use_bias=False, name="dense"),
                       L.BatchNormalization(scale=False, epsilon=0.01,
                                            beta_regularizer=R.L1(0.01), name="bn2"),
                       L.Dense(1, activation="sigmoid", name="prob")),
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(0.01),
        make_data=images((7, 3), units=1, binary=True),
        batch_size=5,
    ),
    dict(
        name="q09_layernorm_axes_rms_scaling_mse_adamw",
        description="(4,3) -> Dense 5 relu -> LayerNormalization(axis [1, 2], beta L2) -> "
                    "LayerNormalization(rms_scaling=True, epsilon 1e-2; gamma only) -> Flatten -> "
                    "LayerNormalization(center=False) -> Dense; mse; AdamW.",
        make_model=seq("lnaxes", (4, 3),
                       L.Dense(5, activation="relu", name="dense"),
                       L.LayerNormalization(axis=[1, 2], beta_regularizer=R.L2(0.01), name="ln_both"),
                       L.LayerNormalization(rms_scaling=True, epsilon=1e-2, name="ln_rms"),
                       L.Flatten(name="flat"),
                       L.LayerNormalization(center=False, name="ln_flat"),
                       L.Dense(2, name="out")),
        loss="mse",
        optimizer=keras.optimizers.AdamW(0.01, weight_decay=0.01),
        make_data=images((4, 3), units=2),
    ),
    dict(
        name="q10_conv2d_groupnorm_gap_sparse_adam",
        description="(5,5,2) -> Conv2D 6 3x3 same -> GroupNormalization(groups 3, gamma L2) -> "
                    "Activation relu -> GroupNormalization(groups 2, center=False, epsilon 0.01) -> "
                    "GlobalAveragePooling2D -> Dense softmax; sparse_categorical_crossentropy; Adam.",
        make_model=seq("gn", (5, 5, 2),
                       L.Conv2D(6, 3, padding="same", name="conv"),
                       L.GroupNormalization(groups=3, gamma_regularizer=R.L2(0.01), name="gn1"),
                       L.Activation("relu", name="relu"),
                       L.GroupNormalization(groups=2, center=False, epsilon=0.01, name="gn2"),
                       L.GlobalAveragePooling2D(name="gap"),
                       L.Dense(3, activation="softmax", name="probs")),
        loss="sparse_categorical_crossentropy",
        optimizer=keras.optimizers.Adam(0.01),
        make_data=images((5, 5, 2), classes=3),
    ),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data", "keras-layer-cases")
    os.makedirs(out_dir, exist_ok=True)
    only = set(sys.argv[2:])
    for i, c in enumerate(CASES):
        if only and c["name"] not in only:
            continue
        generate(out_dir, seed=100 + i, **c)


if __name__ == "__main__":
    main()
