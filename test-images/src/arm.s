/* archctl test image: arm, armeb -- Linux ARM EABI syscall ABI:
 * nr in r7, args in r0, r1, r2; `svc #0`. write=4, exit=1.
 * armeb is big-endian BE8 (data big-endian, code little-endian; ld --be8
 * byte-swaps the instructions).  build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.syntax unified
	.arm
	.text
	.globl _start
_start:
	mov	r7, #4			/* __NR_write */
	mov	r0, #1			/* fd = stdout */
	adr	r1, msg			/* buf (pc-relative) */
	mov	r2, #len		/* count */
	svc	#0
	mov	r7, #1			/* __NR_exit */
	mov	r0, #0			/* status = 0 */
	svc	#0
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
