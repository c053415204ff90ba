/* archctl test image: mips64, mips64el (build.sh passes -EB / -EL) --
 * Linux MIPS n64 syscall ABI: nr in $v0, args in $a0, $a1, $a2; `syscall`.
 * write=5001, exit=5058.  build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
	.ent _start
_start:
	li	$v0, 5001		/* __NR_write */
	li	$a0, 1			/* fd = stdout */
	dla	$a1, msg		/* buf (absolute address) */
	li	$a2, len		/* count */
	syscall
	li	$v0, 5058		/* __NR_exit */
	li	$a0, 0			/* status = 0 */
	syscall
	.end _start
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
