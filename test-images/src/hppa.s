/* archctl test image: hppa -- Linux PA-RISC syscall ABI:
 * nr in %r20, args in %r26, %r25, %r24; `ble 0x100(%sr2, %r0)` (gateway page).
 * write=4, exit=1. The syscall branch has a delay slot, used to load the nr. */
	.section .note.GNU-stack,"",%progbits
	.text
	.globl _start
_start:
	ldi	1, %r26			/* fd = stdout */
	ldil	L%msg, %r25		/* buf (absolute address, left part) */
	ldo	R%msg(%r25), %r25	/*   ... right part */
	ldi	len, %r24		/* count */
	ble	0x100(%sr2, %r0)	/* enter the kernel */
	ldi	4, %r20			/* (delay slot) __NR_write */
	ldi	0, %r26			/* status = 0 */
	ble	0x100(%sr2, %r0)	/* enter the kernel */
	ldi	1, %r20			/* (delay slot) __NR_exit */
msg:	.ascii	"archctl-test @TARGET@ ok\n"
	.set	len, . - msg
