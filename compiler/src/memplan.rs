//! Memory planning: one arena per compiled program, variables outside it.
//!
//! Variables (`param` nodes) are not in the arena: they live in the model's
//! variable store, shared by every program of the model, which places them
//! (see `lossgraph_runtime::VariableStore`); the plan only marks them
//! [`Location::Variable`]. Arena layout: `[inputs][consts][scratch]`, every
//! buffer 64-byte aligned and padded to a multiple of 64 bytes. Input slots
//! persist across runs; constants are written once at compile time. Scratch
//! buffers (kernel roots) are assigned by liveness over the kernel schedule:
//! a buffer is free after the last kernel that reads it, except graph outputs,
//! which live to the end of the run so they can be read afterwards.
//!
//! Variable updates: an `update/<var>` output is computed *in place* into the
//! variable's store slot when that is provably safe (see [`MemoryPlan::in_place`]);
//! otherwise the runtime copies it into the variable after the run.
//!
//! Id faults: every `gather`/`scatter_add` a kernel evaluates owns an
//! 8-byte fault slot after the scratch region ([`MemoryPlan::faults`]). The
//! runtime stops a run after the first kernel that recorded a fault, so no
//! update is computed in place by a kernel at or before the last kernel
//! that checks ids: a faulted step leaves every variable as it was.

use crate::fusion::{CodegenError, KernelKind, NodeClass, Plan};
use crate::lower_clif::nest::{Counter, KernelBody};
use lossgraph_ir::{NodeId, Op};

/// Buffer alignment and size granularity, in bytes.
pub const ALIGN: usize = 64;

/// Where a buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Param,
    Input,
    Const,
    Scratch,
}

/// Where a stored node's buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// At this byte offset in the program's arena.
    Arena(usize),
    /// In the store slot of this `param` node's variable (the param itself,
    /// or an update computed in place).
    Variable(NodeId),
}

/// The arena layout of a plan.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Location of each stored node's buffer (indexed by node index; `None`
    /// for nodes without storage of their own: aliases, inlined, dead).
    pub location: Vec<Option<Location>>,
    /// Region of each stored node (same indexing).
    pub region: Vec<Option<Region>>,
    /// Total arena size in bytes (variables excluded).
    pub size: usize,
    /// Size of the scratch region in bytes (after liveness reuse).
    pub scratch: usize,
    /// `(var param node, update node)` pairs computed directly into the variable:
    /// every read of the variable happens before the updating kernel, or in it
    /// at exactly the element being written.
    pub in_place: Vec<(NodeId, NodeId)>,
    /// `(var param node, stored node)`: copy after the run (`update/<var>` not in place).
    pub copies: Vec<(NodeId, NodeId)>,
    /// `(node, arena offset)`: the 8-byte fault slot of every node whose ids
    /// a kernel checks (see `lower_clif::nest::IdFault`), in kernel order.
    pub faults: Vec<(NodeId, usize)>,
}

/// Bytes of one id-fault slot (a `u64`).
pub const FAULT_SLOT_BYTES: usize = 8;

fn padded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(ALIGN) * ALIGN
}

