//! Compiles an OCI `LinuxSeccomp` into BPF with seccompiler (in the parent) and loads it in
//! the child with a raw seccomp(2) call that does not allocate.
//!
//! seccompiler builds one filter per (match action, mismatch action) pair, while an OCI
//! profile can give each rule its own action. We therefore install a small stack of filters:
//!
//! 1. the base filter: every syscall named by a rule whose action differs from the default
//!    returns ALLOW (under that rule's argument conditions); everything else returns the
//!    default action;
//! 2. one filter per other action A (ERRNO(ENOSYS), KILL, LOG, ...): the rules with action A
//!    return A, everything else returns ALLOW.
//!
//! The kernel runs every filter and keeps the most restrictive answer (and, between two
//! answers of the same kind, the one of the filter installed last), so a syscall gets the
//! action of the rule that names it and the default action otherwise, as with libseccomp.
//! Only the native architecture is filtered: seccompiler kills a process that makes a
//! syscall with another audit architecture (32-bit compat calls), where Docker would filter
//! them with the 32-bit table.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use sha2::{Digest, Sha256};

use super::syscalls;

/// Bumped whenever the compiled form changes, so old cache files are not reused.
const CACHE_FORMAT: &str = "mycontainer-seccomp-v1";

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filters are not supported on architecture {0}")]
    UnsupportedArch(&'static str),
    #[error("seccomp action {0} is not supported: use ERRNO, KILL, TRAP, TRACE, LOG or ALLOW")]
    UnsupportedAction(LinuxSeccompAction),
    #[error(
        "seccomp rule for {syscall:?} uses argument index {index}: syscalls have arguments 0 to 5"
    )]
    BadArgIndex { syscall: String, index: usize },
    #[error("seccomp rule for {syscall:?} cannot be compiled: {reason}")]
    Rule { syscall: String, reason: String },
    #[error("seccomp filter cannot be compiled: {0}")]
    Compile(String),
}

/// The compiled filters, in installation order, plus the seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSeccomp {
    programs: Vec<BpfProgram>,
    /// seccomp(2) flags (the targets, x86_64 and aarch64, have a 64-bit `unsigned long`).
    flags: u64,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

impl CompiledSeccomp {
    /// Number of filters that will be stacked.
    #[cfg(test)]
    pub fn filter_count(&self) -> usize {
        self.programs.len()
    }

    /// Total BPF instructions over all filters.
    pub fn instruction_count(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }

    /// Installs the filters in the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
    /// Async-signal-safe: only raw syscalls on memory prepared before fork.
    pub fn load(&self) -> Result<(), Errno> {
        for program in &self.programs {
            let prog = SockFprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr(),
            };
            // SAFETY: prog points at a live BPF program of `len` instructions laid out as
            // the kernel's struct sock_filter (seccompiler's type is repr(C) with the same
            // fields); the kernel copies it before returning.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    self.flags,
                    &prog as *const SockFprog,
                )
            };
            if rc != 0 {
                return Err(Errno::last());
            }
        }
        Ok(())
    }
}

fn native_arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::UnsupportedArch(std::env::consts::ARCH))
}

fn action_of(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    default_errno: u32,
) -> Result<SeccompAction, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(errno_ret.unwrap_or(default_errno))
        }
        // libseccomp's SCMP_ACT_KILL is "kill the thread".
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => {
            SeccompAction::Trace(errno_ret.unwrap_or(default_errno))
        }
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        other @ LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction(other))
        }
    })
}

/// One rule's argument conditions; `None` means "always matches".
fn conditions_of(syscall: &LinuxSyscall, name: &str) -> Result<Option<SeccompRule>, SeccompError> {
    let Some(args) = syscall.args().as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let mut conditions = Vec::with_capacity(args.len());
    for arg in args {
        let index = u8::try_from(arg.index())
            .ok()
            .filter(|i| *i <= 5)
            .ok_or_else(|| SeccompError::BadArgIndex {
                syscall: name.to_string(),
                index: arg.index(),
            })?;
        // libseccomp compares whole 64-bit registers; so do we.
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            // OCI: value is the mask, valueTwo the datum: (arg & value) == valueTwo.
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        let condition =
            SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(|e| {
                SeccompError::Rule {
                    syscall: name.to_string(),
                    reason: e.to_string(),
                }
            })?;
        conditions.push(condition);
    }
    SeccompRule::new(conditions)
        .map(Some)
        .map_err(|e| SeccompError::Rule {
            syscall: name.to_string(),
            reason: e.to_string(),
        })
}

