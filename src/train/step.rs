//! The per-purpose graph builder: traces the model and appends the
//! objective, gradients and optimiser updates a purpose needs.

use super::options::{Compiled, Purpose};
use super::session::ProgramInfo;
use crate::backend;
use crate::error::{Error, Result};
use crate::model::{Model, Trace};
use lossgraph_ir::names::{self, ITERATION_INPUT, LR_INPUT, RNG_STEP_INPUT};
use lossgraph_ir::{Builder, Graph, Role, TensorType};
use std::collections::HashMap;

impl Model {
    /// Appends target inputs, compiled losses (`loss/<o>`) and metrics to a trace.
    fn add_objective(&self, tr: &Trace, cfg: &Compiled, info: &mut ProgramInfo) {
        let b = &tr.builder;
        let multi = tr.preds.len() > 1;
        let mut metric_logs = Vec::new();
        info.logs.push((names::LOSS.into(), names::LOSS.into()));
        for (i, (name, pred)) in tr.preds.iter().enumerate() {
            let Some(oc) = cfg.outputs.iter().find(|o| o.name == *name) else {
                b.record_error(lossgraph_ir::IrError::Graph {
                    graph: self.name.clone(),
                    message: format!("no loss configured for output '{name}'"),
                });
                continue;
            };
            b.set_scope("");
            let y = b.input(&self.target_feed_name(i), oc.loss.target_type(pred.ty()));
            b.set_scope(name.as_str());
            let role = Role::CompiledLoss {
                output: name.clone(),
                weight: oc.weight,
            };
            let l = b.with_role(role, || oc.loss.emit(&y, pred));
            let out = names::loss(name);
            b.output(&out, &l);
            if multi {
                info.logs.push((format!("{name}_loss"), out));
            }
            for m in &cfg.metrics {
                let label = if multi {
                    format!("{name}_{}", m.name())
                } else {
                    m.name().to_string()
                };
                let resolved = m.resolve(&oc.loss, &y, pred);
                let v = b.with_role(
                    Role::Metric {
                        name: label.clone(),
                    },
                    || resolved.emit(&y, pred),
                );
                let out = names::metric(&label);
                b.output(&out, &v);
                metric_logs.push((label, out));
            }
        }
        b.set_scope("");
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (l, _) in &tr.losses {
            let mut label = format!("{}/{}", l.owner, l.reason.name());
            if let Some(v) = &l.variable {
                let short = v.rsplit('/').next().unwrap_or(v);
                if short != "kernel" && short != "bias" {
                    label = format!("{}/{}", v, l.reason.name());
                }
            }
            let k = seen.entry(label.clone()).or_insert(0);
            *k += 1;
            if *k > 1 {
                label = format!("{label}#{}", *k);
            }
            info.logs.push((label, l.output.clone()));
        }
        info.logs.extend(metric_logs);
    }

