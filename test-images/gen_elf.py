#!/usr/bin/env python3
"""Emit the hand-encoded archctl test images.

For targets that Debian 12 has no working assembler + linker for, this
writes a minimal static ELF executable (ELF header, one PT_LOAD and a
PT_GNU_STACK program header, no section headers) around hand-encoded
machine words.  Each
program does exactly what the assembled ones in src/ do:

    write(1, "archctl-test <target> ok\\n", len);  exit(0);

The whole file (headers included) is mapped by the single R+X PT_LOAD at
the target's usual base address; the code starts right after the program
headers and the message follows the code.  Every instruction is built by a
small encoder below whose bit layout is written out, and each use is
commented with its assembly.  Output is a pure function of the target name,
so rebuilding gives identical bytes.

Usage:  gen_elf.py TARGET OUTFILE       gen_elf.py --list
"""

import os
import struct
import sys

PT_LOAD = 1
PT_GNU_STACK = 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC = 2

EM_CRIS = 76
EM_XTENSA = 94
EM_MICROBLAZE = 189
EM_LOONGARCH = 258


def message(target):
    return ("archctl-test %s ok\n" % target).encode("ascii")


def elf_image(*, is64, big, machine, flags, base, align, build, entry_skip=0):
    """Lay out ELF header, program headers and the code built by `build`.

    Program headers: one PT_LOAD (R+X) mapping the whole file at `base`, and
    a PT_GNU_STACK (RW, i.e. non-executable stack) as GNU ld emits it.  The
    code starts right after them, at file offset code_off; `build(addr)`
    returns the bytes placed there, addr = base + code_off.  The entry point
    is addr + entry_skip (non-zero only when data precedes the code)."""
    e = ">" if big else "<"
    ehsize, phentsize = (64, 56) if is64 else (52, 32)
    phnum = 2
    code_off = ehsize + phnum * phentsize       # 0xb0 (ELF64) / 0x74 (ELF32)
    body = build(base + code_off)
    entry = base + code_off + entry_skip
    filesz = code_off + len(body)

    ident = b"\x7fELF" + bytes([
        2 if is64 else 1,   # EI_CLASS: ELFCLASS64 / ELFCLASS32
        2 if big else 1,    # EI_DATA: ELFDATA2MSB / ELFDATA2LSB
        1,                  # EI_VERSION: EV_CURRENT
        0,                  # EI_OSABI: ELFOSABI_NONE (what Linux toolchains emit)
        0,                  # EI_ABIVERSION
    ]) + bytes(7)           # EI_PAD
    if is64:
        ehdr = ident + struct.pack(
            e + "HHIQQQIHHHHHH",
            ET_EXEC, machine, 1, entry,
            ehsize,         # e_phoff: program headers right after the ELF header
            0,              # e_shoff: no section header table
            flags, ehsize, phentsize, phnum,
            0, 0, 0)        # e_shentsize, e_shnum, e_shstrndx
        phdrs = struct.pack(
            e + "IIQQQQQQ",
            PT_LOAD, PF_R | PF_X,
            0, base, base,  # p_offset, p_vaddr, p_paddr: map the file from its start
            filesz, filesz, align)
        phdrs += struct.pack(e + "IIQQQQQQ", PT_GNU_STACK, PF_R | PF_W,
                             0, 0, 0, 0, 0, 16)
    else:
        ehdr = ident + struct.pack(
            e + "HHIIIIIHHHHHH",
            ET_EXEC, machine, 1, entry, ehsize, 0,
            flags, ehsize, phentsize, phnum, 0, 0, 0)
        phdrs = struct.pack(
            e + "IIIIIIII",
            PT_LOAD, 0, base, base, filesz, filesz, PF_R | PF_X, align)
        phdrs += struct.pack(e + "IIIIIIII", PT_GNU_STACK, 0, 0, 0, 0, 0,
                             PF_R | PF_W, 16)
    assert len(ehdr) + len(phdrs) == code_off
    return ehdr + phdrs + body


# ---------------------------------------------------------------------------
# loongarch64: little-endian, fixed 32-bit instructions.
# Linux generic syscall ABI: nr in $a7 (r11), args in $a0-$a2 (r4-r6),
# `syscall 0`; result in $a0.  write = 64, exit = 93.
# ---------------------------------------------------------------------------
LA_ZERO, LA_A0, LA_A1, LA_A2, LA_A7 = 0, 4, 5, 6, 11


