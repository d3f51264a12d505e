//! The journal: results that could not be delivered yet, kept in a JSON-lines file so that a
//! restart delivers them. A result is written when its first delivery attempt fails (so even
//! a SIGKILL during an outage loses nothing that was journalled) and whenever the runtime
//! stops with results still undelivered; an entry is removed once its server accepts it.
//!
//! Several processes may share one file: every access holds an exclusive lock on
//! `<file>.lock`. A line that cannot be parsed is reported, moved to `<file>.corrupt`, and
//! skipped.
//!
//! ```
//! use conductor_worker::journal::{Journal, JournalEntry};
//! use conductor_worker::TaskResult;
//! let dir = std::env::temp_dir().join(format!("journal-doc-{}", std::process::id()));
//! let journal = Journal::open(dir.join("journal.jsonl")).unwrap();
//! let entry = JournalEntry::new("http://localhost:8080/api", TaskResult::failed("t1", "w1", "boom"));
//! journal.append(&[entry.clone()]).unwrap();
//! assert_eq!(journal.load().unwrap(), vec![entry.clone()]);
//! journal.remove(&[entry.id.clone()]).unwrap();
//! assert!(journal.load().unwrap().is_empty());
//! # std::fs::remove_dir_all(dir).ok();
//! ```

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::api::{TaskResult, now_millis};
use crate::error::{Error, Result};

/// One undelivered result and the server it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Unique across processes.
    pub id: String,
    /// The base URL of the server the task came from.
    pub server: String,
    /// The result.
    pub result: TaskResult,
    /// When it was journalled (ms since the epoch).
    pub journalled_at: i64,
}

impl JournalEntry {
    /// An entry for `result`, to be delivered to `server`.
    pub fn new(server: impl Into<String>, result: TaskResult) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            now_millis(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            id,
            server: server.into(),
            result,
            journalled_at: now_millis(),
        }
    }
}

