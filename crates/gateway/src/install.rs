//! Installing an MCP server from npm or PyPI into the gateway's managed directory
//! (`state_dir/packages/NAME`), for `switchboard__install_server`.
//!
//! Everything an agent supplies is checked before the file system is touched: the name is
//! a server name, the package a registry name with an optional version (never an option,
//! a path or a URL), `bin` a plain file name. The install directory must resolve inside
//! `state_dir/packages` (canonicalised, so a planted symlink cannot lead out), the
//! installers get the spec after `--`, and the executable found must lie inside the
//! install directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_config::{InvalidServerName, ServerName};

/// Longest a package install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest accepted package spec, in bytes (npm's own name limit is 214).
const MAX_SPEC_BYTES: usize = 256;

/// Why an install was refused or failed; shown to the agent as the tool's error text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstallError {
    #[error(transparent)]
    Name(#[from] InvalidServerName),
    #[error("invalid package {0:?}: expected \"npm:NAME[@VERSION]\" or \"pypi:NAME[SPECIFIER]\"")]
    Package(String),
    #[error("invalid bin {0:?}: expected a file name")]
    Bin(String),
    #[error("installing needs a private directory: set `state_dir` under [gateway]")]
    NoStateDir,
    #[error("{0} resolves outside the gateway's package directory")]
    Outside(PathBuf),
    #[error("cannot create {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Installer(String),
    #[error("installed, but no executable at {0} (pass `bin`)")]
    NoExecutable(PathBuf),
}

/// Where a package comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Npm,
    Pypi,
}

/// A validated package spec: safe to hand to the installer as one argument.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Package {
    source: Source,
    spec: String,
    /// The executable the package installs by default (its name without scope or version).
    default_bin: String,
}

impl Package {
    /// Parses `npm:NAME[@VERSION]` or `pypi:NAME[EXTRAS][SPECIFIERS]`.
    pub(crate) fn parse(text: &str) -> Result<Package, InstallError> {
        let invalid = || InstallError::Package(text.to_owned());
        if text.len() > MAX_SPEC_BYTES {
            return Err(invalid());
        }
        let (source, spec) = match text.split_once(':') {
            Some(("npm", spec)) => (Source::Npm, spec),
            Some(("pypi", spec)) => (Source::Pypi, spec),
            _ => return Err(invalid()),
        };
        let default_bin = match source {
            Source::Npm => npm_name(spec),
            Source::Pypi => pypi_name(spec),
        }
        .ok_or_else(invalid)?;
        Ok(Package {
            source,
            spec: spec.to_owned(),
            default_bin: default_bin.to_owned(),
        })
    }
}

/// An npm name component: lower- or upper-case letters, digits, `-._~`, not starting
/// with `.`, `_` or `-`.
fn npm_component(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with(['.', '_', '-'])
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `[@scope/]name[@version]` → the bare name, for the default executable.
fn npm_name(spec: &str) -> Option<&str> {
    let (scope, rest) = match spec.strip_prefix('@') {
        Some(scoped) => {
            let (scope, rest) = scoped.split_once('/')?;
            (Some(scope), rest)
        }
        None => (None, spec),
    };
    let (name, version) = match rest.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (rest, None),
    };
    let version_ok = version.is_none_or(|version| {
        !version.is_empty()
            && !version.starts_with('-')
            && version.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'.' | b'-' | b'+' | b'_' | b'^' | b'~' | b'*' | b'<' | b'>' | b'='
                    )
            })
    });
    (scope.is_none_or(npm_component) && npm_component(name) && version_ok).then_some(name)
}

