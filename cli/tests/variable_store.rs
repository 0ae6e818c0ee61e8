//! The model's one variable store: `fit` with validation data (two training
//! and two evaluation programs, for the full and the final partial batch)
//! copies no variable between host and programs, and the evaluation
//! programs see exactly the trained weights.

use lossgraph::optimizers::Optimizer;
use lossgraph::{
    Callback, CompileOptions, FitOptions, HostTensor, Logs, Loss, Metric, ModelHandle, Validation,
};
use lossgraph_cli::demo::demo_model;
use lossgraph_cli::digits;
use std::cell::RefCell;
use std::rc::Rc;

fn tensors(d: &digits::Dataset) -> (Vec<HostTensor>, Vec<HostTensor>) {
    let x = HostTensor::f32(&[d.len(), 64], d.x.clone()).unwrap();
    let y = HostTensor::i32(&[d.len()], d.y.clone()).unwrap();
    (vec![x], vec![y])
}

/// Records the epoch logs.
struct Record(Rc<RefCell<Vec<Logs>>>);

impl Callback for Record {
    fn on_epoch_end(
        &mut self,
        _model: &mut dyn ModelHandle,
        _epoch: usize,
        logs: &mut Logs,
    ) -> lossgraph::Result<()> {
        self.0.borrow_mut().push(logs.clone());
        Ok(())
    }
}

#[test]
fn fit_with_validation_copies_no_variable() {
    let data = digits::load().unwrap();
    let (train, test) = data.split(0.8, 0);
    let (xtr, ytr) = tensors(&train);
    let (xte, yte) = tensors(&test);
    // The demo-sized MLP: 64 → 64 → 64 → 10, Adam.
    let mut model = demo_model(0).unwrap();
    model
        .compile(
            CompileOptions::new(
                Optimizer::adam(1e-3),
                Loss::SparseCategoricalCrossentropy { from_logits: false },
            )
            .metric(Metric::Accuracy),
        )
        .unwrap();
    // 1437 training and 360 validation samples: both end in a partial batch.
    assert_ne!(train.len() % 32, 0);
    assert_ne!(test.len() % 32, 0);
    let before = model.variable_copies();
    let epochs = Rc::new(RefCell::new(Vec::new()));
    model
        .fit(
            &xtr,
            &ytr,
            FitOptions::new()
                .epochs(3)
                .batch_size(32)
                .shuffle(true, 0)
                .validation(Validation::Data(xte.clone(), yte.clone()))
                .callback(Record(epochs.clone())),
        )
        .unwrap();
    assert_eq!(model.variable_copies(), before, "copies during 3 epochs");
    // The evaluation programs already ran on the trained weights: evaluating
    // again gives the last epoch's validation numbers exactly.
    let last = epochs.borrow().last().cloned().unwrap();
    let again = model.evaluate(&xte, &yte, 32).unwrap();
    for key in ["loss", "accuracy"] {
        assert_eq!(
            again.get(key),
            last.get(&format!("val_{key}")),
            "{key} vs val_{key}"
        );
    }
    assert_eq!(model.variable_copies(), before);
    // Host reads are counted: one copy per variable read.
    let w = model.get_weight("digit/kernel").unwrap();
    let after = model.variable_copies();
    assert_eq!(after.count, before.count + 1);
    assert_eq!(after.bytes, before.bytes + (w.ty.numel() * 4) as u64);
}
