//! The fuzz targets: what one input is, where the seeds come from, how an
//! input is mutated and what running it checks. A target returns `Ok` when
//! the input was accepted or refused with an error, `Err` when a property
//! failed (a finding that is not a panic); panics are caught by the harness.

use crate::mutate::{self, pick};
use lossgraph::keras::{build::build_model, nested, KerasArchive, ModelSpec};
use lossgraph::Model;
use lossgraph_ir::rng::SplitMix64 as Rng;
use std::path::{Path, PathBuf};

#[path = "../../runtime/tests/diff/mod.rs"]
mod diff;

/// A fuzz target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `lossgraph_ir::text::parse`; a graph it accepts must print and parse
    /// back to the same text.
    Ir,
    /// A Keras `model.to_json()` text: `ModelSpec::from_value`, `nested::tree`,
    /// `build_model`, `Model::summary`.
    KerasJson,
    /// A `.keras` zip: `KerasArchive::from_bytes` then `load` (config,
    /// `model.weights.h5`) and `Model::summary`.
    KerasArchive,
    /// A safetensors file (weights, data, expected values): `read_safetensors`,
    /// then `Model::load_weights` into the case model that the input's first
    /// byte selects (modulo the number of cases).
    Safetensors,
    /// Random valid graphs (`lossgraph_ir::gen`) compiled by the JIT and run
    /// against the interpreter; the input is a 64-bit seed, a node budget
    /// and an extent bound (10 bytes).
    Jit,
}

impl Target {
    /// Every target, in the order of the issue.
    pub const ALL: [Target; 5] = [
        Target::Ir,
        Target::KerasJson,
        Target::KerasArchive,
        Target::Safetensors,
        Target::Jit,
    ];

    /// The target's name on the command line and in crash folders.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ir => "ir",
            Target::KerasJson => "keras_json",
            Target::KerasArchive => "keras_archive",
            Target::Safetensors => "safetensors",
            Target::Jit => "jit",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The repository root (this crate's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ is inside the repository")
        .to_path_buf()
}

/// The Keras reference case folders: `shared/keras-cases*/*` beside the
/// repository (as the test suite finds them) and `tests/data/keras-layer-cases/*`,
/// sorted by path.
pub fn case_dirs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = Vec::new();
    for parent in [
        root.join("../shared/keras-cases"),
        root.join("../shared/keras-cases-layers"),
        root.join("tests/data/keras-layer-cases"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&parent) {
            out.extend(
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("model.json").is_file()),
            );
        }
    }
    out.sort();
    out
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
}

