//! [`VariableStore`]: the one home of a model's variables.
//!
//! Weights, optimiser slots and any other state that persists across runs
//! live in one store, shared by every program compiled against it (train,
//! evaluate, predict, … at every batch size). Compiled kernels address a
//! variable as an offset from the store's base, which each run passes in, so
//! switching programs copies nothing.
//!
//! Invariants:
//! - The data is one zero-initialised, 64-byte aligned allocation; each
//!   variable has one slot (64-byte aligned, padded to 64 bytes), fixed by
//!   name and type when first registered.
//! - A slot's offset never changes while the store keeps its [`id`]: slots
//!   are only appended ([`register`]), so the allocation only grows, and
//!   only between runs (registering takes `&mut self`; the base may move, but
//!   no address outlives a run). [`retain`] compacts and takes a new id, so
//!   programs compiled against the old layout refuse to run.
//! - [`copies`] counts every host↔store transfer made through the public
//!   API: [`set`] (host → store) and [`read`] (store → host). Views
//!   ([`get`]) copy nothing; a run copies nothing between host and store.
//!   The interpreter engine copies its variables into its environment and
//!   back on every run (it is the reference, not the fast path); those
//!   copies are not host transfers and are not counted.
//!
//! [`id`]: VariableStore::id
//! [`register`]: VariableStore::register
//! [`retain`]: VariableStore::retain
//! [`copies`]: VariableStore::copies
//! [`set`]: VariableStore::set
//! [`read`]: VariableStore::read
//! [`get`]: VariableStore::get

use crate::error::RuntimeError;
use crate::jit::Arena;
use crate::program::{Feed, TensorRef};
use lossgraph_ir::{DType, Data, HostTensor, TensorType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Source of store ids (unique in the process).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One variable's place in the store.
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    ty: TensorType,
    /// Byte offset from the store's base (a multiple of 64).
    off: usize,
}

/// Host↔store transfers counted by a [`VariableStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCount {
    /// Number of variables copied.
    pub count: u64,
    /// Bytes copied.
    pub bytes: u64,
}

/// Named variables in one 64-byte aligned allocation (see the module docs).
pub struct VariableStore {
    id: u64,
    mem: Arena,
    /// Bytes used by slots (the end of the last one).
    used: usize,
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    count: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for VariableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariableStore")
            .field("id", &self.id)
            .field("variables", &self.slots.len())
            .field("bytes", &self.used)
            .finish()
    }
}

impl Default for VariableStore {
    fn default() -> Self {
        VariableStore::new()
    }
}

fn padded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(64) * 64
}

