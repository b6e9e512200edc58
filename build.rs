//! Compiles `data/resources.gresource.xml` into `$OUT_DIR/passthrough.gresource`, which
//! `lib.rs` embeds. Files are looked up in `data/` first, then in `src/` (where the help
//! overlay sits beside the widgets). Widget templates are not in the bundle: each one is
//! included at compile time from the `.ui` beside its `.rs` (`#[template(file = …)]`).

fn main() {
    glib_build_tools::compile_resources(
        &["data", "src"],
        "data/resources.gresource.xml",
        "passthrough.gresource",
    );
}
