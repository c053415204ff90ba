/* archctl test image: hexagon -- Linux Hexagon (generic syscall table) ABI:
 * nr in r6, args in r0, r1, r2; `trap0(#1)`. write=64, exit=93.
 * Assembled with LLVM (llvm-mc, -mcpu=hexagonv67) and linked with lld:
 * binutils has no Hexagon port. Each line is its own instruction packet. */
	.section .note.GNU-stack,"",%progbits
	.text
	.p2align 2
	.globl _start
_start:
	r6 = #64			/* __NR_write */
	r0 = #1				/* fd = stdout */
	r1 = ##msg			/* buf (absolute address, constant-extended) */
	r2 = #len			/* count */
	trap0(#1)
	r6 = #93			/* __NR_exit */
	r0 = #0				/* status = 0 */
	trap0(#1)
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
