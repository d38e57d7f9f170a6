//! Duplex's `Cargo.lock`, read just enough to hand a plugin crate the part of
//! it that the SDK needs: the same dependency versions, so a vendor's plugin
//! builds with what Duplex is tested with, from the cargo cache, without
//! asking the registry to resolve anything.

use std::collections::{BTreeMap, BTreeSet};

/// A lock file's packages. Borrowed from the text it was parsed from.
pub struct Lock<'a> {
    /// Everything before the first `[[package]]` (the `@generated` comment
    /// and `version = N`).
    header: &'a str,
    packages: Vec<Package<'a>>,
}

#[derive(Debug, Clone)]
pub struct Package<'a> {
    pub name: &'a str,
    pub version: &'a str,
    source: Option<&'a str>,
    checksum: Option<&'a str>,
    /// As written: `name`, `name version` or `name version (source)`.
    dependencies: Vec<&'a str>,
}

/// The value of a `key = "value"` line.
fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)?
        .strip_prefix(" = \"")?
        .strip_suffix('"')
}

impl<'a> Lock<'a> {
    pub fn parse(text: &'a str) -> Lock<'a> {
        let mut blocks = text.split("[[package]]\n");
        let header = blocks.next().unwrap_or("").trim_end();
        let packages = blocks.filter_map(Package::parse).collect();
        Lock { header, packages }
    }

    /// The package a dependency entry of this lock refers to.
    fn resolve(&self, entry: &str) -> Option<&Package<'a>> {
        let mut words = entry.split_whitespace();
        let name = words.next()?;
        let version = words.next();
        self.packages
            .iter()
            .find(|p| p.name == name && version.is_none_or(|v| v == p.version))
    }

    /// The version of `dependency` that package `package` is locked to.
    pub fn dependency_version(&self, package: &str, dependency: &str) -> Option<&'a str> {
        let owner = self.packages.iter().find(|p| p.name == package)?;
        let entry = owner
            .dependencies
            .iter()
            .find(|d| d.split_whitespace().next() == Some(dependency))?;
        Some(self.resolve(entry)?.version)
    }

    /// A lock for a new package `root`@`version` depending on `direct` (each
    /// one a package of this lock): those packages and everything they
    /// depend on, written as cargo writes a lock. Packages only other
    /// workspace members' features pull in may remain; cargo drops them the
    /// first time it runs, with no registry access.
    pub fn for_plugin(&self, root: &str, version: &str, direct: &[&str]) -> Result<String, String> {
        let mut wanted: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut todo: Vec<&Package<'a>> = Vec::new();
        let mut root_deps = Vec::new();
        for name in direct {
            let p = self
                .packages
                .iter()
                .find(|p| p.name == *name)
                .ok_or_else(|| format!("Cargo.lock has no package `{name}`"))?;
            root_deps.push(p.clone());
            todo.push(p);
        }
        while let Some(p) = todo.pop() {
            if !wanted.insert((p.name, p.version)) {
                continue;
            }
            for entry in &p.dependencies {
                let dep = self.resolve(entry).ok_or_else(|| {
                    format!(
                        "Cargo.lock: `{} {}` depends on `{entry}`, which it does not list",
                        p.name, p.version
                    )
                })?;
                todo.push(dep);
            }
        }
        let mut packages: Vec<Package<'_>> = self
            .packages
            .iter()
            .filter(|p| wanted.contains(&(p.name, p.version)))
            .cloned()
            .collect();
        let root_package = Package {
            name: root,
            version,
            source: None,
            checksum: None,
            dependencies: Vec::new(),
        };
        packages.push(root_package);
        packages.sort_by(|a, b| (a.name, a.version).cmp(&(b.name, b.version)));

        // Cargo names a dependency by its version only where the lock holds
        // two versions of it.
        let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &packages {
            *versions.entry(p.name).or_default() += 1;
        }
        let entry = |p: &Package<'_>| {
            if versions[p.name] > 1 {
                format!("{} {}", p.name, p.version)
            } else {
                p.name.to_string()
            }
        };

        let mut out = format!("{}\n", self.header);
        for p in &packages {
            let mut deps: Vec<&Package<'_>> = if p.name == root && p.source.is_none() {
                root_deps.iter().collect()
            } else {
                p.dependencies
                    .iter()
                    .map(|e| self.resolve(e).expect("resolved above"))
                    .collect()
            };
            deps.sort_by(|a, b| (a.name, a.version).cmp(&(b.name, b.version)));
            out.push_str("\n[[package]]\n");
            out.push_str(&format!(
                "name = \"{}\"\nversion = \"{}\"\n",
                p.name, p.version
            ));
            if let Some(source) = p.source {
                out.push_str(&format!("source = \"{source}\"\n"));
            }
            if let Some(checksum) = p.checksum {
                out.push_str(&format!("checksum = \"{checksum}\"\n"));
            }
            if !deps.is_empty() {
                out.push_str("dependencies = [\n");
                for d in deps {
                    out.push_str(&format!(" \"{}\",\n", entry(d)));
                }
                out.push_str("]\n");
            }
        }
        Ok(out)
    }
}