/// Rules of one filter: syscall number -> conditional rules (empty = unconditional).
#[derive(Default)]
struct RuleSet(BTreeMap<i64, Option<Vec<SeccompRule>>>);

impl RuleSet {
    fn add(&mut self, nr: i64, rule: Option<SeccompRule>) {
        let entry = self.0.entry(nr).or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), rule) {
            // An unconditional rule swallows every conditional one.
            (_, None) => *entry = None,
            (Some(rules), Some(rule)) => rules.push(rule),
            (None, Some(_)) => {}
        }
    }

    fn into_filter(
        self,
        mismatch: SeccompAction,
        matched: SeccompAction,
        arch: TargetArch,
    ) -> Result<BpfProgram, SeccompError> {
        let rules = self
            .0
            .into_iter()
            .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(rules, mismatch, matched, arch)
            .map_err(|e| SeccompError::Compile(e.to_string()))?;
        BpfProgram::try_from(filter).map_err(|e| SeccompError::Compile(e.to_string()))
    }
}

fn flags_of(seccomp: &LinuxSeccomp) -> u64 {
    let mut flags = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // The child is single-threaded, and there is no notify listener to wait on.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync
            | LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    flags
}

/// Compiles `seccomp` for the native architecture. Syscall names this architecture does
/// not have are skipped, like libseccomp does.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let arch = native_arch()?;
    let default_errno = seccomp.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action_of(seccomp.default_action(), None, default_errno)?;
    let numbers: HashMap<&str, i64> = syscalls::SYSCALLS.iter().copied().collect();

    let mut base = RuleSet::default();
    let mut by_action: Vec<(SeccompAction, RuleSet)> = Vec::new();
    for syscall in seccomp.syscalls().iter().flatten() {
        let errno = syscall.errno_ret().unwrap_or(libc::EPERM as u32);
        let action = action_of(syscall.action(), Some(errno), default_errno)?;
        if action == default {
            continue;
        }
        for name in syscall.names() {
            let Some(&nr) = numbers.get(name.as_str()) else {
                continue;
            };
            let rule = conditions_of(syscall, name)?;
            base.add(nr, rule.clone());
            if action != SeccompAction::Allow {
                let slot = match by_action.iter().position(|(a, _)| *a == action) {
                    Some(slot) => slot,
                    None => {
                        by_action.push((action.clone(), RuleSet::default()));
                        by_action.len() - 1
                    }
                };
                by_action[slot].1.add(nr, rule);
            }
        }
    }

    let mut programs = Vec::with_capacity(1 + by_action.len());
    if default != SeccompAction::Allow {
        programs.push(base.into_filter(default, SeccompAction::Allow, arch)?);
    }
    for (action, set) in by_action {
        programs.push(set.into_filter(SeccompAction::Allow, action, arch)?);
    }
    if programs.is_empty() {
        // Default ALLOW and no rule: still install a filter, so `Seccomp: 2` tells the truth.
        programs.push(RuleSet::default().into_filter(
            SeccompAction::Allow,
            SeccompAction::KillProcess,
            arch,
        )?);
    }
    Ok(CompiledSeccomp {
        programs,
        flags: flags_of(seccomp),
    })
}

/// The cache key: sha256 over the format version, the architecture, the syscall table
/// (a binary that knows more syscall names compiles the same profile differently) and
/// the profile JSON.
pub fn cache_key(seccomp: &LinuxSeccomp) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CACHE_FORMAT.as_bytes());
    hasher.update([0]);
    hasher.update(std::env::consts::ARCH.as_bytes());
    hasher.update([0]);
    hasher.update(syscall_table_digest());
    // Serialising plain structs and vectors is deterministic.
    hasher.update(serde_json::to_vec(seccomp).unwrap_or_default());
    hex::encode(hasher.finalize())
}

fn syscall_table_digest() -> &'static [u8; 32] {
    static DIGEST: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    DIGEST.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, nr) in syscalls::SYSCALLS {
            hasher.update(name.as_bytes());
            hasher.update(nr.to_le_bytes());
        }
        hasher.finalize().into()
    })
}

fn cache_path(cache_dir: &Path, seccomp: &LinuxSeccomp) -> PathBuf {
    cache_dir.join(format!("seccomp-{}.bpf", cache_key(seccomp)))
}

