/* archctl test image: x86_64 -- Linux x86-64 syscall ABI:
 * nr in %rax, args in %rdi, %rsi, %rdx; `syscall`. write=1, exit=60. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	leaq	msg(%rip), %rsi		/* buf */
	movl	$len, %edx		/* count */
	syscall
	movl	$60, %eax		/* __NR_exit */
	xorl	%edi, %edi		/* status = 0 */
	syscall
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