def la_ori(rd, rj, ui12):
    """ori rd, rj, ui12   -- format 2RI12:
    bits 31..22 opcode 0b0000001110 (0x03800000) | 21..10 ui12 | 9..5 rj | 4..0 rd"""
    assert 0 <= ui12 < 1 << 12
    return 0x03800000 | ui12 << 10 | rj << 5 | rd


def la_pcaddi(rd, si20):
    """pcaddi rd, si20    -- rd = pc + (si20 << 2); format 1RI20:
    bits 31..25 opcode 0b0001100 (0x18000000) | 24..5 si20 | 4..0 rd"""
    assert -(1 << 19) <= si20 < 1 << 19
    return 0x18000000 | (si20 & 0xFFFFF) << 5 | rd


def la_syscall(code):
    """syscall code       -- format CODE15:
    bits 31..15 opcode 0b00000000001010110 (0x002b0000) | 14..0 code"""
    assert 0 <= code < 1 << 15
    return 0x002B0000 | code


def build_loongarch64(target):
    msg = message(target)

    def build(pc0):
        insns = [
            la_ori(LA_A7, LA_ZERO, 64),         # li.w  $a7, 64  (__NR_write)  = 0x0381000b
            la_ori(LA_A0, LA_ZERO, 1),          # li.w  $a0, 1   (fd = stdout) = 0x03800404
            None,                               # pcaddi $a1, msg (buf), patched below
            la_ori(LA_A2, LA_ZERO, len(msg)),   # li.w  $a2, len (count)
            la_syscall(0),                      # syscall 0                    = 0x002b0000
            la_ori(LA_A7, LA_ZERO, 93),         # li.w  $a7, 93  (__NR_exit)   = 0x0381740b
            la_ori(LA_A0, LA_ZERO, 0),          # li.w  $a0, 0   (status = 0)  = 0x03800004
            la_syscall(0),                      # syscall 0
        ]
        # the message follows the 8 instructions; pcaddi is instruction #2
        insns[2] = la_pcaddi(LA_A1, (len(insns) - 2))   # = 0x180000c5 (si20 = 6)
        return b"".join(struct.pack("<I", i) for i in insns) + msg

    return elf_image(
        is64=True, big=False, machine=EM_LOONGARCH,
        # EF_LOONGARCH_ABI_DOUBLE_FLOAT (0x3, LP64D) | EF_LOONGARCH_OBJABI_V1 (0x40),
        # what GNU as/ld 2.40+ write for lp64d Linux binaries
        flags=0x43,
        base=0x120000000,       # GNU ld's default text base on loongarch64
        align=0x10000,
        build=build)


# ---------------------------------------------------------------------------
# xtensaeb: big-endian Xtensa, 24-bit core-ISA instructions.
# Linux Xtensa syscall ABI: nr in a2, args in a6, a3, a4, a5, a8, a9,
# `syscall`; result in a2.  Xtensa has its own table: write = 13, exit = 118.
#
# Instruction fields are defined for little-endian cores as
#   op0 = bits 3..0, t = 7..4, s = 11..8, r = 15..12, op1 = 19..16, op2 = 23..20
# (imm8 = bits 23..16, imm16 = bits 23..8).  On big-endian cores the field
# order within the 24-bit word is mirrored (op0 = bits 23..20, t = 19..16,
# s = 15..12, r = 11..8, op1 = 7..4, op2 = 3..0; imm8 = 7..0, imm16 = 15..0)
# and the word is stored most significant byte first.  xt_pack() does this
# for both orders, so the little-endian bytes can be checked against GNU as.
# ---------------------------------------------------------------------------


def xt_pack(fields, big):
    """fields: list of (value, lsb_in_LE_layout, width); returns 3 bytes."""
    word = 0
    for value, lsb, width in fields:
        assert 0 <= value < 1 << width
        pos = (24 - lsb - width) if big else lsb
        word |= value << pos
    return word.to_bytes(3, "big" if big else "little")


def xt_movi(at, imm, big):
    """movi at, imm12   -- RRI8: op0=0x2, t=at, s=imm[11:8], r=0xA, imm8=imm[7:0]"""
    assert -2048 <= imm < 2048
    imm &= 0xFFF
    return xt_pack([(0x2, 0, 4), (at, 4, 4), (imm >> 8, 8, 4), (0xA, 12, 4),
                    (imm & 0xFF, 16, 8)], big)


