//! Containerfile parsing (`image build -f`): any text is turned into a build plan or
//! refused with an error, never a panic (the parser slices lines, flags, JSON arrays and
//! words by byte offsets). A plan that parses prints every step. The parser's files live
//! in the binary crate: they are included by path, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

// At the crate root: the files name each other as `super::steps` and `super::words`.
#[allow(dead_code)]
#[path = "../../src/builder/containerfile.rs"]
mod containerfile;
#[allow(dead_code)]
#[path = "../../src/builder/steps.rs"]
mod steps;
#[allow(dead_code)]
#[path = "../../src/builder/words.rs"]
mod words;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = containerfile::parse(text) {
        for stage in &plan.stages {
            for step in &stage.steps {
                let _ = step.to_string();
            }
        }
    }
});
