/* archctl test image: xtensa (little-endian) -- Linux Xtensa syscall ABI:
 * nr in a2, args in a6, a3, a4; `syscall`. write=13, exit=118 (Xtensa's own table).
 * Only core-ISA instructions are used, so any core configuration runs it.
 * The message comes first so that `len` is a known constant for `movi`. */
	.section .note.GNU-stack,"",%progbits
	.text
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
	.balign	4
.Lmsg_addr:
	.word	msg			/* literal for l32r */
	.globl _start
_start:
	movi	a2, 13			/* __NR_write */
	movi	a6, 1			/* fd = stdout */
	l32r	a3, .Lmsg_addr		/* buf (absolute address, pc-relative literal load) */
	movi	a4, len			/* count */
	syscall
	movi	a2, 118			/* __NR_exit */
	movi	a6, 0			/* status = 0 */
	syscall
