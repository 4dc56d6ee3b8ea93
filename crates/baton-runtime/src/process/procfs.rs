//! What `/proc` says about a process: alive or not, its start time (the identity that
//! survives pid reuse), and whether anything is left in a process group.

use std::fs;

/// The parts of `/proc/<pid>/stat` baton needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), ...
    pub state: char,
    /// Field 5.
    pub pgrp: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

// === impl Stat ===

impl Stat {
    /// Running (or at least not yet exited).
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// `None` if there is no such process.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Whether `pid` is the live process that started at `start_ticks` (not a reused pid).
pub(crate) fn is_same_live_process(pid: i32, start_ticks: u64) -> bool {
    stat(pid).is_some_and(|s| s.is_live() && s.start_ticks == start_ticks)
}

/// Whether any live (non-zombie) process is in process group `pgid`.
pub(crate) fn group_has_live_members(pgid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .any(|s| s.pgrp == pgid && s.is_live())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_ticks, 987654);
        assert!(s.is_live());
        assert!(parse_stat("1 (x) Z").is_none());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(s.is_live());
        assert!(is_same_live_process(me, s.start_ticks));
        assert!(!is_same_live_process(me, s.start_ticks + 1));
        assert!(group_has_live_members(s.pgrp));
    }
}
