//! Recipe files (`image build FILE.toml`): any text is read as a recipe or refused, never
//! a panic; a recipe that builds `from` an image compiles its `[[step]]`s into a plan
//! (or refuses them). The recipe's files live in the binary crate: included by path.
#![no_main]

use libfuzzer_sys::fuzz_target;

// At the crate root: recipe.rs names `super::steps`.
#[allow(dead_code)]
#[path = "../../src/builder/recipe.rs"]
mod recipe;
#[allow(dead_code)]
#[path = "../../src/builder/steps.rs"]
mod steps;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(recipe) = recipe::Recipe::parse(text, "fuzz.toml") {
        if let Some(Ok(plan)) = recipe.plan() {
            assert_eq!(plan.stages.len(), 1, "a recipe is one stage");
        }
    }
});