    /// Builds the graph for `purpose` and batch size `batch` (for dumps and custom engines).
    pub fn graph(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self.build_graph(purpose, batch)?.0)
    }

    /// [`graph`](Self::graph) before the optimisation passes (for IR dumps).
    pub fn graph_unoptimized(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self.build_graph_with(purpose, batch, false)?.0)
    }

    pub(super) fn build_graph(
        &self,
        purpose: Purpose,
        batch: usize,
    ) -> Result<(Graph, ProgramInfo)> {
        self.build_graph_with(purpose, batch, true)
    }

    fn build_graph_with(
        &self,
        purpose: Purpose,
        batch: usize,
        optimize: bool,
    ) -> Result<(Graph, ProgramInfo)> {
        let finish = |g: Graph, p: &str| {
            if optimize {
                backend::optimize(g, p)
            } else {
                Ok(g)
            }
        };
        let p = purpose.name();
        let mut info = ProgramInfo::default();
        if purpose == Purpose::Apply {
            let cfg = self.compiled("apply_gradients")?;
            let b = Builder::new(format!("{}_apply", self.name));
            let mut vars = Vec::new();
            for v in self.vars.iter().filter(|v| v.trainable) {
                b.set_scope(v.layer.as_str());
                let w = b.param(&v.path, v.ty.clone());
                let g = b.input(&names::grad(&v.path), v.ty.clone());
                vars.push((v.path.clone(), w, g));
            }
            b.set_scope("");
            let lr = b.input(LR_INPUT, TensorType::scalar());
            let it = b.input(ITERATION_INPUT, TensorType::scalar());
            cfg.optimizer.emit_updates(&b, &vars, &lr, &it)?;
            let g = b.finish().map_err(|e| Error::Compile {
                purpose: p.into(),
                message: e.to_string(),
            })?;
            return Ok((finish(g, p)?, info));
        }
        let training = purpose == Purpose::Train || purpose == Purpose::Gradients;
        let tr = self.trace(training, batch)?;
        if purpose != Purpose::Predict {
            let cfg = self.compiled(p)?;
            self.add_objective(&tr, cfg, &mut info);
            let ins: Vec<(String, lossgraph_ir::NodeId)> = tr
                .params
                .iter()
                .filter(|(n, _)| self.vars.iter().any(|v| v.path == *n && v.trainable))
                .map(|(n, t)| (n.clone(), t.id()))
                .collect();
            let mut g = tr.finish()?;
            let loss = backend::total_loss(&mut g, p)?;
            // The compiled part of the total, for the breakdown.
            info.logs.insert(
                1,
                (names::COMPILED_LOSS.into(), names::COMPILED_LOSS.into()),
            );
            add_compiled_total(&mut g, p)?;
            if training {
                let ids: Vec<_> = ins.iter().map(|x| x.1).collect();
                backend::append_gradients(&mut g, loss, &ids, p)?;
            }
            if purpose == Purpose::Train {
                let cfg = self.compiled(p)?;
                let b = Builder::from_graph(g);
                let lr = b.input(LR_INPUT, TensorType::scalar());
                let it = b.input(ITERATION_INPUT, TensorType::scalar());
                let mut vars = Vec::new();
                for (name, id) in &ins {
                    let gid =
                        b.graph()
                            .output(&names::grad(name))
                            .ok_or_else(|| Error::Compile {
                                purpose: p.into(),
                                message: format!("no gradient output for '{name}'"),
                            })?;
                    vars.push((name.clone(), b.tensor(*id), b.tensor(gid)));
                }
                cfg.optimizer.emit_updates(&b, &vars, &lr, &it)?;
                g = b.finish().map_err(|e| Error::Compile {
                    purpose: p.into(),
                    message: e.to_string(),
                })?;
                // A training step consumes its gradients in the updates; as
                // outputs they would cost a store (and a live buffer) each.
                // `compute_gradients` has its own program that returns them.
                for (name, _) in &ins {
                    g.remove_output(&names::grad(name));
                }
            }
            info.needs_rng = g.input(RNG_STEP_INPUT).is_some();
            return Ok((finish(g, p)?, info));
        }
        let mut g = tr.finish()?;
        let added: Vec<String> = g
            .outputs()
            .iter()
            .filter(|o| names::is_added_loss(&o.0))
            .map(|o| o.0.clone())
            .collect();
        for a in added {
            g.remove_output(&a);
        }
        info.needs_rng = g.input(RNG_STEP_INPUT).is_some();
        Ok((finish(g, p)?, info))
    }
}

/// Adds the output `compiled_loss` = Σ weight·`loss/<o>` (for the breakdown).
fn add_compiled_total(g: &mut Graph, purpose: &str) -> Result<()> {
    let parts: Vec<_> = g
        .outputs()
        .iter()
        .filter(|o| names::is_output_loss(&o.0))
        .map(|o| o.1)
        .collect();
    let b = Builder::from_graph(std::mem::take(g));
    let mut total: Option<lossgraph_ir::Tensor> = None;
    for id in parts {
        let node = b.graph().node(id).clone();
        let Role::CompiledLoss { weight, .. } = node.role else {
            continue;
        };
        b.set_scope(node.scope.clone());
        b.set_role(node.role.clone());
        let t = b.tensor(id);
        let t = if weight == 1.0 { t } else { t * weight };
        total = Some(match total.take() {
            None => t,
            Some(a) => a + t,
        });
    }
    if let Some(t) = total {
        b.output(names::COMPILED_LOSS, &t);
    }
    *g = b.finish().map_err(|e| Error::Compile {
        purpose: purpose.into(),
        message: e.to_string(),
    })?;
    Ok(())
}
