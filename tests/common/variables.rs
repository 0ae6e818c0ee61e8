//! Reading a model's variables back for comparisons.

use lossgraph::Model;

/// (name, values) of every variable of `m` (weights and state), in order.
pub fn variables(m: &Model) -> Vec<(String, Vec<f32>)> {
    m.variables()
        .iter()
        .map(|v| {
            let t = m.get_weight(&v.path).unwrap();
            (v.path.clone(), t.as_f32().unwrap().to_vec())
        })
        .collect()
}