impl<'a> Package<'a> {
    fn parse(block: &'a str) -> Option<Package<'a>> {
        let mut package = Package {
            name: "",
            version: "",
            source: None,
            checksum: None,
            dependencies: Vec::new(),
        };
        let mut in_dependencies = false;
        for line in block.lines() {
            if in_dependencies {
                match line.trim().trim_end_matches(',') {
                    "]" => in_dependencies = false,
                    entry => package.dependencies.push(entry.trim_matches('"')),
                }
            } else if let Some(v) = quoted(line, "name") {
                package.name = v;
            } else if let Some(v) = quoted(line, "version") {
                package.version = v;
            } else if let Some(v) = quoted(line, "source") {
                package.source = Some(v);
            } else if let Some(v) = quoted(line, "checksum") {
                package.checksum = Some(v);
            } else if line == "dependencies = [" {
                in_dependencies = true;
            }
        }
        (!package.name.is_empty()).then_some(package)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DIRECT_DEPENDENCIES, WORKSPACE_LOCK};
    use super::*;

    fn seed() -> String {
        Lock::parse(WORKSPACE_LOCK)
            .for_plugin("acme-checks", "0.1.0", &DIRECT_DEPENDENCIES)
            .unwrap()
    }

    #[test]
    fn the_seed_holds_the_sdk_and_its_dependencies_and_nothing_of_the_runner() {
        let text = seed();
        let lock = Lock::parse(&text);
        let names: BTreeSet<&str> = lock.packages.iter().map(|p| p.name).collect();
        for needed in [
            "acme-checks",
            "duplex-plugin-sdk",
            "wit-bindgen",
            "schemars",
            "serde",
        ] {
            assert!(names.contains(needed), "{needed} missing:\n{text}");
        }
        for runner_only in ["wasmtime", "duplex-core", "clap", "tokio"] {
            assert!(!names.contains(runner_only), "{runner_only} in:\n{text}");
        }
        assert!(text.starts_with("# This file is automatically @generated by Cargo."));
    }

    #[test]
    fn the_seed_pins_the_workspace_versions_and_resolves_every_entry() {
        let workspace = Lock::parse(WORKSPACE_LOCK);
        let text = seed();
        let lock = Lock::parse(&text);
        for p in &lock.packages {
            for entry in &p.dependencies {
                assert!(lock.resolve(entry).is_some(), "{entry} of {}", p.name);
            }
            if p.name != "acme-checks" {
                let same = workspace.packages.iter().any(|w| {
                    w.name == p.name && w.version == p.version && w.checksum == p.checksum
                });
                assert!(same, "{} {} is not the workspace's", p.name, p.version);
            }
        }
        assert_eq!(
            lock.dependency_version("acme-checks", "duplex-plugin-sdk"),
            Some("0.1.0")
        );
        assert_eq!(
            lock.dependency_version("duplex-plugin-sdk", "wit-bindgen"),
            workspace.dependency_version("duplex-plugin-sdk", "wit-bindgen")
        );
    }
}
