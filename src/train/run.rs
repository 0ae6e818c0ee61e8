//! Running programs on data: checking and converting the user's arrays,
//! slicing them into per-batch feeds, and the model's glue to the program
//! cache ([`TrainState`](super::session::TrainState)).

use super::logs::Logs;
use super::options::{Compiled, ProgramKey, Purpose, SampleWeights};
use crate::error::{position, Error, Result};
use crate::losses::Loss;
use crate::model::Model;
use lossgraph_ir::{DType, Data, HostTensor, TensorType};
use lossgraph_runtime::Feed;
use std::borrow::Cow;

/// Checked, dtype-converted data: per input and per output with a compiled
/// loss (in output order), `n` samples.
pub(super) struct Prepared<'a> {
    pub x: Vec<Cow<'a, HostTensor>>,
    pub y: Vec<Cow<'a, HostTensor>>,
    /// Sample weights, `f32[n]`, one per entry of `y`; empty when unweighted.
    pub w: Vec<Cow<'a, HostTensor>>,
    pub n: usize,
}

impl Prepared<'_> {
    /// The key of the program that runs this data for `purpose` at `batch`:
    /// the sample-weighted program when the data carries weights.
    pub fn key(&self, purpose: Purpose, batch: usize) -> ProgramKey {
        ProgramKey {
            purpose,
            batch,
            weighted: !self.w.is_empty(),
        }
    }
}

fn per_sample(t: &HostTensor) -> usize {
    t.shape().iter().skip(1).product()
}

/// The largest magnitude below which every integer is an exact `f32` (2^24).
const F32_EXACT_INT: i32 = 1 << 24;

/// `t` (the array fed as `name`) as `dtype`. `f32` → `i32` takes integral
/// values in the `i32` range only, `i32` → `f32` integers of magnitude at
/// most 2^24 (exact in `f32`); anything else is an error naming the array,
/// the row and the value.
fn convert(name: &str, t: &HostTensor, dtype: DType) -> Result<HostTensor> {
    let data = match (&t.data, dtype) {
        (Data::F32(v), DType::I32) => {
            // Every integer-valued f32 in [-2^31, 2^31) is an i32.
            let fits =
                |x: f32| x.fract() == 0.0 && (-2_147_483_648.0..2_147_483_648.0).contains(&x);
            if let Some(k) = v.iter().position(|&x| !fits(x)) {
                return Err(Error::data(
                    name,
                    format!(
                        "{} holds {}: this array must hold integers (i32, from -2147483648 to 2147483647)",
                        position(t.shape(), k),
                        v[k]
                    ),
                ));
            }
            Data::I32(v.iter().map(|&x| x as i32).collect())
        }
        (Data::I32(v), DType::F32) => {
            if let Some(k) = v
                .iter()
                .position(|x| x.unsigned_abs() > F32_EXACT_INT as u32)
            {
                return Err(Error::data(
                    name,
                    format!(
                        "{} holds {}: an f32 array takes integers of magnitude at most {F32_EXACT_INT} exactly",
                        position(t.shape(), k),
                        v[k]
                    ),
                ));
            }
            Data::F32(v.iter().map(|&x| x as f32).collect())
        }
        (d @ Data::F32(_), DType::F32) | (d @ Data::I32(_), DType::I32) => d.clone(),
    };
    Ok(HostTensor {
        ty: t.ty.with_dtype(dtype),
        data,
    })
}

/// Whether `got` is the shape of `n` targets of sample shape `want`, as
/// Keras's `squeeze_or_expand_to_same_rank` lets them be: exactly, with an
/// extra trailing axis of 1 (`[n, 1]` labels for `[n]`), or without the
/// trailing axis of 1 the sample shape ends with (`[n]` for `[n, 1]`).
fn target_shape_fits(got: &[usize], n: usize, want: &[usize]) -> bool {
    let Some((&first, g)) = got.split_first() else {
        return false;
    };
    let squeezed = |long: &[usize], short: &[usize]| {
        long.len() == short.len() + 1 && long.last() == Some(&1) && long[..short.len()] == *short
    };
    first == n && (g == want || squeezed(g, want) || squeezed(want, g))
}

