//! Copies the GraphiQL page's assets from `web/node_modules` (installed by `npm ci --prefix web`,
//! which scripts/provision.sh runs) into the build, so `/graphiql` works offline. Without them
//! the build still succeeds and `/graphiql` says how to get them.

use std::{env, fs, path::PathBuf};

/// (name served under /graphiql/, path under web/node_modules)
const ASSETS: &[(&str, &str)] = &[
    ("graphiql.min.js", "graphiql/graphiql.min.js"),
    ("graphiql.min.css", "graphiql/graphiql.min.css"),
    ("react.production.min.js", "react/umd/react.production.min.js"),
    ("react-dom.production.min.js", "react-dom/umd/react-dom.production.min.js"),
    ("graphql-ws.min.js", "graphql-ws/umd/graphql-ws.min.js"),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let modules = manifest.join("../web/node_modules");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=../web/package-lock.json");
    let mut missing = Vec::new();
    for (name, source) in ASSETS {
        let from = modules.join(source);
        println!("cargo:rerun-if-changed={}", from.display());
        let bytes = fs::read(&from).unwrap_or_else(|_| {
            missing.push(*source);
            Vec::new()
        });
        fs::write(out.join(name), bytes).expect("write to OUT_DIR");
    }
    if !missing.is_empty() {
        println!(
            "cargo:warning=GraphiQL's assets are missing ({}); run `npm ci --prefix web` (scripts/provision.sh does) and build again",
            missing.join(", ")
        );
    }
    fs::write(out.join("graphiql_assets.rs"), format!("pub const PRESENT: bool = {};\n", missing.is_empty()))
        .expect("write to OUT_DIR");
}
