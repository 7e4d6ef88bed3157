//! Compiles an OCI `LinuxSeccomp` into one classic-BPF filter (in the parent) and loads it
//! in the child with a raw seccomp(2) call that does not allocate.
//!
//! One program holds every action of the profile, laid out as a binary search over syscall
//! numbers (see [`compile`]): the kernel runs every installed filter on every syscall, so
//! one filter of about log2(rules) comparisons costs less to load and to run than a stack
//! of linear filters, one per action. Compiled programs are cached per profile
//! (`<root>/cache/seccomp-<sha256>.bpf`), so a run does not recompile.
//! Only the native architecture is filtered: a syscall with another audit architecture
//! (32-bit compat calls) kills the process, where Docker would filter it with the 32-bit
//! table.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use sha2::{Digest, Sha256};

use super::bpf::{self, Assembler, Label, SockFilter};
use super::syscalls;

/// Bumped whenever the compiled form changes, so old cache files are not reused.
const CACHE_FORMAT: &str = "mycontainer-seccomp-v2";

/// The kernel takes at most this many instructions per filter (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

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
    #[error("seccomp filter cannot be compiled: {0}")]
    Compile(String),
}

/// The compiled filter plus the seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSeccomp {
    program: Vec<SockFilter>,
    /// seccomp(2) flags (the targets, x86_64 and aarch64, have a 64-bit `unsigned long`).
    flags: u64,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const SockFilter,
}

impl CompiledSeccomp {
    /// BPF instructions in the filter.
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }

    /// Installs the filter in the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
    /// Async-signal-safe: one raw syscall on memory prepared before fork.
    pub fn load(&self) -> Result<(), Errno> {
        let prog = SockFprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr(),
        };
        // SAFETY: prog points at a live BPF program of `len` (at most 4096) instructions
        // laid out as the kernel's struct sock_filter (SockFilter is repr(C) with the same
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
        Ok(())
    }
}

/// `AUDIT_ARCH_*` of the architecture this binary runs on.
fn native_audit_arch() -> Result<u32, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(0xc000_003e),
        "aarch64" => Ok(0xc000_00b7),
        other => Err(SeccompError::UnsupportedArch(other)),
    }
}

/// The filter's return value for an action.
fn action_of(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    default_errno: u32,
) -> Result<u32, SeccompError> {
    const DATA: u32 = libc::SECCOMP_RET_DATA;
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => {
            libc::SECCOMP_RET_ERRNO | (errno_ret.unwrap_or(default_errno) & DATA)
        }
        // libseccomp's SCMP_ACT_KILL is "kill the thread".
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActTrace => {
            libc::SECCOMP_RET_TRACE | (errno_ret.unwrap_or(default_errno) & DATA)
        }
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        other @ LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction(other))
        }
    })
}

/// How restrictive a return value is, as the kernel ranks stacked filters' answers:
/// the smaller (as a signed action) wins, so KILL_PROCESS beats KILL_THREAD beats TRAP
/// beats ERRNO beats TRACE beats LOG beats ALLOW.
fn severity(ret: u32) -> i32 {
    (ret & libc::SECCOMP_RET_ACTION_FULL) as i32
}

/// A comparison of one 64-bit syscall argument, as libseccomp makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// (arg & mask) == value
    MaskedEq(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Condition {
    index: u8,
    op: Op,
    value: u64,
}

/// One rule's argument conditions (all must hold); empty means "always matches".
fn conditions_of(syscall: &LinuxSyscall, name: &str) -> Result<Vec<Condition>, SeccompError> {
    let mut conditions = Vec::new();
    for arg in syscall.args().iter().flatten() {
        let index = u8::try_from(arg.index())
            .ok()
            .filter(|i| *i <= 5)
            .ok_or_else(|| SeccompError::BadArgIndex {
                syscall: name.to_string(),
                index: arg.index(),
            })?;
        // libseccomp compares whole 64-bit registers; so do we.
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value()),
            // OCI: value is the mask, valueTwo the datum: (arg & value) == valueTwo.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (Op::MaskedEq(arg.value()), arg.value_two().unwrap_or(0))
            }
        };
        conditions.push(Condition { index, op, value });
    }
    Ok(conditions)
}

