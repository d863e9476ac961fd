//! A selector that imports a capability no host grants (`test:greedy/secrets`): the host
//! must refuse to load it, naming the import, rather than run it without.

wit_bindgen::generate!({ path: "wit", world: "greedy", generate_all });

struct Greedy;

impl Guest for Greedy {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        Err(test::greedy::secrets::read("node-credentials"))
    }
}

export!(Greedy);
