//! Image references: any string is parsed or refused without panicking (the parser slices
//! by byte offsets); what parses prints as `name:tag` and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycontainer_store::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Reference::parse(text) {
        Ok(reference) => {
            let shown = reference.to_string();
            let again = Reference::parse(&shown).expect("a parsed reference parses again");
            assert_eq!(again, reference, "{text:?} -> {shown:?}");
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
