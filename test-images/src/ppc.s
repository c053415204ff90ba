/* archctl test image: ppc -- Linux PowerPC syscall ABI:
 * nr in r0, args in r3, r4, r5; `sc`. write=4, exit=1. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	li	0, 4			/* __NR_write */
	li	3, 1			/* fd = stdout */
	lis	4, msg@ha		/* buf (absolute address, high half) */
	addi	4, 4, msg@l		/*   ... low half */
	li	5, len			/* count */
	sc
	li	0, 1			/* __NR_exit */
	li	3, 0			/* status = 0 */
	sc
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
