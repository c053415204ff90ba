/* archctl test image: m68k -- Linux m68k syscall ABI:
 * nr in %d0, args in %d1, %d2, %d3; `trap #0`. write=4, exit=1. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	moveq	#4, %d0			/* __NR_write */
	moveq	#1, %d1			/* fd = stdout */
	move.l	#msg, %d2		/* buf (absolute address) */
	moveq	#len, %d3		/* count */
	trap	#0
	moveq	#1, %d0			/* __NR_exit */
	moveq	#0, %d1			/* status = 0 */
	trap	#0
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
