//! The names that tie the stages and crates together: graph output prefixes
//! and the per-step inputs. Every crate builds and parses these names through
//! this module only, so a prefix is spelled once.
//!
//! Invariant: a prefixed name is `<prefix><rest>` with `rest` non-empty; the
//! prefixes are distinct and none is a prefix of another.

/// The total training objective (a scalar output).
pub const LOSS: &str = "loss";
/// The sum of the weighted compiled losses (a scalar output).
pub const COMPILED_LOSS: &str = "compiled_loss";
/// Per-output compiled loss: `loss/<output>`.
pub const LOSS_PREFIX: &str = "loss/";
/// One added loss: `added/<index>` in `Model::losses` order.
pub const ADDED_PREFIX: &str = "added/";
/// Gradient of the total loss with respect to a variable: `grad/<variable>`.
pub const GRAD_PREFIX: &str = "grad/";
/// New value of a variable, written back after the step: `update/<variable>`.
pub const UPDATE_PREFIX: &str = "update/";
/// A metric: `metric/<label>`.
pub const METRIC_PREFIX: &str = "metric/";
/// A model prediction: `pred/<output>`.
pub const PRED_PREFIX: &str = "pred/";

/// The scalar learning-rate input of a step that applies updates.
pub const LR_INPUT: &str = "lr";
/// The scalar iteration-count input (optimizer step, as f32).
pub const ITERATION_INPUT: &str = "iteration";
/// The `i32[]` random-stream counter input of a step that draws noise.
pub const RNG_STEP_INPUT: &str = "rng_step";
/// The `f32[]` input of a data-parallel step that scales this rank's
/// gradients before they are averaged over the ranks: `ranks · n_r / B`
/// for a shard of `n_r` of the global batch's `B` samples (1 for equal shards).
pub const SHARD_WEIGHT_INPUT: &str = "shard_weight";

/// `loss/<output>`.
pub fn loss(output: &str) -> String {
    format!("{LOSS_PREFIX}{output}")
}

/// `added/<index>`.
pub fn added(index: usize) -> String {
    format!("{ADDED_PREFIX}{index}")
}

/// `grad/<variable>`.
pub fn grad(variable: &str) -> String {
    format!("{GRAD_PREFIX}{variable}")
}

/// `update/<variable>`.
pub fn update(variable: &str) -> String {
    format!("{UPDATE_PREFIX}{variable}")
}

/// `metric/<label>`.
pub fn metric(label: &str) -> String {
    format!("{METRIC_PREFIX}{label}")
}

/// `pred/<output>`.
pub fn pred(output: &str) -> String {
    format!("{PRED_PREFIX}{output}")
}

/// The variable an `update/<variable>` output writes, if `name` is one.
pub fn updated_variable(name: &str) -> Option<&str> {
    name.strip_prefix(UPDATE_PREFIX).filter(|r| !r.is_empty())
}

/// The variable a `grad/<variable>` name refers to, if `name` is one.
pub fn grad_variable(name: &str) -> Option<&str> {
    name.strip_prefix(GRAD_PREFIX).filter(|r| !r.is_empty())
}

/// True for `loss/<output>` names.
pub fn is_output_loss(name: &str) -> bool {
    name.strip_prefix(LOSS_PREFIX)
        .is_some_and(|r| !r.is_empty())
}

/// True for `added/<index>` names.
pub fn is_added_loss(name: &str) -> bool {
    name.strip_prefix(ADDED_PREFIX)
        .is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip_and_are_distinct() {
        assert_eq!(updated_variable(&update("d/kernel")), Some("d/kernel"));
        assert_eq!(grad_variable(&grad("d/bias")), Some("d/bias"));
        assert!(is_output_loss(&loss("out")) && !is_output_loss(LOSS));
        assert!(is_added_loss(&added(3)) && !is_added_loss(ADDED_PREFIX));
        assert_eq!(updated_variable("update/"), None);
        let all = [
            LOSS_PREFIX,
            ADDED_PREFIX,
            GRAD_PREFIX,
            UPDATE_PREFIX,
            METRIC_PREFIX,
            PRED_PREFIX,
        ];
        for a in all {
            for b in all {
                assert!(a == b || !a.starts_with(b), "{a} starts with {b}");
            }
        }
    }
}