def xt_l32r(at, imm16, big):
    """l32r at, label   -- RI16: op0=0x1, t=at, imm16;
    address = ((pc + 3) & ~3) + ((0xFFFF0000 | imm16) << 2)  (always backwards)"""
    return xt_pack([(0x1, 0, 4), (at, 4, 4), (imm16, 8, 16)], big)


def xt_syscall(big):
    """syscall          -- RRR: op0=0, t=0, s=0, r=5, op1=0, op2=0"""
    return xt_pack([(0, 0, 4), (0, 4, 4), (0, 8, 4), (5, 12, 4), (0, 16, 4),
                    (0, 20, 4)], big)


def build_xtensa(target, big):
    msg = message(target)

    def build(lit_addr):
        # word 0: literal holding the message address (l32r only loads backwards)
        code_addr = lit_addr + 4
        l32r_pc = code_addr + 2 * 3                 # third instruction
        off_words = (lit_addr - ((l32r_pc + 3) & ~3)) >> 2
        assert -(1 << 16) <= off_words < 0
        insns = [
            xt_movi(2, 13, big),                    # movi a2, 13   (__NR_write)   BE 22 0a 0d
            xt_movi(6, 1, big),                     # movi a6, 1    (fd = stdout)  BE 26 0a 01
            xt_l32r(3, off_words & 0xFFFF, big),    # l32r a3, lit  (buf)          BE 13 ff fd
            xt_movi(4, len(msg), big),              # movi a4, len  (count)
            xt_syscall(big),                        # syscall                      BE 00 05 00
            xt_movi(2, 118, big),                   # movi a2, 118  (__NR_exit)    BE 22 0a 76
            xt_movi(6, 0, big),                     # movi a6, 0    (status = 0)   BE 26 0a 00
            xt_syscall(big),                        # syscall
        ]
        code = b"".join(insns)
        msg_addr = code_addr + len(code)
        lit = struct.pack(">I" if big else "<I", msg_addr)
        return lit + code + msg

    return elf_image(
        is64=False, big=big, machine=EM_XTENSA,
        # EF_XTENSA_XT_INSN (0x100) | EF_XTENSA_XT_LIT (0x200), as GNU as/ld set
        flags=0x300,
        base=0x400000, align=0x1000,
        entry_skip=4,           # the literal comes first, the code after it
        build=build)


# ---------------------------------------------------------------------------
# microblaze / microblazeel: fixed 32-bit instructions, stored big- resp.
# little-endian.  Linux syscall ABI: nr in r12, args in r5-r10,
# `brki r14, 0x8` (the kernel / qemu resume at r14 + 4); result in r3.
# MicroBlaze uses the i386-style table: write = 4, exit = 1.
#   Type B: bits 31..26 opcode | 25..21 rD | 20..16 rA | 15..0 imm16
#   An `imm hi16` prefix makes the next Type B immediate hi16:imm16.
# ---------------------------------------------------------------------------


def mb_addik(rd, ra, imm16):
    """addik rD, rA, imm   -- opcode 0b001100 (0x30000000), rD = rA + sext(imm)"""
    assert 0 <= imm16 < 1 << 16
    return 0x30000000 | rd << 21 | ra << 16 | imm16


def mb_imm(hi16):
    """imm hi16            -- opcode 0b101100 (0xB0000000), rD = rA = 0"""
    assert 0 <= hi16 < 1 << 16
    return 0xB0000000 | hi16


def mb_brki(rd, imm16):
    """brki rD, imm        -- opcode 0b101110 (0xB8000000), rA field 0b01100
    (absolute + link); `brki r14, 0x8` = 0xb9cc0008 is the Linux syscall"""
    return 0xB8000000 | rd << 21 | 0b01100 << 16 | imm16


