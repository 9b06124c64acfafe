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
    // The table the route serves from: each asset's bytes and content type, by name.
    let mut table = format!("pub const PRESENT: bool = {};\n\n", missing.is_empty());
    table.push_str("pub fn asset(name: &str) -> Option<(&'static [u8], &'static str)> {\n    match name {\n");
    for (name, _) in ASSETS {
        let content_type =
            if name.ends_with(".css") { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
        table.push_str(&format!(
            "        {name:?} => Some((include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}\")).as_slice(), {content_type:?})),\n"
        ));
    }
    table.push_str("        _ => None,\n    }\n}\n");
    fs::write(out.join("graphiql_assets.rs"), table).expect("write to OUT_DIR");
}
