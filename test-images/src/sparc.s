/* archctl test image: sparc, sparc32plus -- Linux 32-bit SPARC syscall ABI:
 * nr in %g1, args in %o0, %o1, %o2; `ta 0x10`. write=4, exit=1.
 * sparc is V8 (EM_SPARC, gas -Av8).  sparc32plus is the same ABI on a V9 CPU
 * (v8plus, EM_SPARC32PLUS, gas -Av8plus --defsym V8PLUS=1): there the trap is
 * written in its V9 form `ta %icc, 0x10` (same encoding as the V8 `ta 0x10`);
 * using a V9 instruction is what makes gas mark the object v8plus, so ld
 * writes e_machine = EM_SPARC32PLUS (18) and e_flags = EF_SPARC_32PLUS (0x100).
 * build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.macro	systrap			/* the `ta 0x10` system call trap */
	.ifdef	V8PLUS
	ta	%icc, 0x10
	.else
	ta	0x10
	.endif
	.endm
	.text
	.globl _start
_start:
	mov	4, %g1			/* __NR_write */
	mov	1, %o0			/* fd = stdout */
	set	msg, %o1		/* buf (absolute address: sethi + or) */
	mov	len, %o2		/* count */
	systrap
	mov	1, %g1			/* __NR_exit */
	mov	0, %o0			/* status = 0 */
	systrap
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
