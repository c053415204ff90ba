/* archctl test image: riscv32, riscv64 (build.sh passes -march/-mabi) --
 * Linux generic syscall ABI: nr in a7, args in a0, a1, a2; `ecall`.
 * write=64, exit=93.  build.sh replaces @TARGET@ with the target name.
 * The message comes first so that `len` is known when `li` is assembled. */
	.section .note.GNU-stack,"",%progbits
	.option	norelax
	.text
msg:	.ascii	"archctl-test @TARGET@ ok\n"
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
