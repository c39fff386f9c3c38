//! What a component takes from the shared instance pool: how many core
//! instances, linear memories and tables one call instantiates. Measured
//! at upload so that a component asking for more than a call may have is
//! refused with a clear answer, and so that admission (see `gate`) can
//! reserve exactly what a call will take.

use wasmparser::{ComponentInstance, Instance, Parser, Payload};

/// What one instantiation of a component takes from the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// The most a component may declare; the pooling allocator enforces the
/// same numbers at instantiation. Measured on real guests: a Rust
/// component instantiates 1–3 core modules with one memory; componentize-py
/// 38 core modules (one per shared library, plus shims); componentize-qjs
/// 3 memories.
pub const MAX_CORE_INSTANCES: u32 = 64;
pub const MAX_MEMORIES: u32 = 4;
pub const MAX_TABLES: u32 = 32;

impl Shape {
    /// Refuse a shape over the per-component limits, saying which.
    pub fn check(&self) -> Result<(), String> {
        let over = |what: &str, n: u32, max: u32| {
            Err(format!(
                "it instantiates {n} {what}; a plugin may have at most {max} (a component built by cargo, componentize-py or componentize-qjs has fewer)"
            ))
        };
        if self.core_instances > MAX_CORE_INSTANCES {
            return over(
                "core module instances",
                self.core_instances,
                MAX_CORE_INSTANCES,
            );
        }
        if self.memories > MAX_MEMORIES {
            return over("linear memories", self.memories, MAX_MEMORIES);
        }
        if self.tables > MAX_TABLES {
            return over("tables", self.tables, MAX_TABLES);
        }
        Ok(())
    }
}

/// Count the core module instances, and the linear memories they define,
/// of one instantiation of the component in `bytes` (nested components
/// counted as often as they are instantiated). Runs before compiling, so
/// an oversized component costs no compile time; the pooling allocator
/// checks the same limits again when the component is compiled and when
/// it is instantiated.
pub fn measure(bytes: &[u8]) -> Result<Shape, String> {
    let (core_instances, memories) = count(bytes, 0)?;
    Ok(Shape {
        core_instances,
        memories,
        tables: 0,
    })
}

/// The memories a core module in `bytes` defines (imported ones are
/// someone else's).
fn module_memories(bytes: &[u8]) -> u32 {
    let mut n = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::MemorySection(r)) => n = n.saturating_add(r.count()),
            Ok(Payload::End(_)) | Err(_) => break,
            _ => {}
        }
    }
    n
}

fn count(bytes: &[u8], depth: u32) -> Result<(u32, u32), String> {
    let invalid = |e: wasmparser::BinaryReaderError| format!("it is not a valid component: {e}");
    if depth > 8 {
        return Err("it nests components more than 8 deep".into());
    }
    let mut own: u32 = 0;
    let mut memories: u32 = 0;
    // Per module and nested component defined here, in index order.
    let mut modules: Vec<u32> = Vec::new();
    let mut nested: Vec<(u32, u32)> = Vec::new();
    let mut total: (u32, u32) = (0, 0);
    let mut parser = Parser::new(0);
    let mut offset = 0;
    loop {
        let (payload, consumed) = match parser
            .parse(bytes.get(offset..).unwrap_or_default(), true)
            .map_err(invalid)?
        {
            wasmparser::Chunk::NeedMoreData(_) => break,
            wasmparser::Chunk::Parsed { payload, consumed } => (payload, consumed),
        };
        offset += consumed;
        match payload {
            Payload::InstanceSection(reader) => {
                for inst in reader {
                    if let Instance::Instantiate { module_index, .. } = inst.map_err(invalid)? {
                        own = own.saturating_add(1);
                        let m = modules.get(module_index as usize).copied().unwrap_or(0);
                        memories = memories.saturating_add(m);
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for inst in reader {
                    if let ComponentInstance::Instantiate {
                        component_index, ..
                    } = inst.map_err(invalid)?
                    {
                        let (i, m) = nested
                            .get(component_index as usize)
                            .copied()
                            .unwrap_or_default();
                        total = (total.0.saturating_add(i), total.1.saturating_add(m));
                    }
                }
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } => {
                let inner = bytes.get(unchecked_range.clone()).unwrap_or_default();
                nested.push(count(inner, depth + 1)?);
                // The parent parser already counts the nested bytes as read;
                // the data fed to it must skip them too.
                offset = unchecked_range.end;
            }
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let inner = bytes.get(unchecked_range.clone()).unwrap_or_default();
                modules.push(module_memories(inner));
                offset = unchecked_range.end;
            }
            Payload::End(_) => break,
            _ => {}
        }
    }
    Ok((
        own.saturating_add(total.0),
        memories.saturating_add(total.1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_party_components_are_counted_and_fit() {
        for b in &crate::builtin::BUILTINS {
            let s = measure(b.bytes).expect("parses");
            assert!(
                (1..=MAX_CORE_INSTANCES).contains(&s.core_instances),
                "{}: {s:?}",
                b.name
            );
            assert_eq!(s.memories, 1, "{}: {s:?}", b.name);
        }
    }

    /// Counting is not validation (compiling is), but no input may panic.
    #[test]
    fn truncated_or_corrupt_components_never_panic() {
        let bytes = crate::builtin::BUILTINS[0].bytes.to_vec();
        for cut in (0..bytes.len()).step_by(97) {
            let _ = measure(&bytes[..cut]);
        }
        for at in (8..bytes.len()).step_by(131) {
            let mut b = bytes.clone();
            b[at] ^= 0xff;
            let _ = measure(&b);
        }
    }
}
