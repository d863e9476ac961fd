//! Drops the exports of a component's core modules that nothing in the component reaches,
//! before the component is compiled.
//!
//! Why: on every load of a compiled component, wasmtime rebuilds each core module's
//! metadata, and every export costs a name to intern and a function reference to set up
//! when the module is instantiated. Toolchains that link shared libraries export every
//! symbol of each library although the component links only some of them: a Python
//! policy (componentize-py links CPython, libc and its runtime as separate modules)
//! exports about 4,400 items of which about 2,000 are used, and pruning the rest makes its
//! cached load + call about a fifth cheaper. The component's own imports and exports, and
//! everything the modules do, are unchanged.
//!
//! A core module's exports are reachable only through the component that holds it: by an
//! alias of an instance's export, or as the instantiation argument that another module
//! imports from by name. A component the analysis cannot follow whole (a core module
//! imported, exported, aliased or given to a component, or aliased from inside a nested
//! component) is left as it is.

use std::collections::HashSet;
use std::ops::Range;

use wasmparser::{
    BinaryReader, ComponentAlias, ComponentExportSectionReader, ComponentExternalKind,
    ComponentImportSectionReader, ComponentInstance, ComponentInstanceSectionReader,
    ComponentOuterAliasKind, ComponentTypeRef, ExportSectionReader, ImportSectionReader, Instance,
    InstanceSectionReader, SectionLimited,
};

/// The length of the preamble (magic and version) of a module or a component.
const PREAMBLE: usize = 8;

/// Section ids of the component binary format.
mod component_section {
    pub const CORE_MODULE: u8 = 1;
    pub const CORE_INSTANCE: u8 = 2;
    pub const COMPONENT: u8 = 4;
    pub const INSTANCE: u8 = 5;
    pub const ALIAS: u8 = 6;
    pub const IMPORT: u8 = 10;
    pub const EXPORT: u8 = 11;
}

/// Section ids of the core module binary format.
mod module_section {
    pub const IMPORT: u8 = 2;
    pub const EXPORT: u8 = 7;
}

/// `component` without the core-module exports it never reaches; `None` when there are
/// none to drop, or the component is not one this analysis can follow whole (then it is
/// compiled as it is, and a malformed one is reported by the compiler).
pub(crate) fn unused_exports_pruned(component: &[u8]) -> Option<Vec<u8>> {
    if !wasmparser::Parser::is_component(component) {
        return None;
    }
    let sections = sections(component).ok()?;
    let reached = reached_exports(&sections).ok()??;
    let mut pruned = component[..PREAMBLE].to_vec();
    let mut dropped = 0;
    let mut module_index = 0;
    for section in &sections {
        if section.id == component_section::CORE_MODULE {
            let keep = &reached[module_index];
            module_index += 1;
            let (module, dropped_here) = module_pruned(section.body, keep).ok()?;
            dropped += dropped_here;
            push_section(&mut pruned, section.id, &module);
        } else {
            push_section(&mut pruned, section.id, section.body);
        }
    }
    tracing::debug!(
        dropped,
        "pruned core-module exports the component never reaches"
    );
    (dropped > 0).then_some(pruned)
}

/// One section of a module or a component: its id and its contents.
struct Section<'a> {
    id: u8,
    body: &'a [u8],
    /// Where `body` starts in the whole binary, for the readers' offsets.
    offset: usize,
}

/// The sections of a module or a component, after its preamble.
fn sections(binary: &[u8]) -> wasmparser::Result<Vec<Section<'_>>> {
    let mut reader = BinaryReader::new(binary, 0);
    reader.read_bytes(PREAMBLE)?;
    let mut sections = Vec::new();
    while !reader.eof() {
        let id = reader.read_u8()?;
        let len = reader.read_var_u32()? as usize;
        let offset = reader.original_position();
        let body = reader.read_bytes(len)?;
        sections.push(Section { id, body, offset });
    }
    Ok(sections)
}

fn reader<'a>(section: &Section<'a>) -> BinaryReader<'a> {
    BinaryReader::new(section.body, section.offset)
}

/// A core instance made by instantiating a module of the component.
struct Instantiation {
    module: u32,
    /// The instances it is given, by the name its imports use.
    args: Vec<(String, u32)>,
}