def build_microblaze(target, big):
    msg = message(target)

    def build(pc0):
        n_insns = 9
        msg_addr = pc0 + 4 * n_insns
        insns = [
            mb_addik(12, 0, 4),                 # addik r12, r0, 4    (__NR_write)  = 0x31800004
            mb_addik(5, 0, 1),                  # addik r5, r0, 1     (fd = stdout) = 0x30a00001
            mb_imm(msg_addr >> 16),             # imm   hi16(msg)
            mb_addik(6, 0, msg_addr & 0xFFFF),  # addik r6, r0, lo16(msg)  (buf)
            mb_addik(7, 0, len(msg)),           # addik r7, r0, len   (count)
            mb_brki(14, 0x8),                   # brki  r14, 0x8      (syscall)     = 0xb9cc0008
            mb_addik(12, 0, 1),                 # addik r12, r0, 1    (__NR_exit)   = 0x31800001
            mb_addik(5, 0, 0),                  # addik r5, r0, 0     (status = 0)  = 0x30a00000
            mb_brki(14, 0x8),                   # brki  r14, 0x8      (syscall)
        ]
        assert len(insns) == n_insns
        e = ">" if big else "<"
        return b"".join(struct.pack(e + "I", i) for i in insns) + msg

    return elf_image(
        is64=False, big=big, machine=EM_MICROBLAZE,
        flags=0,                # GNU as/ld set no e_flags for MicroBlaze
        base=0x10000000,        # GNU ld's default text base for microblaze-linux
        align=0x1000,
        build=build)


# ---------------------------------------------------------------------------
# cris: little-endian, 16-bit instruction words (+ immediates).  qemu-cris
# emulates a CRISv32; only instructions common to v10 and v32 are used.
# Linux syscall ABI: nr in r9, args in r10-r13, mof, srp; `break 13`;
# result in r10.  CRIS uses the i386-style table: write = 4, exit = 1.
# ---------------------------------------------------------------------------


def cris_moveq(imm6, rd):
    """moveq imm6, Rd       -- bits 15..12 Rd | 11..6 0b001001 | 5..0 simm6
    (match 0x0240 in binutils' cris-opc.c)"""
    assert -32 <= imm6 < 32
    return struct.pack("<H", rd << 12 | 0x0240 | (imm6 & 0x3F))


def cris_move_d_imm(imm32, rd):
    """move.d imm32, Rd     -- i.e. move.d [pc+], Rd:
    bits 15..12 Rd | 11..10 mode 0b11 ([Rs+]) | 9..6 0b1001 (move) |
    5..4 size 0b10 (dword) | 3..0 Rs = 15 (pc); the dword follows"""
    return struct.pack("<HI", rd << 12 | 0x0E40 | 0b10 << 4 | 15, imm32)


def cris_break(n):
    """break n              -- 0xe930 | n (n in bits 3..0)"""
    assert 0 <= n < 16
    return struct.pack("<H", 0xE930 | n)


def build_cris(target):
    msg = message(target)

    def build(pc0):
        def code(msg_addr):
            return b"".join([
                cris_moveq(4, 9),               # moveq 4, r9        (__NR_write)  = 0x9244
                cris_moveq(1, 10),              # moveq 1, r10       (fd = stdout) = 0xa241
                cris_move_d_imm(msg_addr, 11),  # move.d msg, r11    (buf)         = 0xbe6f + dword
                cris_moveq(len(msg), 12),       # moveq len, r12     (count)
                cris_break(13),                 # break 13           (syscall)     = 0xe93d
                cris_moveq(1, 9),               # moveq 1, r9        (__NR_exit)   = 0x9241
                cris_moveq(0, 10),              # moveq 0, r10       (status = 0)  = 0xa240
                cris_break(13),                 # break 13           (syscall)
            ])
        n = len(code(0))
        return code(pc0 + n) + msg

    return elf_image(
        is64=False, big=False, machine=EM_CRIS,
        # EF_CRIS_VARIANT_COMMON_V10_V32 (0x4): the code runs on both;
        # no EF_CRIS_UNDERSCORE, as for cris*-linux-gnu
        flags=0x4,
        base=0x80000,           # GNU ld's default text base for crislinux
        align=0x2000,           # CRIS Linux page size
        build=build)


TARGETS = {
    "loongarch64": lambda: build_loongarch64("loongarch64"),
    "xtensaeb": lambda: build_xtensa("xtensaeb", big=True),
    "microblaze": lambda: build_microblaze("microblaze", big=True),
    "microblazeel": lambda: build_microblaze("microblazeel", big=False),
    "cris": lambda: build_cris("cris"),
}


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(sorted(TARGETS)))
        return 0
    if len(argv) != 3 or argv[1] not in TARGETS:
        sys.stderr.write(__doc__.split("\n\n")[-1] + "\n")
        sys.stderr.write("targets: %s\n" % " ".join(sorted(TARGETS)))
        return 2
    data = TARGETS[argv[1]]()
    with open(argv[2], "wb") as f:
        f.write(data)
    os.chmod(argv[2], 0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
