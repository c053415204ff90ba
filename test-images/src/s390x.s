/* archctl test image: s390x -- Linux s390x syscall ABI:
 * nr in the `svc` immediate (nr < 256), args in r2, r3, r4. write=4, exit=1. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	lghi	%r2, 1			/* fd = stdout */
	larl	%r3, msg		/* buf (pc-relative) */
	lghi	%r4, len		/* count */
	svc	4			/* __NR_write */
	lghi	%r2, 0			/* status = 0 */
	svc	1			/* __NR_exit */
	.align	2			/* larl targets must be halfword aligned */
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
