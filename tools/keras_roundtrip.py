"""Checks that Keras opens what lossgraph wrote (run by tests/keras_files.rs):

    KERAS_BACKEND=jax python tools/keras_roundtrip.py MODEL.keras MODEL.weights.h5 EXPECTED.json

EXPECTED.json holds lossgraph's inputs, predictions and variables
("<layer>/<variable>"). The script loads MODEL.keras with
keras.saving.load_model, checks every variable is bit-identical to
lossgraph's and the predictions agree (|d| <= 1e-5 + 1e-5 |want|), then loads
MODEL.weights.h5 into a fresh model from the same config and checks the
variables again. Prints "round trip OK ..." and exits 0, or exits 1 naming the
first mismatch.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def array(t):
    return np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])


def layers_with_variables(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from layers_with_variables(layer)
        else:
            yield layer


def check_weights(model, want, what):
    got = {
        f"{layer.name}/{v.name}": np.asarray(v.numpy())
        for layer in layers_with_variables(model)
        for v in layer.weights
    }
    if sorted(got) != sorted(want):
        sys.exit(f"{what}: variables differ: Keras {sorted(got)}, lossgraph {sorted(want)}")
    for name, t in want.items():
        w = array(t)
        g = got[name]
        if g.shape != w.shape or g.dtype != w.dtype or g.tobytes() != w.tobytes():
            sys.exit(f"{what}: variable {name} differs: Keras {g.ravel()[:6]}, lossgraph {w.ravel()[:6]}")
    return len(got)


def main(keras_file, weights_file, expected_file):
    with open(expected_file) as f:
        exp = json.load(f)
    model = keras.saving.load_model(keras_file)
    n = check_weights(model, exp["weights"], keras_file)
    names = [t.name for t in model.inputs]
    feed = [array(exp["inputs"][n_]) for n_ in names]
    pred = model.predict(feed if len(feed) > 1 else feed[0], verbose=0)
    if not isinstance(pred, (list, tuple)):
        pred = [pred]
    outs = [t._keras_history.operation.name for t in model.outputs]
    worst = 0.0
    for o, p in zip(outs, pred):
        w = array(exp["outputs"][o]).astype(np.float64)
        p = np.asarray(p, dtype=np.float64)
        if p.shape != w.shape:
            sys.exit(f"{keras_file}: output {o} has shape {p.shape}, lossgraph {w.shape}")
        err = np.abs(p - w) - (1e-5 + 1e-5 * np.abs(w))
        if (err > 0).any():
            i = int(np.argmax(err))
            sys.exit(f"{keras_file}: output {o}[{i}]: Keras {p.ravel()[i]}, lossgraph {w.ravel()[i]}")
        worst = max(worst, float(np.max(np.abs(p - w))))
    fresh = keras.saving.load_model(keras_file)
    for v in fresh.weights:
        v.assign(np.zeros(v.shape, v.dtype))
    fresh.load_weights(weights_file)
    check_weights(fresh, exp["weights"], weights_file)
    print(
        f"round trip OK: {os.path.basename(keras_file)}: {n} variables bit-identical, "
        f"{len(outs)} output(s), largest |difference| {worst:.2e}; "
        f"{os.path.basename(weights_file)} loads the same variables"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