/// Cache file layout (native endianness, it never leaves the machine):
/// u64 flags, u32 filter count, then per filter u32 instruction count and 8 bytes per
/// instruction (u16 code, u8 jt, u8 jf, u32 k).
fn encode(compiled: &CompiledSeccomp) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + compiled.instruction_count() * 8);
    out.extend_from_slice(&compiled.flags.to_ne_bytes());
    out.extend_from_slice(&(compiled.programs.len() as u32).to_ne_bytes());
    for program in &compiled.programs {
        out.extend_from_slice(&(program.len() as u32).to_ne_bytes());
        for ins in program {
            out.extend_from_slice(&ins.code.to_ne_bytes());
            out.push(ins.jt);
            out.push(ins.jf);
            out.extend_from_slice(&ins.k.to_ne_bytes());
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Option<CompiledSeccomp> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let flags = u64::from_ne_bytes(take(8)?.try_into().ok()?);
    let count = u32::from_ne_bytes(take(4)?.try_into().ok()?) as usize;
    let mut programs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = u32::from_ne_bytes(take(4)?.try_into().ok()?) as usize;
        // The kernel takes at most 4096 instructions per filter.
        if len == 0 || len > 4096 {
            return None;
        }
        let raw = take(len * 8)?;
        let program = raw
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        programs.push(program);
    }
    if !rest.is_empty() || programs.is_empty() {
        return None;
    }
    Some(CompiledSeccomp { programs, flags })
}

/// Like [`compile`], but reuses `<cache_dir>/seccomp-<sha256>.bpf` when present and writes
/// it (temp file + fsync + rename) when not. Cache trouble never fails a run: the profile
/// is then compiled in memory.
pub fn compile_cached(
    seccomp: &LinuxSeccomp,
    cache_dir: &Path,
) -> Result<CompiledSeccomp, SeccompError> {
    let path = cache_path(cache_dir, seccomp);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Some(compiled) = decode(&bytes) {
            return Ok(compiled);
        }
    }
    let compiled = compile(seccomp)?;
    // Best effort: a read-only or full disk only costs the next run a compile.
    let _ = write_atomically(&path, &encode(&compiled));
    Ok(compiled)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("seccomp");
    // Unique per process and call, so concurrent runs never share a temp file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(action)
            .build()
            .unwrap()
    }

    #[test]
    fn allowlist_with_an_errno_override_builds_two_filters() {
        let mut enosys = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        enosys.set_errno_ret(Some(38));
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![
                rule(
                    &["read", "write", "no_such_syscall"],
                    LinuxSeccompAction::ScmpActAllow,
                ),
                enosys,
            ])
            .build()
            .unwrap();
        let compiled = compile(&profile).unwrap();
        assert_eq!(compiled.filter_count(), 2);
        // The last instruction of the base filter is its default: ERRNO(EPERM).
        let base = &compiled.programs[0];
        assert_eq!(
            base.last().unwrap().k,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
        let errno = &compiled.programs[1];
        assert!(errno
            .iter()
            .any(|i| i.k == libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }

    #[test]
    fn bad_argument_index_is_reported() {
        let mut bad = rule(&["personality"], LinuxSeccompAction::ScmpActAllow);
        bad.set_args(Some(vec![LinuxSeccompArgBuilder::default()
            .index(7usize)
            .value(0u64)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()
            .unwrap()]));
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![bad])
            .build()
            .unwrap();
        let err = compile(&profile).unwrap_err().to_string();
        assert!(err.contains("personality") && err.contains('7'), "{err}");
    }

    #[test]
    fn notify_is_rejected() {
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule(&["mount"], LinuxSeccompAction::ScmpActNotify)])
            .build()
            .unwrap();
        assert!(compile(&profile).is_err());
    }

    #[test]
    fn cache_round_trips_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut enosys = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        enosys.set_errno_ret(Some(38));
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![
                rule(
                    &["read", "write", "exit_group"],
                    LinuxSeccompAction::ScmpActAllow,
                ),
                enosys,
            ])
            .build()
            .unwrap();
        let fresh = compile(&profile).unwrap();
        let first = compile_cached(&profile, dir.path()).unwrap();
        assert_eq!(first, fresh);
        let path = cache_path(dir.path(), &profile);
        assert!(path.is_file());
        assert_eq!(decode(&std::fs::read(&path).unwrap()).unwrap(), fresh);
        // A truncated cache file is ignored and rewritten.
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(compile_cached(&profile, dir.path()).unwrap(), fresh);
        assert_eq!(decode(&std::fs::read(&path).unwrap()).unwrap(), fresh);
        // Exactly one file, no temp leftovers.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
