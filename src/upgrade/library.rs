//! Which unit libraries an upgrade may load. A unit runs as root inside the
//! switch (its ELF constructors run at `dlopen`, before any ABI check), so a
//! library is taken only from the unit directory (`[upgrade] library_dir`),
//! and only when both the directory and the file are owned by root and
//! writable by nobody else. Both are checked on their open file descriptors
//! (`fstat`), the file is opened with `O_NOFOLLOW`, and the loader opens the
//! checked descriptor itself (`/proc/self/fd/N`): no check-then-open race.
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// A unit library that passed the checks, held open until it is loaded.
#[derive(Debug)]
pub struct UnitFile {
    file: File,
    path: PathBuf,
}

impl UnitFile {
    /// Where the library is, as operators name it (records, logs, the API).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the loader opens: the checked file through its descriptor, so the
    /// file loaded is the file checked even if the name moves meanwhile.
    pub fn load_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// A stand-in for tests whose loaders load nothing: `path` is only a
    /// name, the descriptor is /dev/null's.
    #[cfg(test)]
    pub(crate) fn unchecked(path: impl Into<PathBuf>) -> std::io::Result<UnitFile> {
        Ok(UnitFile { file: File::open("/dev/null")?, path: path.into() })
    }
}

/// Why a library is refused: one sentence naming the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitFileRefused(pub String);

/// Opens the library `requested` names in `library_dir`: a file name there
/// (`basic-v2.so`), or the absolute path of a file directly in it. Anything
/// else is refused, naming the rule: `..`, a path outside the directory, a
/// symbolic link, not a regular file, not owned by root, writable by group or
/// others (the file or the directory).
pub fn open_unit_library(library_dir: &Path, requested: &str) -> Result<UnitFile, UnitFileRefused> {
    let name = file_name_in(library_dir, requested)?;
    let dir = open_unit_directory(library_dir)?;
    let path = library_dir.join(&name);
    let shown = path.display();
    // The name is opened under the directory's descriptor (as openat does):
    // a rename of the directory after its checks changes nothing.
    let under_dir = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(under_dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(format!("{shown} is a symbolic link; unit libraries load only from the file itself")),
            Some(libc::ENOENT) => refused(format!("{shown} does not exist")),
            _ => refused(format!("{shown} cannot be opened: {e}")),
        })?;
    let meta = file.metadata().map_err(|e| refused(format!("{shown} cannot be examined: {e}")))?;
    if !meta.is_file() {
        return Err(refused(format!("{shown} is not a regular file")));
    }
    only_root_writes(&format!("the unit library {shown}"), &meta)?;
    Ok(UnitFile { file, path })
}

/// The file name `requested` stands for in `library_dir`.
fn file_name_in(library_dir: &Path, requested: &str) -> Result<String, UnitFileRefused> {
    let dir = library_dir.display();
    if requested.trim().is_empty() {
        return Err(refused(format!("the library is empty; give the file name of a unit library in {dir}")));
    }
    if requested.contains('\0') {
        return Err(refused(format!("{requested:?} contains a NUL character")));
    }
    let path = Path::new(requested);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refused(format!("{requested} contains `..`; unit libraries load only from files directly in {dir}")));
    }
    if !requested.contains('/') {
        return Ok(requested.to_string());
    }
    if !path.is_absolute() {
        return Err(refused(format!(
            "{requested} is neither a file name in the unit directory {dir} nor an absolute path of a file in it"
        )));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(refused(format!("{requested} names no file")));
    };
    // The directory as configured, or as the client resolved it (`ctl upgrade` sends canonical paths).
    let canonical = std::fs::canonicalize(library_dir).ok();
    if parent != library_dir && Some(parent) != canonical.as_deref() {
        return Err(refused(format!("{requested} is outside the unit directory {dir}; unit libraries load only from there")));
    }
    Ok(name.to_string())
}

fn open_unit_directory(library_dir: &Path) -> Result<File, UnitFileRefused> {
    let dir = library_dir.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(library_dir)
        .map_err(|e| refused(format!("the unit directory {dir} cannot be opened: {e}")))?;
    let meta = file.metadata().map_err(|e| refused(format!("the unit directory {dir} cannot be examined: {e}")))?;
    only_root_writes(&format!("the unit directory {dir}"), &meta)?;
    Ok(file)
}

