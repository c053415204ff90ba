/* archctl test image: armeb (big-endian, BE8: data big-endian, code
 * little-endian; ld --be8 byte-swaps the instructions) -- Linux ARM EABI syscall ABI:
 * nr in r7, args in r0, r1, r2; `svc #0`. write=4, exit=1. */
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
msg:	.ascii	"archctl-test armeb ok\n"
	.set	len, . - msg