/// A PEP 508 project name: letters, digits, `-._`, starting and ending with a letter or
/// digit.
fn pypi_identifier(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `name[extra,...]` followed by comma-separated `OPversion` clauses → the name.
fn pypi_name(spec: &str) -> Option<&str> {
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        .unwrap_or(spec.len());
    let (name, mut rest) = spec.split_at(end);
    if !pypi_identifier(name) {
        return None;
    }
    if let Some(extras) = rest.strip_prefix('[') {
        let (extras, after) = extras.split_once(']')?;
        if !extras.split(',').all(pypi_identifier) {
            return None;
        }
        rest = after;
    }
    if !rest.is_empty() && !rest.split(',').all(pypi_clause) {
        return None;
    }
    Some(name)
}

/// One version clause: an operator, then a version (`1.0`, `2025.*`, `1.0rc1+local`).
fn pypi_clause(clause: &str) -> bool {
    let Some(version) = ["===", "==", "!=", "~=", ">=", "<=", ">", "<"]
        .iter()
        .find_map(|operator| clause.strip_prefix(operator))
    else {
        return false;
    };
    version
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && version.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'*' | b'+' | b'!' | b'_' | b'-')
        })
}

/// `bin` must name a file in the package's executable directory.
fn check_bin(bin: &str) -> Result<&str, InstallError> {
    let plain = !bin.is_empty()
        && bin != "."
        && bin != ".."
        && !bin.starts_with('-')
        && bin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    plain
        .then_some(bin)
        .ok_or_else(|| InstallError::Bin(bin.to_owned()))
}

/// The commands that install `package` into `root` and the executable they leave.
fn plan(root: &Path, package: &Package, bin: &str) -> (Vec<Vec<String>>, PathBuf) {
    let path = |p: &Path| p.display().to_string();
    match package.source {
        Source::Npm => (
            vec![vec![
                "npm".into(),
                "install".into(),
                "--no-fund".into(),
                "--no-audit".into(),
                "--prefix".into(),
                path(root),
                "--".into(),
                package.spec.clone(),
            ]],
            root.join("node_modules/.bin").join(bin),
        ),
        Source::Pypi => {
            let venv = root.join("venv");
            (
                vec![
                    vec!["python3".into(), "-m".into(), "venv".into(), path(&venv)],
                    vec![
                        path(&venv.join("bin/pip")),
                        "install".into(),
                        "--quiet".into(),
                        "--".into(),
                        package.spec.clone(),
                    ],
                ],
                venv.join("bin").join(bin),
            )
        }
    }
}