fn read_all(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// What a target needs besides its input: seeds, a token dictionary, the
/// case models (safetensors) and a scratch file.
pub struct Ctx {
    /// The target.
    pub target: Target,
    /// Inputs mutations start from.
    pub seeds: Vec<Vec<u8>>,
    dict: Vec<Vec<u8>>,
    models: Vec<Model>,
    scratch: PathBuf,
}

impl Ctx {
    /// Loads the seeds of `target` (an error when there are none) and, for
    /// safetensors, builds every case model. `scratch` is a file path the
    /// target may overwrite.
    pub fn new(target: Target, scratch: PathBuf) -> Result<Ctx, String> {
        let root = repo_root();
        let cases = case_dirs();
        let mut models = Vec::new();
        let seeds = match target {
            Target::Ir => {
                let mut p = Vec::new();
                files_under(&root.join("tests/filetests"), ".lg", &mut p);
                p.sort();
                read_all(&p)
            }
            Target::KerasJson => {
                let mut p: Vec<PathBuf> = cases.iter().map(|c| c.join("model.json")).collect();
                p.push(root.join("docs/tiny_model.json"));
                read_all(&p)
            }
            Target::KerasArchive => {
                let mut p: Vec<PathBuf> = cases
                    .iter()
                    .map(|c| c.join("model.keras"))
                    .filter(|p| p.is_file())
                    .collect();
                files_under(&root.join("tests/data/keras"), ".keras", &mut p);
                p.sort();
                read_all(&p)
            }
            Target::Safetensors => {
                let mut seeds = Vec::new();
                for c in &cases {
                    let spec = ModelSpec::from_file(&c.join("model.json"));
                    let Ok(model) = spec.and_then(|s| build_model(&s, 0)) else {
                        continue;
                    };
                    let k = models.len() as u8;
                    models.push(model);
                    for f in ["weights", "data", "expected"] {
                        if let Ok(b) = std::fs::read(c.join(format!("{f}.safetensors"))) {
                            seeds.push([vec![k], b].concat());
                        }
                    }
                }
                seeds
            }
            Target::Jit => (0..64u64)
                .map(|s| {
                    let mut v = s.to_le_bytes().to_vec();
                    v.extend([40, 6]);
                    v
                })
                .collect(),
        };
        if seeds.is_empty() {
            return Err(format!(
                "no seeds for target {} (looked under {})",
                target.name(),
                root.display()
            ));
        }
        let dict = match target {
            Target::Ir => seeds.iter().flat_map(|s| mutate::tokens(s)).collect(),
            _ => Vec::new(),
        };
        let mut dict = dict;
        dict.sort();
        dict.dedup();
        Ok(Ctx {
            target,
            seeds,
            dict,
            models,
            scratch,
        })
    }

    /// A new input: a seed mutated 1 to 3 times by the target's mutator.
    pub fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let mut x = pick(rng, &self.seeds).clone();
        for _ in 0..1 + rng.below(3) {
            x = self.mutate(rng, &x);
        }
        x
    }

    fn mutate(&self, rng: &mut Rng, x: &[u8]) -> Vec<u8> {
        let corpus = &self.seeds;
        match self.target {
            Target::Ir => mutate::bytes(rng, x, corpus, &self.dict),
            Target::KerasJson => mutate::json_text(rng, x, corpus, &self.dict),
            Target::KerasArchive => mutate::archive(rng, x, corpus),
            Target::Safetensors => {
                let (k, body) = x.split_first().map_or((0, &[][..]), |(k, b)| (*k, b));
                let k = if rng.below(50) == 0 {
                    rng.next_u64() as u8
                } else {
                    k
                };
                [vec![k], mutate::safetensors(rng, body, corpus)].concat()
            }
            Target::Jit => {
                let mut v = rng.next_u64().to_le_bytes().to_vec();
                v.push(4 + rng.below(96) as u8);
                v.push(1 + rng.below(20) as u8);
                v
            }
        }
    }

    /// Runs one input; `Err` is a property failure (see [`Target`]).
    pub fn run(&mut self, input: &[u8]) -> Result<(), String> {
        match self.target {
            Target::Ir => run_ir(input),
            Target::KerasJson => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) else {
                    return Ok(());
                };
                let Ok(spec) = ModelSpec::from_value(&v) else {
                    return Ok(());
                };
                if nested::tree(&v).is_err() {
                    return Ok(());
                }
                if let Ok(m) = build_model(&spec, 0) {
                    let _ = m.summary();
                }
                Ok(())
            }
            Target::KerasArchive => {
                if let Ok(a) = KerasArchive::from_bytes(input, "fuzz.keras") {
                    if let Ok(km) = a.load(0) {
                        let _ = km.model.summary();
                    }
                }
                Ok(())
            }
            Target::Safetensors => {
                let Some((k, body)) = input.split_first() else {
                    return Ok(());
                };
                std::fs::write(&self.scratch, body)
                    .map_err(|e| format!("cannot write {}: {e}", self.scratch.display()))?;
                if lossgraph::read_safetensors(&self.scratch).is_ok() && !self.models.is_empty() {
                    let n = self.models.len();
                    let _ = self.models[*k as usize % n].load_weights(&self.scratch);
                }
                Ok(())
            }
            Target::Jit => {
                let mut seed = [0u8; 8];
                let n = input.len().min(8);
                seed[..n].copy_from_slice(&input[..n]);
                let nodes = input.get(8).map_or(40, |&b| (b as usize).clamp(1, 120));
                let extent = input.get(9).map_or(6, |&b| (b as usize).clamp(1, 24));
                diff::random_graph_matches(u64::from_le_bytes(seed), nodes, extent)
            }
        }
    }
}

/// Parses IR text; an accepted graph must print to text that parses back
/// and prints the same.
fn run_ir(input: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(());
    };
    let Ok(g) = lossgraph_ir::text::parse(text) else {
        return Ok(());
    };
    let printed = lossgraph_ir::text::print(&g);
    let again = lossgraph_ir::text::parse(&printed)
        .map_err(|e| format!("the print of an accepted graph does not parse: {e}\n{printed}"))?;
    let reprinted = lossgraph_ir::text::print(&again);
    if reprinted != printed {
        return Err(format!(
            "print/parse/print differs:\n{printed}\n-----\n{reprinted}"
        ));
    }
    Ok(())
}
