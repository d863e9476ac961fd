//! What an operator installs (`scripts/install`): a stripped binary, its debug info
//! apart but found, and the `plexus-ipam` link.

use std::fs;
use std::path::Path;
use std::process::Command;

use plexus_tests::plexus_binary;

/// About what a stripped build weighs (27 MB), with room to grow; the build with its
/// line tables weighs 150 MB.
const MAX_INSTALLED_BYTES: u64 = 30 * 1024 * 1024;

/// `readelf ARGS FILE`'s output, which must succeed.
fn readelf(args: &[&str], file: &Path) -> String {
    let output = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (binutils)");
    assert!(
        output.status.success(),
        "readelf {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names of an ELF file's sections.
fn sections(file: &Path) -> Vec<String> {
    readelf(&["--section-headers", "--wide"], file)
        .lines()
        .filter_map(|line| {
            // "  [Nr] Name Type ...": the name follows the bracketed number.
            let rest = line.trim_start().strip_prefix('[')?;
            let (_, rest) = rest.split_once(']')?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

#[test]
fn the_installed_binary_is_stripped_and_its_debug_info_is_found_beside_it() {
    let dest = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install");
    let output = Command::new("bash")
        .arg(&script)
        .arg(dest.path())
        .env("PLEXUS_BINARY", plexus_binary())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/install: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let installed = dest.path().join("plexus");
    let size = fs::metadata(&installed).unwrap().len();
    assert!(
        size <= MAX_INSTALLED_BYTES,
        "the installed binary weighs {size} bytes"
    );
    let names = sections(&installed);
    let left: Vec<&String> = names
        .iter()
        // `.debug_gdb_scripts` is loaded with the program (gdb's pretty-printers for
        // Rust types, a few bytes): not debug info.
        .filter(|name| {
            (name.starts_with(".debug") && *name != ".debug_gdb_scripts") || *name == ".symtab"
        })
        .collect();
    assert!(left.is_empty(), "not stripped: {left:?}");
    assert!(names.iter().any(|name| name == ".gnu_debuglink"));

    let debug = dest.path().join(".debug/plexus.debug");
    let debug_sections = sections(&debug);
    for wanted in [".debug_line", ".symtab"] {
        assert!(
            debug_sections.iter().any(|name| name == wanted),
            "{wanted} is not in {}: {debug_sections:?}",
            debug.display()
        );
    }
    // readelf follows the link as gdb and a panic's backtrace do, checking its checksum.
    let links = readelf(&["--debug-dump=links"], &installed);
    assert!(
        links.contains(&format!(
            "Found separate debug info file: {}",
            debug.display()
        )),
        "{links}"
    );

    assert_eq!(
        fs::read_link(dest.path().join("plexus-ipam")).unwrap(),
        Path::new("plexus")
    );
    let version = Command::new(&installed)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("supportedVersions"),
        "{version:?}"
    );
}