/// Checks sparse class labels (the `i32` targets `t`, fed as `name`, of
/// output `output`): every one in `[0, classes)`, else an error naming the
/// row and the label (an out-of-range label would one-hot to a zero row and
/// train with a zero loss).
fn check_labels(name: &str, t: &HostTensor, classes: usize, output: &str) -> Result<()> {
    let Some(v) = t.as_i32() else {
        return Ok(());
    };
    match v
        .iter()
        .position(|&c| usize::try_from(c).map_or(true, |c| c >= classes))
    {
        Some(k) => Err(Error::data(
            name,
            format!(
                "{} holds the label {}, outside [0, {classes}): output '{output}' has {classes} classes (sparse_categorical_crossentropy)",
                position(t.shape(), k),
                v[k]
            ),
        )),
        None => Ok(()),
    }
}

fn rows(t: &HostTensor, start: usize, end: usize) -> Feed<'_> {
    // Callers pass ranges within the sample count checked by `prepare_data`.
    Feed::rows(t, start, end).unwrap_or(Feed::F32(&[]))
}

/// The samples `idx` of `t`, in that order.
pub(super) fn gather(t: &HostTensor, idx: &[usize]) -> HostTensor {
    let k = per_sample(t);
    let mut shape = t.shape().to_vec();
    if let Some(s) = shape.first_mut() {
        *s = idx.len();
    }
    let data = match &t.data {
        Data::F32(v) => Data::F32(
            idx.iter()
                .flat_map(|&i| v[i * k..(i + 1) * k].iter().copied())
                .collect(),
        ),
        Data::I32(v) => Data::I32(
            idx.iter()
                .flat_map(|&i| v[i * k..(i + 1) * k].iter().copied())
                .collect(),
        ),
    };
    HostTensor {
        ty: TensorType::new(t.ty.dtype, &shape),
        data,
    }
}

/// Orders `named` arrays by `names` (the `what` of a model, for errors): an
/// unknown, repeated or missing name is an error naming it and the names
/// the model has.
fn order_by_name<S: AsRef<str>>(
    feed: &str,
    what: &str,
    names: &[String],
    named: impl IntoIterator<Item = (S, HostTensor)>,
) -> Result<Vec<HostTensor>> {
    let mut slots: Vec<Option<HostTensor>> = vec![None; names.len()];
    for (name, t) in named {
        let name = name.as_ref();
        let Some(i) = names.iter().position(|n| n == name) else {
            return Err(Error::data(
                feed,
                format!("no {what} is named '{name}'; the model's are {names:?}"),
            ));
        };
        if slots[i].replace(t).is_some() {
            return Err(Error::data(feed, format!("'{name}' is given twice")));
        }
    }
    slots
        .into_iter()
        .zip(names)
        .map(|(t, n)| {
            t.ok_or_else(|| {
                Error::data(
                    feed,
                    format!("no array for the {what} '{n}' (the model's are {names:?})"),
                )
            })
        })
        .collect()
}

/// Checks one sample-weight array (`name` for errors): `n` finite values as
/// `[n]` or `[n, 1]`, returned as `f32[n]`.
fn sample_weight_column(name: &str, w: &HostTensor, n: usize) -> Result<HostTensor> {
    let shape = w.shape();
    if !(shape == [n] || shape == [n, 1]) {
        return Err(Error::data(
            name,
            format!(
                "expected {n} sample weights as [{n}] or [{n}, 1], got an array of shape {shape:?}"
            ),
        ));
    }
    let values: Vec<f32> = match &w.data {
        Data::F32(v) => v.clone(),
        Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
    };
    if let Some(r) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::data(
            name,
            format!(
                "row {r} holds the weight {}: sample weights must be finite",
                values[r]
            ),
        ));
    }
    Ok(HostTensor {
        ty: TensorType::f32([n]),
        data: Data::F32(values),
    })
}