/// Owned by root and not writable by group or others: nobody but root can
/// change what is loaded.
fn only_root_writes(what: &str, meta: &std::fs::Metadata) -> Result<(), UnitFileRefused> {
    if meta.uid() != 0 {
        return Err(refused(format!("{what} is owned by uid {}, not root; unit libraries must be root's", meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refused(format!(
            "{what} is writable by group or others (mode {mode:04o}); unit libraries load only where root alone can write"
        )));
    }
    Ok(())
}

fn refused(problem: String) -> UnitFileRefused {
    UnitFileRefused(problem)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A unit directory (root, 0755) with `lib.so` (root, 0644) and, next to it, `outside/evil.so`.
    fn units() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("units");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755);
        std::fs::write(dir.join("lib.so"), b"\x7fELF").unwrap();
        set_mode(&dir.join("lib.so"), 0o644);
        std::fs::create_dir(top.path().join("outside")).unwrap();
        std::fs::write(top.path().join("outside/evil.so"), b"\x7fELF").unwrap();
        (top, dir)
    }

    fn problem(dir: &Path, requested: &str) -> String {
        open_unit_library(dir, requested).expect_err("expected a refusal").0
    }

    #[test]
    fn a_root_owned_library_in_the_unit_directory_opens_by_name_or_absolute_path() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership by root cannot be set up without root
        }
        let (_top, dir) = units();
        let by_name = open_unit_library(&dir, "lib.so").unwrap();
        assert_eq!(by_name.path(), dir.join("lib.so"));
        assert!(by_name.load_path().starts_with("/proc/self/fd/"));
        assert_eq!(std::fs::read(by_name.load_path()).unwrap(), b"\x7fELF", "the descriptor is the file's");
        let absolute = dir.join("lib.so");
        assert_eq!(open_unit_library(&dir, absolute.to_str().unwrap()).unwrap().path(), absolute);
        let with_slash = format!("{}/", dir.display());
        assert!(open_unit_library(Path::new(&with_slash), "lib.so").is_ok());
    }

    #[test]
    fn everything_else_is_refused_naming_the_rule() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (top, dir) = units();
        let d = dir.display();
        let outside = top.path().join("outside/evil.so");
        assert_eq!(problem(&dir, ""), format!("the library is empty; give the file name of a unit library in {d}"));
        assert_eq!(
            problem(&dir, "../outside/evil.so"),
            format!("../outside/evil.so contains `..`; unit libraries load only from files directly in {d}")
        );
        let dotted = format!("{d}/../outside/evil.so");
        assert!(problem(&dir, &dotted).contains("contains `..`"));
        assert_eq!(
            problem(&dir, outside.to_str().unwrap()),
            format!("{} is outside the unit directory {d}; unit libraries load only from there", outside.display())
        );
        assert!(problem(&dir, "sub/lib.so").contains("is neither a file name in the unit directory"));
        assert_eq!(problem(&dir, "none.so"), format!("{d}/none.so does not exist"));
        symlink(&outside, dir.join("link.so")).unwrap();
        assert_eq!(
            problem(&dir, "link.so"),
            format!("{d}/link.so is a symbolic link; unit libraries load only from the file itself")
        );
        std::fs::create_dir(dir.join("sub.so")).unwrap();
        assert_eq!(problem(&dir, "sub.so"), format!("{d}/sub.so is not a regular file"));

        set_mode(&dir.join("lib.so"), 0o666);
        assert_eq!(
            problem(&dir, "lib.so"),
            format!(
                "the unit library {d}/lib.so is writable by group or others (mode 0666); \
                 unit libraries load only where root alone can write"
            )
        );
        set_mode(&dir.join("lib.so"), 0o644);
        std::os::unix::fs::chown(dir.join("lib.so"), Some(65534), None).unwrap();
        assert_eq!(
            problem(&dir, "lib.so"),
            format!("the unit library {d}/lib.so is owned by uid 65534, not root; unit libraries must be root's")
        );
        std::os::unix::fs::chown(dir.join("lib.so"), Some(0), None).unwrap();
        assert!(open_unit_library(&dir, "lib.so").is_ok());

        set_mode(&dir, 0o777);
        assert!(problem(&dir, "lib.so").starts_with(&format!("the unit directory {d} is writable by group or others (mode 0777)")));
        set_mode(&dir, 0o1775);
        assert!(problem(&dir, "lib.so").contains("(mode 1775)"));
        set_mode(&dir, 0o755);
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        assert!(problem(&dir, "lib.so").starts_with(&format!("the unit directory {d} is owned by uid 65534, not root")));
        assert!(problem(&top.path().join("missing"), "lib.so").contains("cannot be opened"));
    }
}
