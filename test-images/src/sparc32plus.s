/* archctl test image: sparc32plus -- Linux 32-bit SPARC ABI on a V9 CPU
 * (v8plus, EM_SPARC32PLUS): nr in %g1, args in %o0, %o1, %o2; `ta 0x10`.
 * write=4, exit=1. The trap is written in its V9 form `ta %icc, 0x10`
 * (same encoding as the V8 `ta 0x10`): using a V9 instruction is what makes
 * gas mark the object v8plus, so ld writes e_machine = EM_SPARC32PLUS (18)
 * and e_flags = EF_SPARC_32PLUS (0x100). */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	mov	4, %g1			/* __NR_write */
	mov	1, %o0			/* fd = stdout */
	set	msg, %o1		/* buf (absolute address: sethi + or) */
	mov	len, %o2		/* count */
	ta	%icc, 0x10
	mov	1, %g1			/* __NR_exit */
	mov	0, %o0			/* status = 0 */
	ta	%icc, 0x10
msg:	.ascii	"archctl-test sparc32plus ok\n"
	.set	len, . - msg
