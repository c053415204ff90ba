/* archctl test image: i386 -- Linux i386 syscall ABI:
 * nr in %eax, args in %ebx, %ecx, %edx; `int $0x80`. write=4, exit=1.
 * src/i486.s is the same code; build.sh sets that image's e_machine to EM_486 (6). */
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
msg:	.ascii	"archctl-test i386 ok\n"
	.set	len, . - msg
