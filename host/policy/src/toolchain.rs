//! Which toolchain made a policy, when its component says so: a Python or JavaScript
//! policy carries its language's interpreter, which needs far more memory than a Rust
//! policy, and a memory-limit error says how much.

use std::fmt;
use std::str::FromStr;

use wasmparser::{ComponentName, KnownCustom, Parser, Payload};

/// An interpreter a policy component carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// componentize-py: CPython, linked as `libpython3.*.so` among the component's core
    /// modules.
    Python,
    /// ComponentizeJS: StarlingMonkey (SpiderMonkey), `language: JavaScript` in the
    /// component's producers.
    JavaScript,
}

impl Toolchain {
    /// The smallest `policyMemoryMiB` that runs this toolchain's policies with room to
    /// work: a trivial policy measured 13 MiB (Python) and 10 MiB (StarlingMonkey), and
    /// the interpreter's heap grows with the request.
    pub fn min_memory_mib(self) -> usize {
        32
    }

    /// What a component says about the toolchain that made it, from its own (outermost)
    /// custom sections: ComponentizeJS names the language in `producers`; componentize-py
    /// does not, but names the core modules it links, CPython among them, in
    /// `component-name`. `None` for anything else (Rust, and QuickJS, whose 2 MiB fit any
    /// limit), or bytes that do not parse.
    pub(crate) fn detect(component: &[u8]) -> Option<Self> {
        // Nested modules and components are walked past, not looked into: only the outer
        // component's sections name the toolchain.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(component) {
            match payload.ok()? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) if depth == 0 => return None,
                Payload::End(_) => depth -= 1,
                Payload::CustomSection(section) if depth == 0 => {
                    let found = match section.as_known() {
                        KnownCustom::Producers(producers) => javascript(producers),
                        KnownCustom::ComponentName(names) => python(names),
                        _ => None,
                    };
                    if found.is_some() {
                        return found;
                    }
                }
                _ => {}
            }
        }
        None
    }
}

fn javascript(producers: wasmparser::ProducersSectionReader<'_>) -> Option<Toolchain> {
    let says_javascript = producers.into_iter().flatten().any(|field| {
        field.name == "language"
            && field
                .values
                .into_iter()
                .flatten()
                .any(|value| value.name == "JavaScript")
    });
    says_javascript.then_some(Toolchain::JavaScript)
}

fn python(names: wasmparser::ComponentNameSectionReader<'_>) -> Option<Toolchain> {
    let links_libpython = names.into_iter().flatten().any(|name| match name {
        ComponentName::CoreModules(modules) => modules
            .into_iter()
            .flatten()
            .any(|module| module.name.starts_with("libpython")),
        _ => false,
    });
    links_libpython.then_some(Toolchain::Python)
}

/// How the cache's index files keep it: `python`, `javascript`.
impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Python => "python",
            Self::JavaScript => "javascript",
        })
    }
}

impl FromStr for Toolchain {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "python" => Ok(Self::Python),
            "javascript" => Ok(Self::JavaScript),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose only section is a custom one: `name` with `payload`.
    fn with_custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![u8::try_from(name.len()).unwrap()];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        let mut component = b"\0asm\x0d\x00\x01\x00".to_vec();
        component.push(0);
        component.push(u8::try_from(body.len()).unwrap());
        component.extend(body);
        component
    }

    fn string(text: &str) -> Vec<u8> {
        let mut bytes = vec![u8::try_from(text.len()).unwrap()];
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    #[test]
    fn componentize_js_names_its_language() {
        // producers: 1 field, `language`, 1 value: `JavaScript` (no version).
        let mut producers = vec![1];
        producers.extend(string("language"));
        producers.push(1);
        producers.extend(string("JavaScript"));
        producers.extend(string(""));
        let component = with_custom_section("producers", &producers);
        assert_eq!(Toolchain::detect(&component), Some(Toolchain::JavaScript));
    }

    #[test]
    fn componentize_py_links_libpython() {
        // component-name: subsection 0 (core sort) 0x11 (modules): 1 name, index 3.
        let mut map = vec![0x00, 0x11, 1, 3];
        map.extend(string("libpython3.14.so"));
        let mut names = vec![1, u8::try_from(map.len()).unwrap()];
        names.extend(map);
        let component = with_custom_section("component-name", &names);
        assert_eq!(Toolchain::detect(&component), Some(Toolchain::Python));
    }

    #[test]
    fn anything_else_is_no_known_toolchain() {
        assert_eq!(Toolchain::detect(b"\0asm\x0d\x00\x01\x00"), None);
        assert_eq!(Toolchain::detect(b"not wasm"), None);
        let mut producers = vec![1];
        producers.extend(string("language"));
        producers.push(1);
        producers.extend(string("Rust"));
        producers.extend(string(""));
        let component = with_custom_section("producers", &producers);
        assert_eq!(Toolchain::detect(&component), None);
    }
}
