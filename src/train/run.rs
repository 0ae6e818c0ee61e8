//! Running programs on data: checking and converting the user's arrays,
//! slicing them into per-batch feeds, and the model's glue to the program
//! cache ([`TrainState`](super::session::TrainState)).

use super::logs::Logs;
use super::options::{Compiled, Purpose};
use crate::error::{Error, Result};
use crate::model::Model;
use lossgraph_ir::{DType, Data, HostTensor, TensorType};
use lossgraph_runtime::Feed;
use std::borrow::Cow;

/// Checked, dtype-converted data: per input and per output with a compiled
/// loss (in output order), `n` samples.
pub(super) struct Prepared<'a> {
    pub x: Vec<Cow<'a, HostTensor>>,
    pub y: Vec<Cow<'a, HostTensor>>,
    pub n: usize,
}

fn per_sample(t: &HostTensor) -> usize {
    t.shape().iter().skip(1).product()
}

fn convert(t: &HostTensor, dtype: DType) -> HostTensor {
    let data = match (&t.data, dtype) {
        (Data::F32(v), DType::I32) => Data::I32(v.iter().map(|x| *x as i32).collect()),
        (Data::I32(v), DType::F32) => Data::F32(v.iter().map(|x| *x as f32).collect()),
        (d, _) => d.clone(),
    };
    HostTensor {
        ty: t.ty.with_dtype(dtype),
        data,
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

    /// Makes sure a program exists for (purpose, batch).
    pub(super) fn prepare(&mut self, purpose: Purpose, batch: usize) -> Result<()> {
        let key = (purpose, batch);
        if !self.train.has_program(key) {
            let (g, info) = self.build_graph(purpose, batch)?;
            self.train.insert_program(key, g, info, &mut self.store)?;
        }
        Ok(())
    }

    /// Runs a prepared program.
    pub(super) fn run_prepared(
        &mut self,
        purpose: Purpose,
        batch: usize,
        feeds: &[(String, Feed<'_>)],
    ) -> Result<Logs> {
        self.train.run((purpose, batch), &mut self.store, feeds)
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
            let want: usize = self.values[self.inputs[i].value].shape.iter().product();
            let name = self.input_feed_name(i);
            if t.shape().first() != Some(&n) || per_sample(t) != want {
                return Err(Error::data(
                    name,
                    format!(
                        "expected {n} samples of shape {:?}, got an array of shape {:?}",
                        self.values[self.inputs[i].value].shape,
                        t.shape()
                    ),
                ));
            }
            let dtype = self.inputs[i].dtype;
            let t = if t.ty.dtype == dtype {
                Cow::Borrowed(t)
            } else {
                Cow::Owned(convert(t, dtype))
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
                let want = tty.numel();
                if t.shape().first() != Some(&n) || per_sample(t) != want {
                    return Err(Error::data(
                        self.target_feed_name(i),
                        format!(
                            "expected {n} targets of {} element(s) each for output '{}' ({}), got an array of shape {:?}",
                            want,
                            self.outputs[i].0,
                            loss.name(),
                            t.shape()
                        ),
                    ));
                }
                ys.push(if t.ty.dtype == tty.dtype {
                    Cow::Borrowed(t)
                } else {
                    Cow::Owned(convert(t, tty.dtype))
                });
            }
        }
        if n == 0 {
            return Err(Error::data("x", "no samples"));
        }
        Ok(Prepared { x: xs, y: ys, n })
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
        f
    }
}
