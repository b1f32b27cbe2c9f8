//! Writes the scaling benchmark's route tables (`$OUT_DIR/routes_{N}.rs`, one `proxy!`
//! invocation each) from `src/spec.rs`.

#[path = "src/spec.rs"]
#[allow(dead_code)]
mod spec;

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=src/spec.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    for n in spec::SIZES {
        let path = out_dir.join(format!("routes_{n}.rs"));
        let source = spec::dsl(n);
        // Rewriting an unchanged file would rebuild the benches for nothing.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(source.as_str()) {
            if let Err(error) = std::fs::write(&path, source) {
                panic!("writing {}: {error}", path.display());
            }
        }
    }
}