/// Offsets of the low and high 32-bit halves of argument `index` in `struct seccomp_data`.
fn arg_offsets(index: u8) -> (u32, u32) {
    let base = 16 + 8 * u32::from(index);
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// Emits (back to front) the test of one condition: on to `pass` when it holds, to
/// `fail` when not. Returns its first instruction.
fn emit_condition(asm: &mut Assembler, c: Condition, pass: Label, fail: Label) -> Label {
    let (lo_off, hi_off) = arg_offsets(c.index);
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    match c.op {
        Op::Eq => {
            asm.jump_if(bpf::JMP_JEQ_K, lo, pass, fail);
            let lo_load = asm.load(lo_off);
            asm.jump_if(bpf::JMP_JEQ_K, hi, lo_load, fail);
            asm.load(hi_off)
        }
        Op::Ne => emit_condition(asm, Condition { op: Op::Eq, ..c }, fail, pass),
        Op::MaskedEq(mask) => {
            asm.jump_if(bpf::JMP_JEQ_K, lo, pass, fail);
            asm.and(mask as u32);
            let lo_load = asm.load(lo_off);
            asm.jump_if(bpf::JMP_JEQ_K, hi, lo_load, fail);
            asm.and((mask >> 32) as u32);
            asm.load(hi_off)
        }
        Op::Gt | Op::Ge => {
            let lo_op = if c.op == Op::Gt {
                bpf::JMP_JGT_K
            } else {
                bpf::JMP_JGE_K
            };
            asm.jump_if(lo_op, lo, pass, fail);
            let lo_load = asm.load(lo_off);
            let hi_equal = asm.jump_if(bpf::JMP_JEQ_K, hi, lo_load, fail);
            asm.jump_if(bpf::JMP_JGT_K, hi, pass, hi_equal);
            asm.load(hi_off)
        }
        // a < v is !(a >= v); a <= v is !(a > v).
        Op::Lt => emit_condition(asm, Condition { op: Op::Ge, ..c }, fail, pass),
        Op::Le => emit_condition(asm, Condition { op: Op::Gt, ..c }, fail, pass),
    }
}

/// One rule of a syscall: when all `conditions` hold, return `ret`.
#[derive(Debug, Clone)]
struct Rule {
    ret: u32,
    conditions: Vec<Condition>,
}

/// Emits (back to front) the rules of one syscall, most restrictive first, falling
/// through to `default`. Returns the first instruction.
fn emit_rules(asm: &mut Assembler, rules: &[Rule], default: Label) -> Label {
    // Rules after an unconditional one are never reached.
    let live = match rules.iter().position(|r| r.conditions.is_empty()) {
        Some(last) => &rules[..=last],
        None => rules,
    };
    let mut next = default;
    for rule in live.iter().rev() {
        let mut pass = asm.ret(rule.ret);
        for condition in rule.conditions.iter().rev() {
            pass = emit_condition(asm, *condition, pass, next);
        }
        next = pass;
    }
    next
}

/// Emits (back to front) a binary search over the sorted syscall numbers `numbers`
/// (a in A), each leaf testing its number and running its rules. Returns the root.
fn emit_tree(
    asm: &mut Assembler,
    numbers: &[u32],
    rules: &HashMap<u32, Vec<Rule>>,
    default: Label,
) -> Label {
    match numbers {
        [] => default,
        [nr] => {
            let body = emit_rules(asm, &rules[nr], default);
            asm.jump_if(bpf::JMP_JEQ_K, *nr, body, default)
        }
        _ => {
            let mid = numbers.len() / 2;
            // Back to front: the upper half comes last in the program.
            let upper = emit_tree(asm, &numbers[mid..], rules, default);
            let lower = emit_tree(asm, &numbers[..mid], rules, default);
            asm.jump_if(bpf::JMP_JGE_K, numbers[mid], upper, lower)
        }
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

/// Compiles `seccomp` for the native architecture into one filter program. Syscall names
/// this architecture does not have are skipped, like libseccomp does.
///
/// Layout (libseccomp's binary-tree layout is the model): check the audit architecture
/// (another one, i.e. 32-bit compat calls, kills the process), load the syscall number,
/// then a binary search over the numbers that have rules; each leaf tests its number and
/// runs that syscall's rules, and everything else returns the default action. A syscall
/// several rules name gets the most restrictive action among the rules whose argument
/// conditions hold (as the kernel ranks answers), and the default action when none holds;
/// between two rules of the same kind of action (ERRNO with different errnos), the later
/// rule in the profile wins.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let arch = native_audit_arch()?;
    let default_errno = seccomp.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action_of(seccomp.default_action(), None, default_errno)?;
    let numbers: HashMap<&str, i64> = syscalls::SYSCALLS.iter().copied().collect();

    // Per syscall number: (position of the rule in the profile, rule).
    let mut by_nr: HashMap<u32, Vec<(usize, Rule)>> = HashMap::new();
    for (position, syscall) in seccomp.syscalls().iter().flatten().enumerate() {
        let errno = syscall.errno_ret().unwrap_or(libc::EPERM as u32);
        let ret = action_of(syscall.action(), Some(errno), default_errno)?;
        if ret == default {
            continue;
        }
        for name in syscall.names() {
            let Some(&nr) = numbers.get(name.as_str()) else {
                continue;
            };
            let conditions = conditions_of(syscall, name)?;
            by_nr
                .entry(nr as u32)
                .or_default()
                .push((position, Rule { ret, conditions }));
        }
    }
    let rules: HashMap<u32, Vec<Rule>> = by_nr
        .into_iter()
        .map(|(nr, mut rules)| {
            // Most restrictive first; within one kind of action the later rule first.
            rules
                .sort_by_key(|(position, rule)| (severity(rule.ret), std::cmp::Reverse(*position)));
            (nr, rules.into_iter().map(|(_, rule)| rule).collect())
        })
        .collect();
    let mut sorted: Vec<u32> = rules.keys().copied().collect();
    sorted.sort_unstable();

    let mut asm = Assembler::default();
    let default_ret = asm.ret(default);
    let kill = asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    let tree = if sorted.is_empty() {
        asm.ret(default)
    } else {
        emit_tree(&mut asm, &sorted, &rules, default_ret)
    };
    let _ = tree; // the root is the last instruction emitted, right after the load below
    let load_nr = asm.load(0);
    asm.jump_if(bpf::JMP_JEQ_K, arch, load_nr, kill);
    asm.load(4);
    let program = asm.finish();
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::Compile(format!(
            "{} BPF instructions, over the kernel's limit of {MAX_INSTRUCTIONS}: \
             use a profile with fewer rules",
            program.len()
        )));
    }
    Ok(CompiledSeccomp {
        program,
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
/// u64 flags, u32 instruction count, then 8 bytes per instruction (u16 code, u8 jt,
/// u8 jf, u32 k).
fn encode(compiled: &CompiledSeccomp) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + compiled.instruction_count() * 8);
    out.extend_from_slice(&compiled.flags.to_ne_bytes());
    out.extend_from_slice(&(compiled.program.len() as u32).to_ne_bytes());
    for ins in &compiled.program {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<CompiledSeccomp> {
    let flags = u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u32::from_ne_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let raw = &bytes[12..];
    if len == 0 || len > MAX_INSTRUCTIONS || raw.len() != len * 8 {
        return None;
    }
    let program = raw
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some(CompiledSeccomp { program, flags })
}

/// Like [`compile`], but reuses `<cache_dir>/seccomp-<sha256>.bpf` when present and writes
/// it (temp file + fsync + rename) when not. Cache trouble never fails a run: the profile
/// is then compiled in memory.
pub fn compile_cached(
    seccomp: &LinuxSeccomp,
    cache_dir: &Path,
) -> Result<CompiledSeccomp, SeccompError> {
    let path = cache_path(cache_dir, seccomp);
    if let Some(bytes) = read_trusted(&path) {
        if let Some(compiled) = decode(&bytes) {
            return Ok(compiled);
        }
    }
    let compiled = compile(seccomp)?;
    // Best effort: a read-only or full disk only costs the next run a compile.
    let _ = write_atomically(&path, &encode(&compiled));
    Ok(compiled)
}

/// The cache file's bytes when it is a regular file (not a link) of ours that no one
/// else may write: it becomes the container's seccomp filter, so a file another user
/// could have put or changed there is compiled anew instead.
fn read_trusted(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
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
            .mode(0o600)
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
    use oci_spec::runtime::{
        LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder,
    };

    fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(action)
            .build()
            .unwrap()
    }

    fn nr(name: &str) -> u32 {
        syscalls::SYSCALLS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr as u32)
            .unwrap()
    }

    fn arg(
        index: usize,
        op: LinuxSeccompOperator,
        value: u64,
        two: Option<u64>,
    ) -> LinuxSeccompArg {
        let mut builder = LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op);
        if let Some(two) = two {
            builder = builder.value_two(two);
        }
        builder.build().unwrap()
    }

    fn with_args(mut syscall: LinuxSyscall, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
        syscall.set_args(Some(args));
        syscall
    }

    fn run(compiled: &CompiledSeccomp, name: &str, args: [u64; 6]) -> u32 {
        bpf::interpret(
            &compiled.program,
            nr(name),
            native_audit_arch().unwrap(),
            args,
        )
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn one_filter_holds_every_action_and_argument_condition() {
        let mut enosys = rule(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        enosys.set_errno_ret(Some(38));
        let namespaces = 0x7e02_0000u64;
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![
                rule(
                    &["read", "write", "exit_group", "no_such_syscall"],
                    LinuxSeccompAction::ScmpActAllow,
                ),
                enosys,
                // Docker's personality rules: a few exact values each.
                with_args(
                    rule(&["personality"], LinuxSeccompAction::ScmpActAllow),
                    vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, 0, None)],
                ),
                with_args(
                    rule(&["personality"], LinuxSeccompAction::ScmpActAllow),
                    vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, 0xffff_ffff, None)],
                ),
                // Docker's clone rule: allowed without namespace flags.
                with_args(
                    rule(&["clone"], LinuxSeccompAction::ScmpActAllow),
                    vec![arg(
                        0,
                        LinuxSeccompOperator::ScmpCmpMaskedEq,
                        namespaces,
                        Some(0),
                    )],
                ),
                rule(&["ptrace"], LinuxSeccompAction::ScmpActKillProcess),
                // An allow and a more restrictive rule on one syscall: the stricter wins.
                rule(&["getppid"], LinuxSeccompAction::ScmpActAllow),
                rule(&["getppid"], LinuxSeccompAction::ScmpActTrap),
            ])
            .build()
            .unwrap();
        let compiled = compile(&profile).unwrap();
        let none = [0; 6];
        assert_eq!(run(&compiled, "read", none), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&compiled, "exit_group", none), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&compiled, "mount", none), EPERM);
        assert_eq!(
            run(&compiled, "clone3", none),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(run(&compiled, "personality", none), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&compiled, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(run(&compiled, "personality", [8, 0, 0, 0, 0, 0]), EPERM);
        // The high half counts: 0x1_ffff_ffff is not 0xffff_ffff.
        assert_eq!(
            run(&compiled, "personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]),
            EPERM
        );
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(
            run(&compiled, "clone", [sigchld, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        for flag in [libc::CLONE_NEWNS, libc::CLONE_NEWUSER, libc::CLONE_NEWNET] {
            let flags = sigchld | flag as u64;
            assert_eq!(run(&compiled, "clone", [flags, 0, 0, 0, 0, 0]), EPERM);
        }
        assert_eq!(
            run(&compiled, "ptrace", none),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(run(&compiled, "getppid", none), libc::SECCOMP_RET_TRAP);
        // Another audit architecture (i386) is killed.
        assert_eq!(
            bpf::interpret(&compiled.program, nr("read"), 0x4000_0003, none),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn comparisons_cover_both_halves_of_64_bit_arguments() {
        let ops = [
            LinuxSeccompOperator::ScmpCmpEq,
            LinuxSeccompOperator::ScmpCmpNe,
            LinuxSeccompOperator::ScmpCmpLt,
            LinuxSeccompOperator::ScmpCmpLe,
            LinuxSeccompOperator::ScmpCmpGt,
            LinuxSeccompOperator::ScmpCmpGe,
        ];
        let pivot = 0x0000_0001_8000_0000u64;
        let samples = [
            0,
            1,
            pivot - 1,
            pivot,
            pivot + 1,
            0x8000_0000,
            0x0000_0002_0000_0000,
            0x0000_0001_0000_0000,
            u64::MAX,
        ];
        for op in ops {
            let profile = LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActErrno)
                .syscalls(vec![with_args(
                    rule(&["read"], LinuxSeccompAction::ScmpActAllow),
                    vec![arg(2, op, pivot, None)],
                )])
                .build()
                .unwrap();
            let compiled = compile(&profile).unwrap();
            for value in samples {
                let expected = match op {
                    LinuxSeccompOperator::ScmpCmpEq => value == pivot,
                    LinuxSeccompOperator::ScmpCmpNe => value != pivot,
                    LinuxSeccompOperator::ScmpCmpLt => value < pivot,
                    LinuxSeccompOperator::ScmpCmpLe => value <= pivot,
                    LinuxSeccompOperator::ScmpCmpGt => value > pivot,
                    _ => value >= pivot,
                };
                let got = run(&compiled, "read", [0, 0, value, 0, 0, 0]);
                let want = if expected {
                    libc::SECCOMP_RET_ALLOW
                } else {
                    EPERM
                };
                assert_eq!(got, want, "{op:?} {value:#x}");
            }
        }
    }

    #[test]
    fn a_rule_for_every_syscall_is_one_binary_search_with_far_jumps() {
        // Every other syscall allowed, every third one with a condition: a program far
        // longer than 255 instructions, so the tree needs `ja` trampolines.
        let names: Vec<&str> = syscalls::SYSCALLS.iter().map(|(n, _)| *n).collect();
        let mut rules = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if i % 2 == 1 {
                continue;
            }
            let mut r = rule(&[name], LinuxSeccompAction::ScmpActAllow);
            if i % 3 == 0 {
                r = with_args(r, vec![arg(1, LinuxSeccompOperator::ScmpCmpEq, 7, None)]);
            }
            rules.push(r);
        }
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(rules)
            .build()
            .unwrap();
        let compiled = compile(&profile).unwrap();
        assert!(
            compiled.instruction_count() > 1000,
            "{}",
            compiled.instruction_count()
        );
        assert!(compiled
            .program
            .iter()
            .any(|i| i.code == bpf::JMP_JA && i.k > 255));
        for (i, name) in names.iter().enumerate() {
            let want = |seven: bool| match (i % 2, i % 3) {
                (1, _) => EPERM,
                (_, 0) if !seven => EPERM,
                _ => libc::SECCOMP_RET_ALLOW,
            };
            assert_eq!(
                run(&compiled, name, [0, 7, 0, 0, 0, 0]),
                want(true),
                "{name}"
            );
            assert_eq!(
                run(&compiled, name, [0, 8, 0, 0, 0, 0]),
                want(false),
                "{name}"
            );
        }
        // Numbers between and beyond the table's get the default.
        let arch = native_audit_arch().unwrap();
        for nr in [1000, 0x4000_0000, u32::MAX] {
            assert_eq!(bpf::interpret(&compiled.program, nr, arch, [0; 6]), EPERM);
        }
        // The search takes about log2(rules) comparisons, not one per rule: count the
        // jumps taken for the last syscall of the table.
        let depth = jumps_taken(
            &compiled.program,
            nr(names[names.len() - 1 - (names.len() - 1) % 2]),
        );
        assert!(depth <= 16, "{depth} jumps");
    }

    /// Conditional jumps executed for syscall `nr` with zero arguments.
    fn jumps_taken(program: &[SockFilter], nr: u32) -> usize {
        let arch = native_audit_arch().unwrap();
        let mut pc = 0;
        let mut a = 0u32;
        let mut count = 0;
        loop {
            let ins = program[pc];
            pc += 1;
            match ins.code {
                bpf::LD_W_ABS => {
                    a = if ins.k == 0 {
                        nr
                    } else if ins.k == 4 {
                        arch
                    } else {
                        0
                    }
                }
                bpf::RET_K => return count,
                bpf::JMP_JA => pc += ins.k as usize,
                bpf::ALU_AND_K => a &= ins.k,
                code => {
                    count += 1;
                    let taken = match code {
                        bpf::JMP_JEQ_K => a == ins.k,
                        bpf::JMP_JGT_K => a > ins.k,
                        _ => a >= ins.k,
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
            }
        }
    }

    #[test]
    fn a_default_allow_profile_without_rules_still_filters() {
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .unwrap();
        let compiled = compile(&profile).unwrap();
        assert_eq!(run(&compiled, "mount", [0; 6]), libc::SECCOMP_RET_ALLOW);
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
    fn a_cache_file_others_could_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule(&["mount"], LinuxSeccompAction::ScmpActErrno)])
            .build()
            .unwrap();
        let path = cache_path(dir.path(), &profile);
        let real = compile_cached(&profile, dir.path()).unwrap();
        // A program that allows everything, in the cache file's place.
        let allow_all = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule(&["getpid"], LinuxSeccompAction::ScmpActAllow)])
            .build()
            .unwrap();
        let forged = encode(&compile(&allow_all).unwrap());
        assert_ne!(encode(&real), forged);
        std::fs::write(&path, &forged).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            compile_cached(&profile, dir.path()).unwrap(),
            real,
            "world-writable"
        );
        std::fs::write(&path, &forged).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        nix::unistd::chown(&path, Some(65534.into()), None).unwrap();
        assert_eq!(
            compile_cached(&profile, dir.path()).unwrap(),
            real,
            "another user's"
        );
        let target = dir.path().join("forged");
        std::fs::write(&target, &forged).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert_eq!(
            compile_cached(&profile, dir.path()).unwrap(),
            real,
            "a link"
        );
        // Our own file, as written, is reused.
        assert_eq!(read_trusted(&path).map(|b| decode(&b).unwrap()), Some(real));
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

        // A changed profile is a new key: it is compiled afresh, never served the old
        // program.
        let mut changed = profile.clone();
        changed.set_default_action(LinuxSeccompAction::ScmpActKillProcess);
        assert_ne!(cache_key(&changed), cache_key(&profile));
        let recompiled = compile_cached(&changed, dir.path()).unwrap();
        assert_eq!(recompiled, compile(&changed).unwrap());
        assert_ne!(recompiled, fresh);
        assert_eq!(
            run(&recompiled, "mount", [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
