/* archctl test image: aarch64, aarch64_be (build.sh passes -EL / -EB) --
 * Linux generic syscall ABI: nr in x8, args in x0, x1, x2; `svc #0`.
 * write=64, exit=93.  build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	mov	x8, #64			/* __NR_write */
	mov	x0, #1			/* fd = stdout */
	adr	x1, msg			/* buf (pc-relative) */
	mov	x2, #len		/* count */
	svc	#0
	mov	x8, #93			/* __NR_exit */
	mov	x0, #0			/* status = 0 */
	svc	#0
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
