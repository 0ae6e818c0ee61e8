"""Writes the small Keras-saved files of tests/data/keras/ (run with Keras 3 and JAX):

    KERAS_BACKEND=jax python tools/keras_testdata.py tests/data/keras

For each model NAME it writes NAME.keras (model.save), NAME.weights.h5
(model.save_weights) and NAME.expected.json: the inputs it fed, Keras's
inference predictions, and every variable by "<layer>/<variable>" (with the
optimizer's variable count when the model was compiled and trained), so the
Rust reader is tested against Keras's own values without Python.
Variables get random values (not Keras's initialisers: no zero bias or unit
gamma can hide a mix-up of variables).
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

RNG = np.random.default_rng(20261203)


def randomize(model):
    for v in model.weights:
        shape = tuple(v.shape)
        if "moving_variance" in v.path:
            value = RNG.uniform(0.5, 1.5, shape)
        else:
            value = RNG.normal(0.0, 0.5, shape)
        v.assign(value.astype(v.dtype))


def tensor(a):
    a = np.asarray(a)
    return {
        "dtype": str(a.dtype),
        "shape": list(a.shape),
        "data": [x.item() for x in a.ravel()],
    }


def variable_name(layer, v):
    return f"{layer.name}/{v.name}"


def all_layers(model):
    """Every layer with variables, nested models expanded, in model order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def save(model, name, out, inputs, train=None):
    if train is not None:
        x, y, loss, optimizer = train
        model.compile(optimizer=optimizer, loss=loss)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    model.save(os.path.join(out, f"{name}.keras"))
    model.save_weights(os.path.join(out, f"{name}.weights.h5"))
    feed = inputs if len(inputs) > 1 else list(inputs.values())[0]
    pred = model.predict(feed, verbose=0)
    if not isinstance(pred, (list, tuple)):
        pred = [pred]
    expected = {
        "keras_version": keras.__version__,
        "inputs": {k: tensor(v) for k, v in inputs.items()},
        "outputs": {
            t._keras_history.operation.name: tensor(p)
            for t, p in zip(model.outputs, pred)
        },
        "weights": {
            variable_name(layer, v): tensor(v.numpy())
            for layer in all_layers(model)
            for v in layer.weights
        },
        "optimizer_variables": (
            len(model.optimizer.variables) if getattr(model, "optimizer", None) is not None else 0
        ),
    }
    with open(os.path.join(out, f"{name}.expected.json"), "w") as f:
        json.dump(expected, f)
    print(f"wrote {name}: {len(expected['weights'])} variables")


def mlp(out):
    """Sequential, compiled and trained: the files hold Adam's variables."""
    m = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(5, activation="relu", kernel_regularizer="l2", name="hidden"),
            layers.Dropout(0.0, name="drop"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="mlp",
    )
    randomize(m)
    x = RNG.normal(size=(8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 8)]
    save(m, "mlp", out, {"input_layer": x[:3]}, (x, y, "categorical_crossentropy", keras.optimizers.Adam(0.01)))


def two_inputs_bn(out):
    """Functional, two inputs, BatchNormalization state, two Dense groups."""
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    ha = layers.Dense(3, activation="tanh", name="dense_a")(a)
    hb = layers.Dense(2, name="dense_b")(b)
    h = layers.Concatenate(name="join")([ha, hb])
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Activation("relu", name="act")(h)
    o = layers.Dense(1, activation="sigmoid", name="score")(h)
    m = keras.Model([a, b], o, name="two_inputs_bn")
    randomize(m)
    save(
        m,
        "two_inputs_bn",
        out,
        {
            "a": RNG.normal(size=(3, 4)).astype("float32"),
            "b": RNG.normal(size=(3, 3)).astype("float32"),
        },
    )


def conv(out):
    """Conv2D, pooling, LayerNormalization: kernel layouts and two layer classes."""
    m = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(3, 3, padding="same", activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Conv2D(2, 2, name="conv_b"),
            layers.Flatten(name="flat"),
            layers.LayerNormalization(name="ln"),
            layers.Dense(2, name="out"),
        ],
        name="convnet",
    )
    randomize(m)
    save(m, "conv", out, {"input_layer": RNG.normal(size=(2, 6, 6, 2)).astype("float32")})


def embedding(out):
    """int32 token ids through an Embedding."""
    m = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            layers.Embedding(11, 3, name="embed"),
            layers.Flatten(name="flat"),
            layers.Dense(2, name="logits"),
        ],
        name="tokens",
    )
    randomize(m)
    save(m, "embedding", out, {"input_layer": RNG.integers(0, 11, (3, 5)).astype("int32")})


def nested(out):
    """A Sequential used as a layer of a Functional model: nested groups."""
    inner = keras.Sequential(
        [keras.Input((4,)), layers.Dense(3, activation="relu", name="inner_dense")],
        name="inner",
    )
    x = keras.Input((4,), name="x")
    h = inner(x)
    o = layers.Dense(2, name="head")(h)
    m = keras.Model(x, o, name="outer")
    randomize(m)
    save(m, "nested", out, {"x": RNG.normal(size=(3, 4)).astype("float32")})


def nested_shared(out):
    """A Functional model inside a Sequential, inside a Functional that calls
    it twice (shared weights): two levels of nesting and repeated calls."""
    u = keras.Input((3,), name="u")
    hu = layers.Dense(3, activation="tanh", name="core_dense")(u)
    core = keras.Model(u, layers.BatchNormalization(name="core_bn")(hu), name="core")
    tower = keras.Sequential([keras.Input((3,)), core, layers.Dense(2, name="tower_out")], name="tower")
    p = keras.Input((3,), name="p")
    q = keras.Input((3,), name="q")
    s = layers.Add(name="sum")([tower(p), tower(q)])
    o = layers.Dense(1, name="final")(s)
    m = keras.Model([p, q], o, name="siamese")
    randomize(m)
    save(
        m,
        "nested_shared",
        out,
        {
            "p": RNG.normal(size=(3, 3)).astype("float32"),
            "q": RNG.normal(size=(3, 3)).astype("float32"),
        },
    )


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/keras"
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(7)
    for make in (mlp, two_inputs_bn, conv, embedding, nested, nested_shared):
        make(out)