/// For each core module of the component, in order, the names of its exports that the
/// component reaches; `Ok(None)` when the component is not one this analysis follows.
fn reached_exports(sections: &[Section<'_>]) -> wasmparser::Result<Option<Vec<HashSet<String>>>> {
    // What each module imports, as (module, name).
    let mut imports: Vec<Vec<(String, String)>> = Vec::new();
    // Each core instance; `None` for an instance made of other items.
    let mut instances: Vec<Option<Instantiation>> = Vec::new();
    // (core instance, export name) pairs reached by aliases.
    let mut reached: HashSet<(u32, String)> = HashSet::new();
    for section in sections {
        match section.id {
            component_section::CORE_MODULE => imports.push(module_imports(section.body)?),
            component_section::CORE_INSTANCE => {
                for instance in InstanceSectionReader::new(reader(section))? {
                    instances.push(match instance? {
                        Instance::Instantiate { module_index, args } => Some(Instantiation {
                            module: module_index,
                            args: args
                                .iter()
                                .map(|arg| (arg.name.to_owned(), arg.index))
                                .collect(),
                        }),
                        Instance::FromExports(_) => None,
                    });
                }
            }
            component_section::COMPONENT if aliases_outer_modules(section.body)? => {
                return Ok(None);
            }
            component_section::INSTANCE => {
                for instance in ComponentInstanceSectionReader::new(reader(section))? {
                    if let ComponentInstance::Instantiate { args, .. } = instance?
                        && args
                            .iter()
                            .any(|arg| arg.kind == ComponentExternalKind::Module)
                    {
                        return Ok(None);
                    }
                }
            }
            component_section::ALIAS => {
                for alias in SectionLimited::<ComponentAlias>::new(reader(section))? {
                    match alias? {
                        ComponentAlias::CoreInstanceExport {
                            instance_index,
                            name,
                            ..
                        } => {
                            reached.insert((instance_index, name.to_owned()));
                        }
                        ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Module,
                            ..
                        }
                        | ComponentAlias::Outer {
                            kind: ComponentOuterAliasKind::CoreModule,
                            ..
                        } => return Ok(None),
                        _ => {}
                    }
                }
            }
            component_section::IMPORT => {
                for import in ComponentImportSectionReader::new(reader(section))? {
                    if matches!(import?.ty, ComponentTypeRef::Module(_)) {
                        return Ok(None);
                    }
                }
            }
            component_section::EXPORT => {
                for export in ComponentExportSectionReader::new(reader(section))? {
                    if export?.kind == ComponentExternalKind::Module {
                        return Ok(None);
                    }
                }
            }
            _ => {}
        }
    }
    // An instance given as an argument is reached for whatever its importer imports
    // under the argument's name.
    for Instantiation { module, args } in instances.iter().flatten() {
        let Some(module_imports) = imports.get(*module as usize) else {
            return Ok(None);
        };
        for (arg_name, instance_index) in args {
            for (module, name) in module_imports {
                if module == arg_name {
                    reached.insert((*instance_index, name.clone()));
                }
            }
        }
    }
    let mut kept = vec![HashSet::new(); imports.len()];
    for (instance_index, instance) in instances.iter().enumerate() {
        if let Some(Instantiation { module, .. }) = instance {
            let instance_index = instance_index as u32;
            kept[*module as usize].extend(
                reached
                    .iter()
                    .filter(|(reached_instance, _)| *reached_instance == instance_index)
                    .map(|(_, name)| name.clone()),
            );
        }
    }
    Ok(Some(kept))
}

