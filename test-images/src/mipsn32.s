/* archctl test image: mipsn32, mipsn32el (build.sh passes -EB / -EL) --
 * Linux MIPS n32 syscall ABI: nr in $v0, args in $a0, $a1, $a2; `syscall`.
 * write=6001, exit=6058.  build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
	.ent _start
_start:
	li	$v0, 6001		/* __NR_write */
	li	$a0, 1			/* fd = stdout */
	la	$a1, msg		/* buf (absolute address) */
	li	$a2, len		/* count */
	syscall
	li	$v0, 6058		/* __NR_exit */
	li	$a0, 0			/* status = 0 */
	syscall
	.end _start
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
