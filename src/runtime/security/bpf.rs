//! A small classic-BPF assembler for seccomp filters, built back to front.
//!
//! Classic BPF only jumps forward, so a program generated from its last instruction to its
//! first always knows where a jump lands: every target is already emitted. Conditional
//! jumps carry 8-bit offsets; a target further than 255 instructions away gets a `ja`
//! (32-bit offset) placed right after the jump, which the jump then targets instead.

/// `struct sock_filter`, as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes: class | size or operation | source, as in <linux/bpf_common.h>.
pub const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
pub const ALU_AND_K: u16 = 0x54; // BPF_ALU (4) | BPF_AND (0x50) | BPF_K (0)
pub const JMP_JA: u16 = 0x05; // BPF_JMP (5) | BPF_JA (0)
pub const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ (0x10) | BPF_K
pub const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT (0x20) | BPF_K
pub const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE (0x30) | BPF_K
pub const RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K

/// A position in the program, counted from its end (the last instruction is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// The program under construction, last instruction first.
#[derive(Debug, Default)]
pub struct Assembler {
    reversed: Vec<SockFilter>,
}

impl Assembler {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.reversed.push(SockFilter { code, jt, jf, k });
        Label(self.reversed.len() - 1)
    }

    /// Offset of `target` from an instruction emitted next.
    fn distance(&self, target: Label) -> usize {
        self.reversed.len() - target.0 - 1
    }

    pub fn ret(&mut self, value: u32) -> Label {
        self.push(RET_K, 0, 0, value)
    }

    /// Loads the 32-bit word at `offset` of `struct seccomp_data` into A.
    pub fn load(&mut self, offset: u32) -> Label {
        self.push(LD_W_ABS, 0, 0, offset)
    }

    pub fn and(&mut self, mask: u32) -> Label {
        self.push(ALU_AND_K, 0, 0, mask)
    }

    pub fn jump_always(&mut self, target: Label) -> Label {
        let k = self.distance(target) as u32;
        self.push(JMP_JA, 0, 0, k)
    }

    /// `if A <op> k goto yes else goto no`; `op` is one of the `JMP_*_K` codes.
    pub fn jump_if(&mut self, op: u16, k: u32, yes: Label, no: Label) -> Label {
        let yes = self.near(yes);
        let no = self.near(no);
        let (jt, jf) = (self.distance(yes), self.distance(no));
        self.push(op, jt as u8, jf as u8, k)
    }

    /// `target` itself when an 8-bit offset reaches it from the next instruction (leaving
    /// room for one more trampoline), else a new `ja` to it.
    fn near(&mut self, target: Label) -> Label {
        if self.distance(target) < 255 {
            target
        } else {
            self.jump_always(target)
        }
    }

    /// The instructions in execution order.
    pub fn finish(mut self) -> Vec<SockFilter> {
        self.reversed.reverse();
        self.reversed
    }
}

/// Runs `program` on `data` (`struct seccomp_data`: nr, arch, ip, args) like the kernel
/// does, for tests.
#[cfg(test)]
pub fn interpret(program: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = program[pc];
        pc += 1;
        match ins.code {
            LD_W_ABS => {
                let o = ins.k as usize;
                a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= ins.k,
            JMP_JA => pc += ins.k as usize,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let taken = match ins.code {
                    JMP_JEQ_K => a == ins.k,
                    JMP_JGT_K => a > ins.k,
                    _ => a >= ins.k,
                };
                pc += if taken { ins.jt } else { ins.jf } as usize;
            }
            RET_K => return ins.k,
            other => panic!("unknown BPF instruction {other:#x}"),
        }
    }
}