/// Lays out the arena for `plan` whose kernels lower to `bodies`.
pub fn plan_memory(plan: &Plan, bodies: &[KernelBody]) -> Result<MemoryPlan, CodegenError> {
    let g = &plan.graph;
    let n = g.len();
    let mut location = vec![None; n];
    let mut region = vec![None; n];
    let mut top = 0usize;
    let bytes_of = |id: NodeId| g.node(id).ty.numel() * 4;
    // Every offset below is at most the sum of all padded buffers and fault
    // slots: checking that sum once keeps the layout free of overflow (each
    // node of a verified graph has at most `MAX_TENSOR_BYTES` bytes).
    (0..n)
        .try_fold(ALIGN, |sum: usize, i| {
            sum.checked_add(padded(bytes_of(NodeId::new(i))))?
                .checked_add(FAULT_SLOT_BYTES)
        })
        .ok_or_else(|| {
            CodegenError(format!(
                "graph '{}': the arena size of its {n} values overflows",
                g.name
            ))
        })?;
    for i in 0..n {
        let id = NodeId::new(i);
        if let Op::Param { .. } = g.node(id).op {
            location[i] = Some(Location::Variable(id));
            region[i] = Some(Region::Param);
        }
    }
    // Which kernel last reads each storage (outputs: never freed), and
    // whether any kernel or call reads it from memory at all.
    let mut last_read = vec![0usize; n];
    let mut read = vec![false; n];
    // Every read of each variable: (kernel, counter), in kernel order.
    let mut var_reads: Vec<Vec<(usize, Option<&Counter>)>> = vec![Vec::new(); n];
    for (k, body) in bodies.iter().enumerate() {
        for (s, c) in body.reads() {
            last_read[s.index()] = last_read[s.index()].max(k);
            read[s.index()] = true;
            if region[s.index()] == Some(Region::Param) {
                var_reads[s.index()].push((k, c));
            }
        }
    }
    let mut pinned = vec![false; n];
    for (_, o) in g.outputs() {
        pinned[plan.storage_of(*o).index()] = true;
    }

    // A constant gets a buffer only when something reads it from memory or
    // an output is it: nests inline a splat as an immediate, and
    // materialising every broadcast zero of a convnet's gradient cost
    // `cnn` 30 MB of its 83 MB arena (and the pages to fill them).
    for (want, reg) in [(1, Region::Input), (2, Region::Const)] {
        for i in 0..n {
            let id = NodeId::new(i);
            let kind = match g.node(id).op {
                Op::Input { .. } => 1,
                Op::Const(_) if read[i] || pinned[i] => 2,
                _ => continue,
            };
            if kind == want {
                location[i] = Some(Location::Arena(top));
                region[i] = Some(reg);
                top += padded(bytes_of(id));
            }
        }
    }
    let scratch_base = top;

    // In-place variable updates.
    let mut in_place = Vec::new();
    let mut copies = Vec::new();
    // Kernels up to this one may stop the run with an id fault.
    let last_check = bodies.iter().rposition(|b| !b.id_checks().is_empty());
    let mut claimed_update = vec![false; n];
    // Variables by name, built once (a lookup per update output by scanning
    // the graph was quadratic in the model's size).
    let params: std::collections::HashMap<String, NodeId> = g.params().into_iter().collect();
    for (name, u) in g.outputs() {
        let Some(var) = lossgraph_ir::names::updated_variable(name) else {
            continue;
        };
        let Some(&p) = params.get(var) else {
            continue;
        };
        // Same element type and count: the update is stored row-major over the
        // variable's shape (a shape mismatch of equal size acts as a reshape).
        let (pt, ut) = (&g.node(p).ty, &g.node(*u).ty);
        if pt.dtype != ut.dtype || pt.numel() != ut.numel() {
            return Err(CodegenError(format!(
                "output '{name}' has type {} but variable '{var}' is {}",
                g.node(*u).ty,
                g.node(p).ty
            )));
        }
        let safe = match plan.class_of(*u) {
            NodeClass::Root(k) if !claimed_update[u.index()] => {
                plan.kernels[k].kind == KernelKind::Elementwise
                    && last_check.is_none_or(|c| k > c)
                    && in_place_safe(plan, bodies, &var_reads[p.index()], k, *u)
                    && !in_place.iter().any(|&(q, _)| q == p)
            }
            _ => false,
        };
        if safe {
            claimed_update[u.index()] = true;
            in_place.push((p, *u));
            location[u.index()] = location[p.index()];
            region[u.index()] = Some(Region::Param);
        } else {
            copies.push((p, plan.storage_of(*u)));
        }
    }

    // Scratch assignment by liveness.
    let mut free: Vec<(usize, usize)> = Vec::new(); // (offset, size) relative to scratch base
    let mut high = 0usize;
    let alloc = |size: usize, free: &mut Vec<(usize, usize)>, high: &mut usize| {
        if let Some(i) = free.iter().position(|&(_, s)| s >= size) {
            let (o, s) = free[i];
            if s == size {
                free.remove(i);
            } else {
                free[i] = (o + size, s - size);
            }
            o
        } else {
            let o = *high;
            *high += size;
            o
        }
    };
    let release = |o: usize, size: usize, free: &mut Vec<(usize, usize)>| {
        free.push((o, size));
        free.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(free.len());
        for &(o, s) in free.iter() {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == o => last.1 += s,
                _ => merged.push((o, s)),
            }
        }
        *free = merged;
    };
    let mut live_until: Vec<(usize, NodeId)> = Vec::new();
    for (k, kernel) in plan.kernels.iter().enumerate() {
        for &r in &kernel.roots {
            if location[r.index()].is_some() {
                continue; // in place
            }
            let size = padded(bytes_of(r));
            if let Some(sv) = reusable(plan, &bodies[k], k, r, &last_read, &pinned, &region)
                .filter(|&sv| padded(bytes_of(sv)) == size)
                .filter(|sv| live_until.iter().any(|&(_, x)| x == *sv))
            {
                // Take over the dying input's buffer (e.g. an epilogue writing
                // over its GEMM output): every read of it is at the written element.
                live_until.retain(|&(_, x)| x != sv);
                location[r.index()] = location[sv.index()];
                region[r.index()] = Some(Region::Scratch);
                if !pinned[r.index()] {
                    live_until.push((last_read[r.index()].max(k), r));
                }
                continue;
            }
            let o = alloc(size, &mut free, &mut high);
            location[r.index()] = Some(Location::Arena(scratch_base + o));
            region[r.index()] = Some(Region::Scratch);
            if !pinned[r.index()] {
                live_until.push((last_read[r.index()].max(k), r));
            }
        }
        let (done, keep): (Vec<_>, Vec<_>) = live_until.into_iter().partition(|&(t, _)| t <= k);
        live_until = keep;
        for (_, r) in done {
            // Only scratch buffers enter `live_until`, all of them in the arena.
            if let Some(Location::Arena(o)) = location[r.index()] {
                release(o - scratch_base, padded(bytes_of(r)), &mut free);
            }
        }
    }
    let mut faults: Vec<(NodeId, usize)> = Vec::new();
    let mut fault_top = scratch_base + high;
    for b in bodies {
        for n in b.id_checks() {
            if faults.iter().all(|f| f.0 != n) {
                faults.push((n, fault_top));
                fault_top += FAULT_SLOT_BYTES;
            }
        }
    }
    Ok(MemoryPlan {
        location,
        region,
        size: fault_top.div_ceil(ALIGN) * ALIGN,
        scratch: high,
        in_place,
        copies,
        faults,
    })
}

