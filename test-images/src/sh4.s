/* archctl test image: sh4, sh4eb (build.sh passes -little / -big) --
 * Linux SuperH syscall ABI: nr in r3, args in r4, r5, r6; `trapa #0x10+nargs`.
 * write=4, exit=1.  build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	mov	#4, r3			/* __NR_write */
	mov	#1, r4			/* fd = stdout */
	mov.l	msgaddr, r5		/* buf (absolute address from the literal below) */
	mov	#len, r6		/* count */
	trapa	#0x13			/* 3 arguments */
	mov	#1, r3			/* __NR_exit */
	mov	#0, r4			/* status = 0 */
	trapa	#0x11			/* 1 argument */
	.balign	4
msgaddr: .long	msg
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