/// Creates `dir` and returns its canonical path.
fn create_canonical(dir: &Path) -> Result<PathBuf, InstallError> {
    let failed = |source| InstallError::Directory {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    dir.canonicalize().map_err(failed)
}

/// Installs `package` as server `name` under `state_dir/packages/NAME`; returns the
/// executable to run. Without a `state_dir` nothing is installed: a shared fallback such
/// as `/tmp/switchboard` could be prepared by another local user.
pub(crate) async fn install(
    state_dir: Option<&Path>,
    name: &str,
    package: &str,
    bin: Option<&str>,
) -> Result<PathBuf, InstallError> {
    // Every check on what the agent supplied comes before the first file system action.
    let name = ServerName::new(name)?;
    let package = Package::parse(package)?;
    let bin = match bin {
        Some(bin) => check_bin(bin)?,
        None => check_bin(&package.default_bin)?,
    };
    let state_dir = state_dir.ok_or(InstallError::NoStateDir)?;
    let packages = create_canonical(&state_dir.join("packages"))?;
    let root = create_canonical(&packages.join(name.as_str()))?;
    if root.parent() != Some(packages.as_path()) {
        return Err(InstallError::Outside(root));
    }
    let (commands, executable) = plan(&root, &package, bin);
    for command in &commands {
        run(command).await.map_err(InstallError::Installer)?;
    }
    match executable.canonicalize() {
        Ok(resolved) if resolved.starts_with(&root) => Ok(executable),
        Ok(resolved) => Err(InstallError::Outside(resolved)),
        Err(_) => Err(InstallError::NoExecutable(executable)),
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let Some((program, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("`{}` took longer than {INSTALL_TIMEOUT:?}", args.join(" ")))?
        .map_err(|e| format!("`{program}` could not run: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    Err(format!(
        "`{}` failed ({}): {tail}",
        args.join(" "),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registry_names_and_versions() {
        for (text, bin) in [
            (
                "npm:@modelcontextprotocol/server-everything@2.0.0",
                "server-everything",
            ),
            ("npm:left-pad", "left-pad"),
            ("npm:x@^1.2.0", "x"),
            ("npm:@scope/tool@latest", "tool"),
            ("pypi:mcp-server-time", "mcp-server-time"),
            ("pypi:mcp-server-time==2025.1", "mcp-server-time"),
            ("pypi:mcp[cli]>=1.0,<2", "mcp"),
            ("pypi:pkg~=1.4.2", "pkg"),
        ] {
            let package = Package::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(package.default_bin, bin, "{text}");
        }
    }

    #[test]
    fn rejects_options_paths_urls_and_junk_in_package_specs() {
        for text in [
            "pypi:--version",
            "npm:--version",
            "npm:-g",
            "pypi:-e",
            "pypi:-r/etc/passwd",
            "pypi:--index-url=http://evil",
            "npm:--prefix=/",
            "npm:../../x",
            "npm:./local",
            "npm:/tmp/x",
            "npm:file:../x",
            "npm:git+https://example.com/x.git",
            "npm:https://example.com/x.tgz",
            "npm:github:user/repo",
            "npm:@scope/../x",
            "npm:@/x",
            "npm:@scope/",
            "npm:x@--y",
            "npm:x@",
            "npm:.hidden",
            "npm:x y",
            "pypi:https://example.com/x.whl",
            "pypi:./local",
            "pypi:/abs/path",
            "pypi:x; rm -rf /",
            "pypi:x y",
            "pypi:x==--y",
            "pypi:x[--a]",
            "pypi:x @ https://example.com/x.whl",
            "pypi:x==1.0;python_version<'3'",
            "pypi:-x",
            "pypi:",
            "npm:",
            "other:x",
            "x",
            "npm:x\n--y",
            "npm:x\0",
        ] {
            assert!(
                matches!(Package::parse(text), Err(InstallError::Package(_))),
                "{text:?} accepted"
            );
        }
        assert!(Package::parse(&format!("npm:{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn rejects_bins_that_are_not_file_names() {
        for bin in ["../x", "/bin/sh", "a/b", "..", ".", "-x", "", "a b"] {
            assert!(check_bin(bin).is_err(), "{bin:?} accepted");
        }
        assert!(check_bin("mcp-server-time").is_ok());
    }

    #[test]
    fn specs_follow_an_end_of_options_marker() {
        let root = Path::new("/state/packages/x");
        for text in ["npm:left-pad", "pypi:mcp-server-time"] {
            let package = Package::parse(text).unwrap();
            let (commands, executable) = plan(root, &package, &package.default_bin);
            let install = commands.last().unwrap();
            assert_eq!(install[install.len() - 2], "--", "{install:?}");
            assert_eq!(install[install.len() - 1], package.spec);
            assert!(executable.starts_with(root));
        }
    }

    #[tokio::test]
    async fn refuses_before_touching_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        for (name, package, bin) in [
            ("../../escape", "npm:left-pad", None),
            ("..", "npm:left-pad", None),
            ("a/b", "npm:left-pad", None),
            ("/abs", "npm:left-pad", None),
            ("", "npm:left-pad", None),
            ("x", "pypi:--version", None),
            ("x", "npm:--version", None),
            ("x", "npm:left-pad", Some("../../../bin/sh")),
        ] {
            let refused = install(Some(&state), name, package, bin).await;
            assert!(refused.is_err(), "{name} {package} accepted");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "created {left:?}");
    }

    #[tokio::test]
    async fn nothing_is_installed_without_a_state_dir() {
        let refused = install(None, "x", "npm:left-pad", None).await;
        assert!(
            matches!(refused, Err(InstallError::NoStateDir)),
            "{refused:?}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlinked_install_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(state.join("packages")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("packages/x")).unwrap();
        let refused = install(Some(&state), "x", "npm:left-pad", None).await;
        assert!(
            matches!(refused, Err(InstallError::Outside(_))),
            "{refused:?}"
        );
    }
}
