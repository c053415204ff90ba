/* archctl test image: or1k -- Linux OpenRISC (generic syscall table) ABI:
 * nr in r11, args in r3, r4, r5; `l.sys 1`. write=64, exit=93. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	l.addi	r11, r0, 64		/* __NR_write */
	l.addi	r3, r0, 1		/* fd = stdout */
	l.movhi	r4, hi(msg)		/* buf (absolute address, high half) */
	l.ori	r4, r4, lo(msg)		/*   ... low half */
	l.addi	r5, r0, len		/* count */
	l.sys	1
	l.addi	r11, r0, 93		/* __NR_exit */
	l.addi	r3, r0, 0		/* status = 0 */
	l.sys	1
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
