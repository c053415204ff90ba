/* archctl test image: i386, i486 -- Linux i386 syscall ABI:
 * nr in %eax, args in %ebx, %ecx, %edx; `int $0x80`. write=4, exit=1.
 * For i486, build.sh sets the linked image's e_machine to EM_486 (6).
 * build.sh replaces @TARGET@ with the target name. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	movl	$4, %eax		/* __NR_write */
	movl	$1, %ebx		/* fd = stdout */
	movl	$msg, %ecx		/* buf (absolute address) */
	movl	$len, %edx		/* count */
	int	$0x80
	movl	$1, %eax		/* __NR_exit */
	xorl	%ebx, %ebx		/* status = 0 */
	int	$0x80
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
