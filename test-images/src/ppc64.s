/* archctl test image: ppc64 (big-endian, ELFv1), ppc64le (ELFv2) --
 * Linux PowerPC syscall ABI: nr in r0, args in r3, r4, r5; `sc`. write=4, exit=1.
 * ELFv1 (build.sh passes --defsym ELFV1=1): the ELF entry point (_start) is a
 * function descriptor in .opd { code address, TOC base, environment }; the
 * loader jumps to the code address.  ELFv2 has no function descriptors:
 * e_entry is the code address.  build.sh replaces @TARGET@ with the target name. */
	.ifndef	ELFV1
	.abiversion 2
	.endif
	.section .note.GNU-stack,"",%progbits
	.ifdef	ELFV1
	.section .opd, "aw"
	.align	3
	.globl	_start
_start:
	.quad	.L.start, .TOC.@tocbase, 0
	.text
.L.start:
	.else
	.text
	.globl _start
_start:
	.endif
	li	0, 4			/* __NR_write */
	li	3, 1			/* fd = stdout */
	bcl	20, 31, 1f		/* lr = address of 1: (pc-relative addressing) */
1:	mflr	4
	addi	4, 4, msg - 1b		/* buf */
	li	5, len			/* count */
	sc
	li	0, 1			/* __NR_exit */
	li	3, 0			/* status = 0 */
	sc
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