/// A scratch buffer that root `r` of elementwise kernel `k` may overwrite:
/// read for the last time by kernel `k`, not an output, and read there only
/// at exactly the element `r` writes (so each element is loaded before it is
/// stored in the same iteration). An all-reduce takes over its operand's
/// buffer on the same terms (the communicator reduces in place).
fn reusable(
    plan: &Plan,
    body: &KernelBody,
    k: usize,
    r: NodeId,
    last_read: &[usize],
    pinned: &[bool],
    region: &[Option<Region>],
) -> Option<NodeId> {
    if let KernelBody::AllReduce { x, .. } = body {
        let s = *x;
        let ok = last_read[s.index()] == k
            && !pinned[s.index()]
            && region[s.index()] == Some(Region::Scratch);
        return ok.then_some(s);
    }
    if plan.kernels[k].kind != KernelKind::Elementwise {
        return None;
    }
    let KernelBody::Nests(nests) = body else {
        return None;
    };
    let [nest] = nests.as_slice() else {
        return None;
    };
    let dst = nest
        .roots
        .iter()
        .map(|x| &nest.counters[x.dst])
        .find(|c| c.storage == Some(r))?;
    let reads = body.reads();
    reads.iter().find_map(|&(s, _)| {
        let ok = last_read[s.index()] == k
            && !pinned[s.index()]
            && region[s.index()] == Some(Region::Scratch)
            && !plan.kernels[k].roots.contains(&s)
            && reads.iter().filter(|(t, _)| *t == s).all(|(_, c)| {
                c.is_some_and(|c| c.strides == dst.strides && c.offset == dst.offset)
            });
        ok.then_some(s)
    })
}

/// True when writing `u` (a root of elementwise kernel `k`) over variable `p`
/// cannot change any value read: no later kernel reads `p`, and kernel `k`
/// reads `p` only at the element it writes. `reads`: every read of `p`, as
/// (kernel, counter).
fn in_place_safe(
    plan: &Plan,
    bodies: &[KernelBody],
    reads: &[(usize, Option<&Counter>)],
    k: usize,
    u: NodeId,
) -> bool {
    for &(i, c) in reads.iter().filter(|r| r.0 >= k) {
        if i > k {
            return false;
        }
        let KernelBody::Nests(nests) = &bodies[i] else {
            return false;
        };
        let Some(c) = c else { return false };
        // The store counter of `u` in the (single) elementwise nest.
        let dst = nests.iter().find_map(|n| {
            n.roots
                .iter()
                .find(|r| n.counters[r.dst].storage == Some(plan.storage_of(u)))
                .map(|r| &n.counters[r.dst])
        });
        match dst {
            Some(d) if d.strides == c.strides && d.offset == c.offset => {}
            _ => return false,
        }
    }
    true
}
