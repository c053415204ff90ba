/* archctl test image: alpha -- Linux Alpha syscall ABI:
 * nr in $0 (v0), args in $16, $17, $18 (a0-a2); `callsys`. write=4, exit=1.
 * The message comes first so that `len` is a known constant when the
 * `lda` using it is assembled (a forward reference would become a GOT load). */
	.section .note.GNU-stack,"",%progbits
	.set	noat
	.text
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	len = . - msg
	.balign	4
	.globl _start
	.ent _start
_start:
	br	$1, 1f			/* $1 = address of 1: (pc-relative addressing) */
1:	lda	$0, 4($31)		/* __NR_write */
	lda	$16, 1($31)		/* fd = stdout */
	lda	$17, msg - 1b($1)	/* buf */
	lda	$18, len($31)		/* count */
	callsys
	lda	$0, 1($31)		/* __NR_exit */
	mov	$31, $16		/* status = 0 */
	callsys
	.end _start