impl VariableStore {
    /// An empty store with a fresh id.
    pub fn new() -> VariableStore {
        VariableStore {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            mem: Arena::empty(),
            used: 0,
            slots: Vec::new(),
            index: HashMap::new(),
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The store's identity: programs compiled against it run only with a
    /// store of the same id (slot offsets are stable under one id).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The byte offset of variable `name`, registering it (zero-filled) if
    /// it is new. A name already registered must have exactly type `ty`.
    pub fn register(&mut self, name: &str, ty: &TensorType) -> Result<usize, RuntimeError> {
        if let Some(&i) = self.index.get(name) {
            let s = &self.slots[i];
            if s.ty != *ty {
                return Err(RuntimeError::Binding {
                    name: name.to_string(),
                    message: format!("variable store holds it as {}, a program needs {ty}", s.ty),
                });
            }
            return Ok(s.off);
        }
        let off = self.used;
        let end = ty
            .checked_bytes()
            .and_then(|b| off.checked_add(padded(b)))
            .ok_or_else(|| {
                RuntimeError::Budget(format!("variable {name} {ty}: the store's size overflows"))
            })?;
        self.mem.resize(end).map_err(RuntimeError::Exec)?;
        self.used = end;
        self.index.insert(name.to_string(), self.slots.len());
        self.slots.push(Slot {
            name: name.to_string(),
            ty: ty.clone(),
            off,
        });
        Ok(off)
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// The type of variable `name`.
    pub fn ty(&self, name: &str) -> Option<&TensorType> {
        self.slot(name).map(|s| &s.ty)
    }

    /// Bytes the slots take (padding included).
    pub fn bytes(&self) -> usize {
        self.used
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.index.get(name).map(|&i| &self.slots[i])
    }

    /// A view of variable `name` (no copy).
    pub fn get(&self, name: &str) -> Option<TensorRef<'_>> {
        let s = self.slot(name)?;
        let n = s.ty.numel();
        let data = match s.ty.dtype {
            DType::F32 => Feed::F32(self.mem.f32s(s.off, n)?),
            DType::I32 => Feed::I32(self.mem.i32s(s.off, n)?),
        };
        Some(TensorRef { ty: &s.ty, data })
    }

    /// An owned copy of variable `name` (counted).
    pub fn read(&self, name: &str) -> Option<HostTensor> {
        let t = self.get(name)?.to_host();
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add((t.ty.numel() * 4) as u64, Ordering::Relaxed);
        Some(t)
    }

    /// Copies `value` into registered variable `name` (counted); the type
    /// must match exactly.
    pub fn set(&mut self, name: &str, value: &HostTensor) -> Result<(), RuntimeError> {
        self.write(name, &value.ty, &value.data)?;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add((value.ty.numel() * 4) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `data` of type `ty` into variable `name` without counting (the
    /// interpreter's updates). An update of another shape with the same
    /// element type and count is stored row-major.
    pub(crate) fn write(
        &mut self,
        name: &str,
        ty: &TensorType,
        data: &Data,
    ) -> Result<(), RuntimeError> {
        let s = self.slot(name).ok_or_else(|| RuntimeError::Binding {
            name: name.to_string(),
            message: "no such variable in the store".into(),
        })?;
        if s.ty.dtype != ty.dtype || s.ty.numel() != ty.numel() {
            return Err(RuntimeError::Binding {
                name: name.to_string(),
                message: format!("expected {}, got {ty}", s.ty),
            });
        }
        let off = s.off;
        let ok = match data {
            Data::F32(v) => v.len() == ty.numel() && self.mem.write(off, v),
            Data::I32(v) => v.len() == ty.numel() && self.mem.write(off, v),
        };
        if ok {
            Ok(())
        } else {
            Err(RuntimeError::Binding {
                name: name.to_string(),
                message: format!("data does not match its type {ty}"),
            })
        }
    }

    /// Host↔store transfers so far (see the module docs).
    pub fn copies(&self) -> CopyCount {
        CopyCount {
            count: self.count.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Keeps only the variables for which `keep(name)` holds, compacted
    /// (values kept), under a new id: programs compiled against this store
    /// must be recompiled.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> Result<(), RuntimeError> {
        let mut next = VariableStore::new();
        for s in self.slots.iter().filter(|s| keep(&s.name)) {
            let off = next.register(&s.name, &s.ty)?;
            if !next.mem.copy_from(off, &self.mem, s.off, s.ty.numel() * 4) {
                return Err(RuntimeError::Exec(format!(
                    "variable {} outside the store",
                    s.name
                )));
            }
        }
        next.count = AtomicU64::new(self.count.load(Ordering::Relaxed));
        next.bytes = AtomicU64::new(self.bytes.load(Ordering::Relaxed));
        *self = next;
        Ok(())
    }

    /// The store's memory, for views of program outputs held in it.
    pub(crate) fn arena(&self) -> &Arena {
        &self.mem
    }

    /// The store's memory, for runs.
    pub(crate) fn arena_mut(&mut self) -> &mut Arena {
        &mut self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_values_and_offsets_when_the_store_grows() {
        let mut s = VariableStore::new();
        let a = s.register("a", &TensorType::f32([3])).unwrap();
        s.set("a", &HostTensor::f32(&[3], vec![1.0, 2.0, 3.0]).unwrap())
            .unwrap();
        let b = s.register("b", &TensorType::f32([1000])).unwrap();
        assert_eq!(a, 0);
        assert_eq!(b, 64);
        assert_eq!(s.register("a", &TensorType::f32([3])).unwrap(), a);
        assert_eq!(s.get("a").unwrap().as_f32().unwrap(), &[1.0, 2.0, 3.0]);
        assert!(s
            .get("b")
            .unwrap()
            .as_f32()
            .unwrap()
            .iter()
            .all(|&x| x == 0.0));
        assert!(s.register("a", &TensorType::f32([4])).is_err());
        assert_eq!(
            s.copies(),
            CopyCount {
                count: 1,
                bytes: 12
            }
        );
        s.read("a").unwrap();
        assert_eq!(
            s.copies(),
            CopyCount {
                count: 2,
                bytes: 24
            }
        );
        let id = s.id();
        s.retain(|n| n == "a").unwrap();
        assert_ne!(s.id(), id);
        assert_eq!(s.names().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.get("a").unwrap().as_f32().unwrap(), &[1.0, 2.0, 3.0]);
    }
}