/// Whether a nested component (or one nested in it) aliases a core module from outside:
/// the one way it could reach the modules being pruned.
fn aliases_outer_modules(component: &[u8]) -> wasmparser::Result<bool> {
    for section in sections(component)? {
        match section.id {
            component_section::COMPONENT if aliases_outer_modules(section.body)? => {
                return Ok(true);
            }
            component_section::ALIAS => {
                for alias in SectionLimited::<ComponentAlias>::new(reader(&section))? {
                    if let ComponentAlias::Outer {
                        kind: ComponentOuterAliasKind::CoreModule,
                        ..
                    } = alias?
                    {
                        return Ok(true);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// What a core module imports, as (module, name).
fn module_imports(module: &[u8]) -> wasmparser::Result<Vec<(String, String)>> {
    let mut imports = Vec::new();
    for section in sections(module)? {
        if section.id == module_section::IMPORT {
            for import in ImportSectionReader::new(reader(&section))?.into_imports() {
                let import = import?;
                imports.push((import.module.to_owned(), import.name.to_owned()));
            }
        }
    }
    Ok(imports)
}

/// `module` with only the exports named in `keep`, and how many it dropped.
fn module_pruned(module: &[u8], keep: &HashSet<String>) -> wasmparser::Result<(Vec<u8>, usize)> {
    let mut pruned = module[..PREAMBLE].to_vec();
    let mut dropped = 0;
    for section in sections(module)? {
        if section.id != module_section::EXPORT {
            push_section(&mut pruned, section.id, section.body);
            continue;
        }
        let mut entries: Vec<(Range<usize>, bool)> = Vec::new();
        for entry in ExportSectionReader::new(reader(&section))?.into_iter_with_offsets() {
            let (start, export) = entry?;
            let start = start - section.offset;
            if let Some((previous, _)) = entries.last_mut() {
                previous.end = start;
            }
            entries.push((start..section.body.len(), keep.contains(export.name)));
        }
        let kept: Vec<&Range<usize>> = entries
            .iter()
            .filter_map(|(range, kept)| kept.then_some(range))
            .collect();
        dropped += entries.len() - kept.len();
        let mut body = Vec::with_capacity(section.body.len());
        push_leb128(&mut body, kept.len());
        for range in kept {
            body.extend_from_slice(&section.body[range.clone()]);
        }
        push_section(&mut pruned, section.id, &body);
    }
    Ok((pruned, dropped))
}

fn push_section(binary: &mut Vec<u8>, id: u8, body: &[u8]) {
    binary.push(id);
    push_leb128(binary, body.len());
    binary.extend_from_slice(body);
}

fn push_leb128(binary: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            binary.push(byte);
            return;
        }
        binary.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    use super::*;

    /// Module `a` exports what module `b` imports, what the component lifts, and two
    /// things nothing uses; module `b` exports one thing nothing uses.
    const LINKED: &str = r#"
        (component $outer
          (core module $a
            (memory (export "memory") 1)
            (func (export "imported-by-b") (result i32) i32.const 1)
            (func (export "lifted") (result i32) call $b-calls-this)
            (func $b-calls-this (result i32) i32.const 2)
            (func (export "unused") (result i32) i32.const 3))
          (core module $b
            (import "a" "imported-by-b" (func (result i32)))
            (func (export "unused-too")))
          (core instance $a (instantiate $a))
          (core instance $b (instantiate $b (with "a" (instance $a))))
          (func (export "lifted") (result s32) (canon lift (core func $a "lifted")))
          EXTRA)
    "#;

    fn component(extra: &str) -> Vec<u8> {
        wat::parse_str(LINKED.replace("EXTRA", extra)).expect("the test's component")
    }

    /// The export names of each core module of `component`, in order.
    fn core_exports(component: &[u8]) -> Vec<Vec<String>> {
        sections(component)
            .unwrap()
            .iter()
            .filter(|section| section.id == component_section::CORE_MODULE)
            .map(|module| {
                sections(module.body)
                    .unwrap()
                    .iter()
                    .filter(|section| section.id == module_section::EXPORT)
                    .flat_map(|section| ExportSectionReader::new(reader(section)).unwrap())
                    .map(|export| export.unwrap().name.to_owned())
                    .collect()
            })
            .collect()
    }

    fn call_lifted(component: &[u8]) -> i32 {
        let engine = Engine::default();
        let component = Component::new(&engine, component).expect("compiles");
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &component)
            .expect("instantiates");
        let lifted = instance
            .get_typed_func::<(), (i32,)>(&mut store, "lifted")
            .expect("exported");
        lifted.call(&mut store, ()).expect("runs").0
    }

    #[test]
    fn exports_nothing_reaches_are_dropped_and_the_component_runs_the_same() {
        let original = component("");
        let pruned = unused_exports_pruned(&original).expect("something to drop");
        assert_eq!(
            core_exports(&original),
            [
                vec!["memory", "imported-by-b", "lifted", "unused"],
                vec!["unused-too"]
            ]
        );
        assert_eq!(
            core_exports(&pruned),
            [vec!["imported-by-b", "lifted"], vec![]]
        );
        assert_eq!(call_lifted(&pruned), call_lifted(&original));
        assert_eq!(call_lifted(&pruned), 2);
    }

    #[test]
    fn a_component_with_nothing_to_drop_is_left_as_it_is() {
        let pruned = unused_exports_pruned(&component("")).unwrap();
        assert_eq!(unused_exports_pruned(&pruned), None);
    }

    #[test]
    fn a_component_whose_modules_may_be_reached_otherwise_is_left_as_it_is() {
        for extra in [
            // Exported: whoever instantiates the module may use any of its exports.
            r#"(export "a" (core module $a))"#,
            // Aliased from a nested component, which may instantiate it.
            "(component (alias outer $outer $a (core module)))",
        ] {
            assert_eq!(unused_exports_pruned(&component(extra)), None, "{extra}");
        }
        // A nested component that reaches no outer module does not stop the pruning.
        assert!(unused_exports_pruned(&component("(component)")).is_some());
    }

    #[test]
    fn what_is_not_a_component_is_left_to_the_compiler() {
        assert_eq!(unused_exports_pruned(b"\0asm\x01\0\0\0"), None);
        assert_eq!(unused_exports_pruned(b"not wasm at all"), None);
        let mut truncated = component("");
        truncated.truncate(truncated.len() - 3);
        assert_eq!(unused_exports_pruned(&truncated), None);
    }
}
