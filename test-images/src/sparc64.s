/* archctl test image: sparc64 -- Linux 64-bit SPARC (V9, EM_SPARCV9) syscall ABI:
 * nr in %g1, args in %o0, %o1, %o2; `ta 0x6d`. write=4, exit=1. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	mov	4, %g1			/* __NR_write */
	mov	1, %o0			/* fd = stdout */
	set	msg, %o1		/* buf (absolute address: sethi + or) */
	mov	len, %o2		/* count */
	ta	0x6d
	mov	1, %g1			/* __NR_exit */
	mov	0, %o0			/* status = 0 */
	ta	0x6d
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
