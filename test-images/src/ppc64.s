/* archctl test image: ppc64 (big-endian, ELFv1) -- Linux PowerPC syscall ABI:
 * nr in r0, args in r3, r4, r5; `sc`. write=4, exit=1.
 * ELFv1: the ELF entry point (_start) is a function descriptor in .opd
 * { code address, TOC base, environment }; the loader jumps to the code address. */
	.section .note.GNU-stack,"",%progbits
	.section .opd, "aw"
	.align	3
	.globl	_start
_start:
	.quad	.L.start, .TOC.@tocbase, 0
	.text
.L.start:
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
msg:	.ascii	"archctl-test ppc64 ok\n"
	.set	len, . - msg
