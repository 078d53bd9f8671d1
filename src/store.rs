//! Files in the state folder: atomic writes (temp file, fsync, rename) so a power cut never leaves
//! a half-written token list behind.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, fsync of
/// the folder. The file gets mode 0600 since state files hold hashes of credentials.
///
/// Run as root (an admin's `token create` on a service's state folder), the file is given to
/// the folder's owner: a root-owned `tokens.json` would lock the service out of its own tokens.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        give_to_folder_owner(&file, dir)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// When this process runs as root, makes `file` belong to the owner of `dir` (nothing otherwise:
/// only root may give files away).
#[cfg(unix)]
fn give_to_folder_owner(file: &fs::File, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let owner = fs::metadata(dir)?;
    if owner.uid() == 0 && owner.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

/// An exclusive lock on the state folder, held until dropped (the system lets go of it when the
/// process dies, SIGKILL included).
pub struct DirLock(#[allow(dead_code)] fs::File);

/// Takes the lock of the state folder `dir` (created if missing), waiting while another process
/// holds it. A read-modify-write of a state file holds it, so that two `token create` at once
/// never both read the old file and each write it back without the other's token.
pub fn lock_dir(dir: &Path) -> std::io::Result<DirLock> {
    ensure_dir(dir)?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(dir.join(".lock"))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        give_to_folder_owner(&file, dir)?;
        // SAFETY: flock on a descriptor owned here; it has no other preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(DirLock(file))
}

/// Creates the state folder (mode 0700) if it does not exist.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("mcpgw-store-{}", std::process::id()));
        let path = dir.join("x.json");
        write_atomic(&path, b"first version, long").expect("write 1");
        write_atomic(&path, b"second").expect("write 2");
        assert_eq!(fs::read(&path).expect("read"), b"second");
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn root_gives_state_files_to_the_folders_owner() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: files cannot be given away, nothing to check");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mcpgw-store-owner-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ensure_dir(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown the folder");
        let path = dir.join("tokens.json");
        write_atomic(&path, b"{}").expect("write");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert_eq!(meta.mode() & 0o777, 0o600);
        let _ = fs::remove_dir_all(&dir);
    }
}
