/* archctl test image: ppc64le -- Linux PowerPC syscall ABI (ELFv2):
 * nr in r0, args in r3, r4, r5; `sc`. write=4, exit=1.
 * ELFv2 has no function descriptors: e_entry is the code address. */
	.abiversion 2
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
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
msg:	.ascii	"archctl-test ppc64le ok\n"
	.set	len, . - msg