/// Keras's `class_weight_to_sample_weights`: the class of each sample is its
/// `i32` label, the argmax of a one-hot `f32[n, c > 1]` target, or the
/// rounded value of an `f32[n]`/`[n, 1]` one; the weight is that class's
/// entry of `classes`, 1 when absent. A repeated class or a non-finite
/// weight is an error.
fn class_sample_weights(y: &HostTensor, classes: &[(usize, f32)]) -> Result<HostTensor> {
    let mut table = std::collections::BTreeMap::new();
    for &(c, w) in classes {
        if !w.is_finite() {
            return Err(Error::data(
                "class_weight",
                format!("class {c} has the weight {w}: class weights must be finite"),
            ));
        }
        if table.insert(c, w).is_some() {
            return Err(Error::data(
                "class_weight",
                format!("class {c} is listed twice"),
            ));
        }
    }
    let n = y.shape().first().copied().unwrap_or(0);
    let per = per_sample(y);
    if let Some(v) = y.as_f32() {
        if let Some(k) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::data(
                "class_weight",
                format!(
                    "the targets' {} holds {}, which is no class",
                    position(y.shape(), k),
                    v[k]
                ),
            ));
        }
    }
    let class_of = |r: usize| -> Option<usize> {
        match &y.data {
            Data::I32(v) => usize::try_from(v[r * per]).ok(),
            Data::F32(v) => {
                let row = &v[r * per..(r + 1) * per];
                if per > 1 {
                    let mut best = 0;
                    for (k, x) in row.iter().enumerate() {
                        if *x > row[best] {
                            best = k;
                        }
                    }
                    Some(best)
                } else {
                    let x = row[0].round();
                    (x >= 0.0).then_some(x as usize)
                }
            }
        }
    };
    let w = (0..n)
        .map(|r| {
            class_of(r)
                .and_then(|c| table.get(&c).copied())
                .unwrap_or(1.0)
        })
        .collect();
    Ok(HostTensor {
        ty: TensorType::f32([n]),
        data: Data::F32(w),
    })
}

/// The samples `start..end` of `t`.
pub(super) fn slice_samples(t: &HostTensor, start: usize, end: usize) -> HostTensor {
    gather(t, &(start..end).collect::<Vec<_>>())
}

impl Model {
    pub(super) fn compiled(&self, action: &str) -> Result<&Compiled> {
        self.train
            .compiled
            .as_ref()
            .ok_or_else(|| Error::NotCompiled {
                model: self.name.clone(),
                action: action.into(),
            })
    }

    /// The number of ranks training averages gradients over (1 unless
    /// compiled [`distributed`](super::CompileOptions::distributed)).
    pub fn ranks(&self) -> usize {
        self.train
            .compiled
            .as_ref()
            .map_or(1, |c| c.distributed.comm.size())
    }

    /// This process's rank (0 unless compiled distributed).
    pub fn rank(&self) -> usize {
        self.train
            .compiled
            .as_ref()
            .map_or(0, |c| c.distributed.comm.rank())
    }

    /// Makes sure a program exists for `key`.
    pub(super) fn prepare(&mut self, key: ProgramKey) -> Result<()> {
        if !self.train.has_program(key) {
            let (g, info) = self.build_graph(key)?;
            self.train.insert_program(key, g, info, &mut self.store)?;
        }
        Ok(())
    }

