//! What a plugin may be called, and the Rust identifiers derived from it.

/// The longest name accepted (crates.io's limit).
const MAX_LEN: usize = 64;

/// Rust's keywords (strict and reserved, 2024 edition): a crate named like
/// one cannot be `use`d.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crates every Rust program can name already.
const BUILT_IN: &[&str] = &["alloc", "core", "proc-macro", "std", "test"];

/// Crates the scaffold depends on.
const DEPENDENCIES: &[&str] = &["duplex-plugin-sdk", "schemars", "serde"];

/// Type names the scaffold's `src/lib.rs` and `tests/checks.rs` have in scope
/// (the SDK's prelude, the standard prelude's, their own): the plugin type
/// must not be one of them.
const IN_SCOPE: &[&str] = &[
    "Artifact",
    "Box",
    "CallContext",
    "CheckResult",
    "Cx",
    "Deserialize",
    "DiskSpace",
    "Err",
    "Error",
    "HardwareOp",
    "JsonSchema",
    "LogLevel",
    "Manifest",
    "NoParams",
    "None",
    "Ok",
    "Option",
    "PartnerState",
    "Plugin",
    "Progress",
    "Result",
    "Serialize",
    "Side",
    "Some",
    "String",
    "TestHost",
    "UpgradeState",
    "Value",
    "Vec",
    "Verdict",
];

/// `Ok` if `name` can name a plugin crate, else what is wrong with it.
pub fn check(name: &str) -> Result<(), String> {
    let shown = name.escape_debug();
    if name.is_empty() {
        return Err("the plugin's name is empty: give one such as `acme-checks`".into());
    }
    let chars = name.chars().count();
    if chars > MAX_LEN {
        return Err(format!(
            "`{shown}` is too long for a plugin name ({chars} characters; at most {MAX_LEN})"
        ));
    }
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !well_formed {
        return Err(format!(
            "`{shown}` is not a valid plugin name: use lower-case letters, digits and \
             single hyphens, starting with a letter and not ending with a hyphen \
             (e.g. `acme-checks`)"
        ));
    }
    let taken = if KEYWORDS.contains(&name) {
        Some("it is a Rust keyword")
    } else if BUILT_IN.contains(&name) {
        Some("it is the name of a crate built into Rust")
    } else if DEPENDENCIES.contains(&name) {
        Some("the plugin crate depends on a crate of that name")
    } else {
        None
    };
    match taken {
        Some(why) => Err(format!(
            "`{name}` cannot be a plugin name: {why} (e.g. `{name}-checks` can)"
        )),
        None => Ok(()),
    }
}

/// The plugin type's name: `acme-checks` → `AcmeChecks`, with `Plugin`
/// appended when that would clash with a name the scaffold has in scope
/// (`plugin` → `PluginPlugin`).
pub fn type_name(name: &str) -> String {
    let mut pascal: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if IN_SCOPE.contains(&pascal.as_str()) {
        pascal.push_str("Plugin");
    }
    pascal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        for good in ["acme-checks", "a", "x86-ops", "acme2"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "acme_checks",
            "-acme",
            "acme-",
            "acme--checks",
            "1acme",
            "ac me",
            "é",
        ] {
            assert!(check(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check(&"a".repeat(65)).unwrap_err().contains("at most 64"));
        assert!(check("fn").unwrap_err().contains("Rust keyword"));
        assert!(check("std").unwrap_err().contains("built into Rust"));
        assert!(check("serde").unwrap_err().contains("depends on"));
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name("acme-checks"), "AcmeChecks");
        assert_eq!(type_name("x86-ops"), "X86Ops");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("disk-space"), "DiskSpacePlugin");
        assert_eq!(type_name("result"), "ResultPlugin");
    }
}
