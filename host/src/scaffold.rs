//! `psp-gateway plugin new NAME`: writes a plugin crate (`plugins/NAME/`) that builds, loads
//! and passes its tests as written: a `Plugin` whose operations answer `unsupported` until
//! implemented (with comments saying what each must do), harness tests, a README with its
//! settings table. The build and test scripts find it by its folder; nothing else to edit.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "invalid plugin name `{0}`: use lowercase letters, digits and `-`, starting with a letter (it names the crate, the folder and the .wasm file)"
    )]
    InvalidName(String),
    #[error("{0} already exists: pick another name or remove it")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("scaffold/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("scaffold/lib.rs.tmpl")),
    ("src/tests.rs", include_str!("scaffold/tests.rs.tmpl")),
    ("README.md", include_str!("scaffold/README.md.tmpl")),
];

/// Writes `<plugins_dir>/<name>/` and returns it.
pub fn new_plugin(plugins_dir: &Path, name: &str) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let root = plugins_dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    for (file, template) in FILES {
        let path = root.join(file);
        let write = |path: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
            std::fs::write(path, render(template, name))
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(root)
}

fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn render(template: &str, name: &str) -> String {
    let words: Vec<String> = name
        .split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    template
        .replace("{{name}}", name)
        .replace("{{Type}}", &words.concat())
        .replace("{{Title}}", &words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_a_crate_a_type_and_a_title() {
        let out = render("{{name}} {{Type}} {{Title}}", "acme-pay2");
        assert_eq!(out, "acme-pay2 AcmePay2 Acme Pay2");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "Acme",
            "1acme",
            "acme_pay",
            "acme-",
            "a--b",
            "acme/../x",
            "ac me",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("acme"));
        assert!(valid_name("acme-pay"));
    }

    #[test]
    fn writes_every_file_with_no_placeholder_left_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_plugin(dir.path(), "acme").unwrap();
        for (file, _) in FILES {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file}: {text}");
        }
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct Acme;") && lib.contains("name: \"acme\".into()"));
        assert!(matches!(
            new_plugin(dir.path(), "acme"),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            new_plugin(dir.path(), "Acme"),
            Err(ScaffoldError::InvalidName(_))
        ));
    }
}