    /// Runs a prepared program.
    pub(super) fn run_prepared(
        &mut self,
        key: ProgramKey,
        feeds: &[(String, Feed<'_>)],
    ) -> Result<Logs> {
        self.train.run(key, &mut self.store, feeds)
    }

    /// Orders named input arrays by the model's inputs, as Keras's
    /// `fit(x={"features": f, "targets": t})`: every input exactly once, by
    /// the name of its input layer. The result is what `fit`, `evaluate`,
    /// `predict` and `train_on_batch` take as `x`.
    pub fn inputs_by_name<S: AsRef<str>>(
        &self,
        named: impl IntoIterator<Item = (S, HostTensor)>,
    ) -> Result<Vec<HostTensor>> {
        order_by_name("x", "input", &self.input_names(), named)
    }

    /// Orders named target arrays by the outputs with a compiled loss (the
    /// `y` of `fit` and `evaluate`), as Keras's `y={"digits": y1, "ink":
    /// y2}`: every output that has a loss exactly once, by output name.
    pub fn targets_by_name<S: AsRef<str>>(
        &self,
        named: impl IntoIterator<Item = (S, HostTensor)>,
    ) -> Result<Vec<HostTensor>> {
        order_by_name(
            "y",
            "output with a compiled loss",
            &self.targeted_names()?,
            named,
        )
    }

    /// Orders named sample-weight arrays like [`targets_by_name`](Self::targets_by_name)
    /// (Keras's `sample_weight={"digits": w1, "ink": w2}`), for
    /// [`SampleWeights::PerSample`] and [`FitOptions::sample_weight`](super::FitOptions::sample_weight).
    pub fn sample_weights_by_name<S: AsRef<str>>(
        &self,
        named: impl IntoIterator<Item = (S, HostTensor)>,
    ) -> Result<Vec<HostTensor>> {
        order_by_name(
            "sample_weight",
            "output with a compiled loss",
            &self.targeted_names()?,
            named,
        )
    }

    fn targeted_names(&self) -> Result<Vec<String>> {
        let cfg = self.compiled("naming targets")?;
        Ok(cfg
            .targeted()
            .into_iter()
            .map(|i| self.outputs[i].0.clone())
            .collect())
    }

    /// Attaches `weights` to checked data ([`SampleWeights`]): per-sample
    /// arrays are checked (one per target or one for all; `n` finite values
    /// each, as `[n]` or `[n, 1]`; an error names the array, the row and the
    /// value), class weights become per-sample weights from the targets.
    pub(super) fn attach_sample_weights<'a>(
        &self,
        data: &mut Prepared<'a>,
        weights: &'a SampleWeights,
    ) -> Result<()> {
        let targets = data.y.len();
        match weights {
            SampleWeights::None => {}
            SampleWeights::PerSample(ws) => {
                if ws.len() != 1 && ws.len() != targets {
                    return Err(Error::data(
                        "sample_weight",
                        format!(
                            "model '{}' takes one sample-weight array per output with a compiled loss ({targets}) or one for all, got {}",
                            self.name,
                            ws.len()
                        ),
                    ));
                }
                let targeted = self.compiled("sample weights")?.targeted();
                for (k, &i) in targeted.iter().enumerate() {
                    let w = &ws[if ws.len() == 1 { 0 } else { k }];
                    let name = self.sample_weight_feed_name(i);
                    data.w
                        .push(Cow::Owned(sample_weight_column(&name, w, data.n)?));
                }
            }
            SampleWeights::PerClass(classes) => {
                if targets != 1 {
                    return Err(Error::data(
                        "class_weight",
                        format!(
                            "class weights need a model with exactly one output with a compiled loss; model '{}' has {targets}",
                            self.name
                        ),
                    ));
                }
                data.w
                    .push(Cow::Owned(class_sample_weights(&data.y[0], classes)?));
            }
        }
        Ok(())
    }

    /// Checks data against the model and converts target dtypes.
    pub(super) fn prepare_data<'a>(
        &self,
        x: &'a [HostTensor],
        y: Option<&'a [HostTensor]>,
    ) -> Result<Prepared<'a>> {
        if x.len() != self.inputs.len() {
            return Err(Error::data(
                "x",
                format!(
                    "model '{}' has {} input(s) {:?}, got {} array(s)",
                    self.name,
                    self.inputs.len(),
                    self.input_names(),
                    x.len()
                ),
            ));
        }
        let n = x
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0);
        let mut xs = Vec::new();
        for (i, t) in x.iter().enumerate() {
            let sample = &self.values[self.inputs[i].value].shape;
            let name = self.input_feed_name(i);
            if t.shape().first() != Some(&n) || t.shape()[1..] != sample[..] {
                let mut want = vec![n];
                want.extend_from_slice(sample);
                return Err(Error::data(
                    name,
                    format!(
                        "expected {n} samples of shape {sample:?} (an array of shape {want:?}), got an array of shape {:?}",
                        t.shape()
                    ),
                ));
            }
            let dtype = self.inputs[i].dtype;
            let t = if t.ty.dtype == dtype {
                Cow::Borrowed(t)
            } else {
                Cow::Owned(convert(&name, t, dtype)?)
            };
            self.check_ids(i, &t)?;
            xs.push(t);
        }
        let mut ys = Vec::new();
        if let Some(y) = y {
            let cfg = self.compiled("using targets")?;
            let targeted = cfg.targeted();
            if y.len() != targeted.len() {
                let names: Vec<&str> = targeted
                    .iter()
                    .map(|&i| self.outputs[i].0.as_str())
                    .collect();
                return Err(Error::data(
                    "y",
                    format!(
                        "model '{}' takes {} target array(s), one per output with a compiled loss {names:?}, got {}",
                        self.name,
                        targeted.len(),
                        y.len()
                    ),
                ));
            }
            for (&i, t) in targeted.iter().zip(y) {
                let Some(loss) = &cfg.outputs[i].loss else {
                    continue;
                };
                let mut pshape = vec![1];
                pshape.extend_from_slice(&self.values[self.outputs[i].1].shape);
                let tty = loss.target_type(&TensorType::f32(&pshape));
                let sample = tty.shape.get(1..).unwrap_or(&[]);
                let name = self.target_feed_name(i);
                let output = &self.outputs[i].0;
                if !target_shape_fits(t.shape(), n, sample) {
                    let mut want = vec![n];
                    want.extend_from_slice(sample);
                    return Err(Error::data(
                        name,
                        format!(
                            "expected {n} targets of shape {sample:?} for output '{output}' ({}): an array of shape {want:?} (or with a trailing axis of 1 added or removed), got an array of shape {:?}",
                            loss.name(),
                            t.shape()
                        ),
                    ));
                }
                let t = if t.ty.dtype == tty.dtype {
                    Cow::Borrowed(t)
                } else {
                    Cow::Owned(convert(&name, t, tty.dtype)?)
                };
                if let Loss::SparseCategoricalCrossentropy { .. } = loss {
                    let classes = pshape.last().copied().unwrap_or(1);
                    check_labels(&name, &t, classes, output)?;
                }
                ys.push(t);
            }
        }
        if n == 0 {
            return Err(Error::data("x", "no samples"));
        }
        Ok(Prepared {
            x: xs,
            y: ys,
            w: Vec::new(),
            n,
        })
    }

    /// Checks the ids of `i32` input `i` against every layer that indexes
    /// with it directly ([`crate::Layer::id_bound`]): an id outside
    /// `[0, bound)` is an error naming the sample (row of `x`) and the value.
    fn check_ids(&self, i: usize, t: &HostTensor) -> Result<()> {
        let Some(ids) = t.as_i32() else {
            return Ok(());
        };
        let value = self.inputs[i].value;
        for node in self.nodes.iter().filter(|n| n.inputs.contains(&value)) {
            let slot = &self.layers[node.layer];
            let Some(bound) = slot.layer.id_bound() else {
                continue;
            };
            let per = per_sample(t).max(1);
            if let Some(k) = ids.iter().position(|&v| v < 0 || v as usize >= bound) {
                return Err(Error::data(
                    self.input_feed_name(i),
                    format!(
                        "sample {} (element {} of its row) holds id {} outside [0, {bound}) of layer '{}' ({})",
                        k / per,
                        k % per,
                        ids[k],
                        slot.name,
                        slot.class
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn feeds<'a>(
        &self,
        data: &'a Prepared<'_>,
        start: usize,
        end: usize,
    ) -> Vec<(String, Feed<'a>)> {
        let mut f = Vec::new();
        for (i, t) in data.x.iter().enumerate() {
            f.push((self.input_feed_name(i), rows(t, start, end)));
        }
        let targeted = self
            .train
            .compiled
            .as_ref()
            .map(|c| c.targeted())
            .unwrap_or_default();
        for (&i, t) in targeted.iter().zip(&data.y) {
            f.push((self.target_feed_name(i), rows(t, start, end)));
        }
        for (&i, t) in targeted.iter().zip(&data.w) {
            f.push((self.sample_weight_feed_name(i), rows(t, start, end)));
        }
        f
    }
}