/// A journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Journal {
    /// Opens (creating its directory if needed) the journal at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let journal = Self { path: path.into() };
        if let Some(dir) = journal.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| journal.error("cannot create its directory", e))?;
        }
        // Fail at start, not at the first outage, if the location is not writable.
        journal.lock()?;
        Ok(journal)
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Journal {
            path: self.path.display().to_string(),
            message: format!("{what}: {e}"),
        }
    }

    fn lock(&self) -> Result<Lock> {
        let lock_path = self.path.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.error("cannot open the lock file", e))?;
        file.lock().map_err(|e| self.error("cannot lock", e))?;
        Ok(Lock(file))
    }

    /// Appends entries and syncs them to disk.
    pub fn append(&self, entries: &[JournalEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(entries.len() * 256);
        for entry in entries {
            serde_json::to_writer(&mut lines, entry).map_err(|e| self.error("cannot encode", e))?;
            lines.push(b'\n');
        }
        let _lock = self.lock()?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.error("cannot open", e))?;
        file.write_all(&lines)
            .map_err(|e| self.error("cannot write", e))?;
        file.sync_data().map_err(|e| self.error("cannot sync", e))
    }

    /// Every entry. Corrupt lines are moved to `<file>.corrupt` and reported.
    pub fn load(&self) -> Result<Vec<JournalEntry>> {
        let _lock = self.lock()?;
        let (entries, corrupt) = self.read_unlocked()?;
        if !corrupt.is_empty() {
            for (line_no, line, error) in &corrupt {
                let preview: String = line.chars().take(80).collect();
                tracing::error!(journal = %self.path.display(), line_no, %error, %preview,
                    "corrupt journal entry skipped and moved to the .corrupt file");
            }
            let mut sidecar = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path.with_extension("corrupt"))
                .map_err(|e| self.error("cannot open the .corrupt file", e))?;
            for (_, line, _) in &corrupt {
                writeln!(sidecar, "{line}")
                    .map_err(|e| self.error("cannot write the .corrupt file", e))?;
            }
            self.rewrite_unlocked(&entries)?;
        }
        Ok(entries)
    }

    /// Removes the entries with these ids (delivered ones).
    pub fn remove(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let _lock = self.lock()?;
        let (entries, corrupt) = self.read_unlocked()?;
        if corrupt.is_empty() && !entries.iter().any(|e| ids.contains(e.id.as_str())) {
            return Ok(());
        }
        // Corrupt lines stay in place here; `load` is the one place that reports and moves them.
        let keep: Vec<JournalEntry> = entries
            .into_iter()
            .filter(|e| !ids.contains(e.id.as_str()))
            .collect();
        let mut text = Vec::new();
        for entry in &keep {
            serde_json::to_writer(&mut text, entry).map_err(|e| self.error("cannot encode", e))?;
            text.push(b'\n');
        }
        for (_, line, _) in &corrupt {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        self.replace_unlocked(&text)
    }

    #[allow(clippy::type_complexity)]
    fn read_unlocked(&self) -> Result<(Vec<JournalEntry>, Vec<(usize, String, String)>)> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(self.error("cannot open", e)),
        };
        let mut entries = Vec::new();
        let mut corrupt = Vec::new();
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let bytes = line.map_err(|e| self.error("cannot read", e))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<JournalEntry>(&bytes) {
                Ok(entry) => entries.push(entry),
                Err(e) => corrupt.push((
                    i + 1,
                    String::from_utf8_lossy(&bytes).into_owned(),
                    e.to_string(),
                )),
            }
        }
        Ok((entries, corrupt))
    }

    fn rewrite_unlocked(&self, entries: &[JournalEntry]) -> Result<()> {
        let mut text = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut text, entry).map_err(|e| self.error("cannot encode", e))?;
            text.push(b'\n');
        }
        self.replace_unlocked(&text)
    }

    /// Writes a temporary file and renames it over the journal, so a crash mid-write leaves
    /// either the old or the new journal, never half of one.
    fn replace_unlocked(&self, text: &[u8]) -> Result<()> {
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut file =
            File::create(&tmp).map_err(|e| self.error("cannot create a temporary file", e))?;
        file.write_all(text)
            .map_err(|e| self.error("cannot write", e))?;
        file.sync_data().map_err(|e| self.error("cannot sync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.error("cannot replace", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_journal(name: &str) -> (Journal, PathBuf) {
        let dir = std::env::temp_dir().join(format!("cw-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Journal::open(dir.join("j.jsonl")).unwrap(), dir)
    }

    #[test]
    fn corrupt_lines_are_reported_moved_and_skipped() {
        let (journal, dir) = temp_journal("corrupt");
        let good = JournalEntry::new("http://a/api", TaskResult::failed("t1", "w1", "x"));
        journal.append(std::slice::from_ref(&good)).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap();
        f.write_all(b"{\"id\": \"half a line\n").unwrap();
        f.write_all(b"\xff\xfe not even utf-8\n").unwrap();
        drop(f);
        let good2 = JournalEntry::new("http://a/api", TaskResult::failed("t2", "w1", "y"));
        journal.append(std::slice::from_ref(&good2)).unwrap();

        assert_eq!(journal.load().unwrap(), vec![good.clone(), good2.clone()]);
        let corrupt = std::fs::read(journal.path().with_extension("corrupt")).unwrap();
        assert_eq!(corrupt.iter().filter(|&&b| b == b'\n').count(), 2);
        // Moved out: a second load reports nothing new.
        assert_eq!(journal.load().unwrap(), vec![good, good2]);
        let again = std::fs::read(journal.path().with_extension("corrupt")).unwrap();
        assert_eq!(corrupt, again);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn ids_are_unique_and_removal_keeps_the_rest() {
        let (journal, dir) = temp_journal("remove");
        let entries: Vec<_> = (0..100)
            .map(|i| {
                JournalEntry::new(
                    "http://a/api",
                    TaskResult::failed(&format!("t{i}"), "w", "x"),
                )
            })
            .collect();
        let ids: HashSet<_> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 100);
        journal.append(&entries).unwrap();
        let delivered: Vec<String> = entries.iter().step_by(2).map(|e| e.id.clone()).collect();
        journal.remove(&delivered).unwrap();
        let left = journal.load().unwrap();
        assert_eq!(left.len(), 50);
        assert!(left.iter().all(|e| !delivered.contains(&e.id)));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_unwritable_location_fails_at_open_with_the_path() {
        let err = Journal::open("/proc/no-such-dir/j.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/proc/no-such-dir/j.jsonl"), "{err}");
    }
}
