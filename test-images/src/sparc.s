/* archctl test image: sparc -- Linux 32-bit SPARC (v8, EM_SPARC) syscall ABI:
 * nr in %g1, args in %o0, %o1, %o2; `ta 0x10`. write=4, exit=1. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	mov	4, %g1			/* __NR_write */
	mov	1, %o0			/* fd = stdout */
	set	msg, %o1		/* buf (absolute address: sethi + or) */
	mov	len, %o2		/* count */
	ta	0x10
	mov	1, %g1			/* __NR_exit */
	mov	0, %o0			/* status = 0 */
	ta	0x10
msg:	.ascii	"archctl-test sparc ok\n"
	.set	len, . - msg
