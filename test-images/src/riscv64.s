/* archctl test image: riscv64 -- Linux generic syscall ABI:
 * nr in a7, args in a0, a1, a2; `ecall`. write=64, exit=93.
 * The message comes first so that `len` is known when `li` is assembled. */
	.section .note.GNU-stack,"",%progbits
	.option	norelax
	.text
msg:	.ascii	"archctl-test riscv64 ok\n"
	.set	len, . - msg
	.balign	4
	.globl _start
_start:
	li	a7, 64			/* __NR_write */
	li	a0, 1			/* fd = stdout */
	lla	a1, msg			/* buf (pc-relative: auipc + addi) */
	li	a2, len			/* count */
	ecall
	li	a7, 93			/* __NR_exit */
	li	a0, 0			/* status = 0 */
	ecall
