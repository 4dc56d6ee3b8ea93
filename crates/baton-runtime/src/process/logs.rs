//! Instance log files: `<log_dir>/<app>/<instance>.log`, written by the child directly
//! (O_APPEND, no pipe through baton, so the instance survives baton's death), bounded by
//! copy-truncate rotation to a single older generation `<instance>.log.1`.
//!
//! Copy-truncate loses whatever the child writes between the copy and the truncate; in
//! exchange the child needs no cooperation, and O_APPEND makes its next write land at the
//! new end of the file instead of leaving a hole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes read per step when looking for the last lines from the end of a file.
const TAIL_CHUNK: u64 = 16 * 1024;

/// `<log_dir>/<app>/<instance>.log`.
pub(crate) fn path_for(log_dir: &Path, app: &str, instance: &str) -> PathBuf {
    log_dir.join(app).join(format!("{instance}.log"))
}

/// The older generation next to `path`.
pub(crate) fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Opens (creating it and its directory) the log file the child will write to.
pub(crate) fn open_for_child(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends one line written by baton itself (e.g. what is being started).
pub(crate) fn note(file: &mut File, line: &str) -> io::Result<()> {
    writeln!(file, "[baton] {line}")
}

/// If `path` is larger than `max_bytes`, copies it to `<path>.1` and truncates it.
pub(crate) fn rotate_if_needed(path: &Path, max_bytes: u64) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    fs::copy(path, rotated(path))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last `max_lines` lines of the instance's output across `<path>.1` and `<path>`,
/// oldest first.
pub(crate) fn tail(path: &Path, max_lines: usize) -> io::Result<Vec<String>> {
    let mut lines = tail_file(path, max_lines)?;
    if lines.len() < max_lines {
        let mut older = tail_file(&rotated(path), max_lines - lines.len())?;
        older.append(&mut lines);
        lines = older;
    }
    Ok(lines)
}

/// The last `max_lines` lines of one file, reading backwards from its end; a missing file
/// has no lines.
fn tail_file(path: &Path, max_lines: usize) -> io::Result<Vec<String>> {
    if max_lines == 0 {
        return Ok(Vec::new());
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut pos = file.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    // One newline more than lines wanted guarantees the first kept line is complete.
    while pos > 0 && count_newlines(&buf) <= max_lines {
        let step = TAIL_CHUNK.min(pos);
        pos -= step;
        file.seek(SeekFrom::Start(pos))?;
        let mut chunk = Vec::new();
        (&mut file).take(step).read_to_end(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(max_lines);
    Ok(all[skip..].iter().map(|l| l.to_string()).collect())
}

fn count_newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("baton-logs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tails_across_chunks_and_generations() {
        let dir = temp_dir("tail");
        let path = dir.join("i.log");
        let old: String = (0..5000).map(|i| format!("old {i}\n")).collect();
        fs::write(rotated(&path), old).unwrap();
        fs::write(&path, "new 0\nnew 1\npartial").unwrap();
        assert_eq!(tail(&path, 2).unwrap(), ["new 1", "partial"]);
        assert_eq!(
            tail(&path, 5).unwrap(),
            ["old 4998", "old 4999", "new 0", "new 1", "partial"]
        );
        let many = tail(&path, 4000).unwrap();
        assert_eq!(many.len(), 4000);
        assert_eq!(many[0], "old 1003");
        assert!(tail(&dir.join("missing.log"), 3).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_one_generation_and_empties_the_file() {
        let dir = temp_dir("rotate");
        let path = dir.join("i.log");
        let mut f = open_for_child(&path).unwrap();
        note(&mut f, "hello").unwrap();
        assert!(!rotate_if_needed(&path, 1024).unwrap());
        f.write_all(&[b'x'; 2000]).unwrap();
        assert!(rotate_if_needed(&path, 1024).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(fs::metadata(rotated(&path)).unwrap().len(), 2014);
        // The append-mode writer continues at the new end, not at its old offset.
        f.write_all(b"after\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"after\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
